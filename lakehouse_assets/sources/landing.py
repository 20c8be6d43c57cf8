"""Landing-zone ingestion: event files (CSV, JSON lines, Parquet) into a bronze Delta table.

Every record read ends up in exactly one place: the bronze table (typed, valid) or the quarantine
table (with the file, the record number and the reason). Files are never moved or changed.

Exactly once per file: each file is identified by its path and content hash; the ingestion commit
of each table carries a Delta transaction identifier for it, so a retry skips what was committed
and redoes what was not, even if the crash fell between the two tables' commits.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISREG

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse_assets.engine.base import AppTransaction, CommitResult, LakeEngine
from lakehouse_assets.sources.cdc import BRONZE_TABLE_CONFIG
from lakehouse_assets.sources.schema import PAYMENT_COLUMNS, PAYMENT_KEYS, ColumnType
from lakehouse_assets.tables import LANDING_QUARANTINE_TABLE, bronze_table

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
SUPPORTED_SUFFIXES = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
}
POLARS_TYPES: dict[ColumnType, pl.DataType] = {
    "int": pl.Int64(),
    "float": pl.Float64(),
    "str": pl.String(),
    "ts": pl.Datetime("us"),
}
KIND_NAMES: dict[ColumnType, str] = {
    "int": "an integer",
    "float": "a number",
    "str": "text",
    "ts": f"a timestamp '{TIMESTAMP_FORMAT}'",
}
QUARANTINE_SCHEMA = {
    "dataset": pl.String,
    "source_file": pl.String,
    "file_id": pl.String,
    "row_number": pl.Int64,
    "reason": pl.String,
    "raw": pl.String,
}


@dataclass(frozen=True)
class LandingDataset:
    """A kind of event file: where it lands, its columns, which of them are required keys."""

    name: str
    columns: tuple[tuple[str, ColumnType], ...]
    keys: tuple[str, ...]
    required: tuple[str, ...]

    @property
    def table(self) -> str:
        return bronze_table(self.name)

    def folder(self, landing_dir: Path) -> Path:
        return landing_dir / self.name


PAYMENTS = LandingDataset(
    "payments", PAYMENT_COLUMNS, PAYMENT_KEYS, required=("payment_id", "order_id", "amount", "paid_at")
)


@dataclass(frozen=True)
class LandingFile:
    """A regular file of a landing dataset with what identifies its version (size, mtime)."""

    path: Path
    relpath: str
    size: int
    mtime_ns: int

    @property
    def run_key(self) -> str:
        """Changes when the file is replaced or rewritten, so a new version is picked up."""
        return f"{self.relpath}:{self.size}:{self.mtime_ns}"


@dataclass(frozen=True)
class SkippedEntry:
    """An entry of the landing folder that is not read, and why (it stays where it is)."""

    relpath: str
    reason: str


def scan_landing(landing_dir: Path, dataset: LandingDataset) -> tuple[list[LandingFile], list[SkippedEntry]]:
    """Regular files of the dataset, oldest path first, and the entries skipped with their
    reason: symbolic links (they may point anywhere, e.g. outside the landing folder) and
    anything that is not a regular file (a pipe would block the reader). Hidden and temporary
    files (``.x``, ``_x``) are ignored. Linked folders are not entered."""
    folder = dataset.folder(landing_dir)
    if not folder.is_dir():
        return [], []
    files: list[LandingFile] = []
    skipped: list[SkippedEntry] = []
    for current, dirs, names in os.walk(folder, followlinks=False):
        base = Path(current)
        linked = [d for d in dirs if (base / d).is_symlink()]  # listed, never entered
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")) and d not in linked)
        for name in sorted([*names, *linked]):
            path = base / name
            if name.startswith((".", "_")):
                continue
            entry = landing_entry(landing_dir, path)
            if isinstance(entry, LandingFile):
                files.append(entry)
            else:
                skipped.append(entry)
    return sorted(files, key=lambda f: f.relpath), sorted(skipped, key=lambda s: s.relpath)


def landing_entry(landing_dir: Path, path: Path) -> LandingFile | SkippedEntry:
    """One entry of the landing folder: a regular file to read, or why it is skipped (a
    symbolic link may point anywhere, e.g. out of the folder; a pipe would block the reader)."""
    relpath = path.relative_to(landing_dir).as_posix()
    stat = path.lstat()
    if path.is_symlink():
        return SkippedEntry(
            relpath,
            f"a symbolic link (to {os.readlink(path)}): landing files must be regular files in the folder",
        )
    if not S_ISREG(stat.st_mode):
        return SkippedEntry(relpath, "not a regular file (a pipe, socket or device): not read")
    return LandingFile(path, relpath, stat.st_size, stat.st_mtime_ns)


def list_landing_files(landing_dir: Path, dataset: LandingDataset) -> list[LandingFile]:
    """The dataset's regular files, oldest path first (``scan_landing`` says what it skips)."""
    return scan_landing(landing_dir, dataset)[0]


@dataclass
class ParsedFile:
    """A landing file parsed: its valid rows and its quarantined ones with reasons."""

    relpath: str
    file_id: str
    rows_read: int
    valid: pl.DataFrame
    quarantine: pl.DataFrame

    @property
    def app_id(self) -> str:
        return f"landing:{self.relpath}:{self.file_id}"


def _quarantine_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=QUARANTINE_SCHEMA)


def _read_raw(data: bytes, fmt: str) -> tuple[pl.DataFrame, list[dict]]:
    """File bytes -> records as a frame (string columns unless the file is typed) + records that
    could not be parsed at all, as quarantine rows without file fields."""
    if fmt == "csv":
        return pl.read_csv(io.BytesIO(data), infer_schema=False, raise_if_empty=False), []
    if fmt == "parquet":
        return pl.from_arrow(pq.read_table(io.BytesIO(data))), []  # type: ignore[return-value]
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    with contextlib.suppress(Exception):  # at least one bad line: parse line by line below
        frame = pl.read_ndjson(io.BytesIO(data), infer_schema_length=None) if lines else pl.DataFrame()
        frame = frame.with_columns(pl.all().cast(pl.String)) if frame.width else frame
        return frame.with_row_index("_row_number", offset=1), []
    good, bad = [], []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("a JSON line must be an object")
            good.append(
                {"_row_number": number, **{k: None if v is None else str(v) for k, v in record.items()}}
            )
        except ValueError as exc:
            bad.append(
                {
                    "row_number": number,
                    "reason": f"invalid JSON: {exc}",
                    "raw": line.decode("utf-8", "replace"),
                }
            )
    return pl.DataFrame(good, infer_schema_length=None), bad


def validate_records(
    frame: pl.DataFrame, dataset: LandingDataset, *, truncated_row: int | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Typed valid rows, and rejected rows with a reason naming each bad field (vectorised)."""
    reasons: list[pl.Expr] = []
    typed: list[pl.Expr] = []
    for name, kind in dataset.columns:
        target = POLARS_TYPES[kind]
        raw = pl.col(name)
        if frame.schema[name] == target:
            value = raw
        elif kind == "ts":
            value = raw.cast(pl.String).str.to_datetime(TIMESTAMP_FORMAT, strict=False, time_unit="us")
        else:
            value = raw.cast(pl.String).str.strip_chars().cast(target, strict=False)
        typed.append(value.alias(name))
        bad_type = raw.is_not_null() & value.is_null()
        reasons.append(
            pl.when(bad_type).then(
                pl.format(f"{name}: expected {KIND_NAMES[kind]}, got '{{}}'", raw.cast(pl.String))
            )
        )
        if name in dataset.required:
            label = "missing key" if name in dataset.keys else "missing required field"
            reasons.append(pl.when(raw.is_null()).then(pl.lit(f"{label} {name}")))
    if truncated_row is not None:
        reasons.append(
            pl.when(pl.col("_row_number") == truncated_row).then(
                pl.lit("truncated record: the file does not end with a newline")
            )
        )
    reason = pl.concat_str(reasons, separator="; ", ignore_nulls=True)
    checked = frame.with_columns(_reason=pl.when(reason != "").then(reason))
    known = {name for name, _ in dataset.columns} | {"_row_number"}
    extra = [c for c in frame.columns if c not in known]
    valid = checked.filter(pl.col("_reason").is_null()).select(
        *typed,
        pl.struct(extra).struct.json_encode().alias("_extra_columns")
        if extra
        else pl.lit(None, pl.String).alias("_extra_columns"),
        "_row_number",
    )
    rejected = checked.filter(pl.col("_reason").is_not_null()).select(
        pl.col("_row_number").alias("row_number"),
        pl.col("_reason").alias("reason"),
        pl.struct([c for c in frame.columns if c != "_row_number"]).struct.json_encode().alias("raw"),
    )
    return valid, rejected


def parse_landing_file(path: Path, relpath: str, dataset: LandingDataset) -> ParsedFile:
    """Read and validate one landing file; every record ends up valid or quarantined with a reason."""
    data = path.read_bytes()
    file_id = hashlib.sha256(data).hexdigest()[:16]  # same as file_id_of(path)
    fmt = SUPPORTED_SUFFIXES.get(path.suffix.lower())

    def whole_file(reason: str, rows: int = 1) -> ParsedFile:
        q = _quarantine_frame([{"row_number": None, "reason": reason, "raw": None}])
        return _finish(relpath, file_id, dataset, rows, _empty_valid(dataset), q)

    if fmt is None:
        return whole_file(
            f"unsupported file type {path.suffix!r}: expected one of {sorted(SUPPORTED_SUFFIXES)}"
        )
    try:
        frame, unparsed = _read_raw(data, fmt)
    except Exception as exc:  # unreadable as a whole (e.g. a truncated Parquet footer)
        return whole_file(f"unreadable {fmt} file: {exc}".strip())
    if "_row_number" not in frame.columns:
        frame = frame.with_row_index("_row_number", offset=1)
    frame = frame.with_columns(pl.col("_row_number").cast(pl.Int64))
    rows_read = frame.height + len(unparsed)
    missing = [name for name, _ in dataset.columns if name not in frame.columns]
    if missing and frame.height:
        # No row can be trusted without the header's columns: quarantine each record as read.
        rejected = frame.select(
            pl.col("_row_number").alias("row_number"),
            pl.lit(f"file has no column(s) {', '.join(missing)}").alias("reason"),
            pl.struct([c for c in frame.columns if c != "_row_number"]).struct.json_encode().alias("raw"),
        )
        return _finish(
            relpath,
            file_id,
            dataset,
            rows_read,
            _empty_valid(dataset),
            pl.concat([rejected, _quarantine_frame(unparsed).select(rejected.columns)]),
        )
    for name in missing:  # an empty file: no records, nothing to check
        frame = frame.with_columns(pl.lit(None, pl.String).alias(name))
    truncated_row = None
    if fmt in ("csv", "jsonl") and data and not data.endswith(b"\n") and frame.height:
        last = frame["_row_number"].max()
        truncated_row = int(last) if isinstance(last, int) else None
    valid, rejected = validate_records(frame, dataset, truncated_row=truncated_row)
    quarantine = pl.concat(
        [
            rejected,
            _quarantine_frame(unparsed).select(rejected.columns).cast(rejected.schema),  # type: ignore[arg-type]
        ]
    )
    return _finish(relpath, file_id, dataset, rows_read, valid, quarantine)


def _empty_valid(dataset: LandingDataset) -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            **{n: POLARS_TYPES[k] for n, k in dataset.columns},
            "_extra_columns": pl.String,
            "_row_number": pl.Int64,
        }
    )


def _finish(
    relpath: str,
    file_id: str,
    dataset: LandingDataset,
    rows_read: int,
    valid: pl.DataFrame,
    quarantine: pl.DataFrame,
) -> ParsedFile:
    if valid.height + quarantine.height != rows_read:
        raise AssertionError(
            f"{relpath}: {rows_read} records read but {valid.height} valid + "
            f"{quarantine.height} quarantined; refusing to lose records"
        )
    valid = valid.with_columns(_source_file=pl.lit(relpath), _file_id=pl.lit(file_id))
    quarantine = quarantine.select(
        pl.lit(dataset.name).alias("dataset"),
        pl.lit(relpath).alias("source_file"),
        pl.lit(file_id).alias("file_id"),
        pl.col("row_number").cast(pl.Int64),
        pl.col("reason").cast(pl.String),
        pl.col("raw").cast(pl.String),
    )
    return ParsedFile(relpath, file_id, rows_read, valid, quarantine)


@dataclass
class IngestResult:
    """What an ingestion run read, landed, quarantined and skipped, and its commits."""

    files_seen: int = 0
    files_ingested: int = 0
    files_skipped: int = 0
    rows_read: int = 0
    rows_landed: int = 0
    rows_quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    commits: list[CommitResult] = field(default_factory=list)
    rows_read_by_file: dict[str, int] = field(default_factory=dict)  # file_id -> records read
    seconds: float = 0.0


def landing_schemas(dataset: LandingDataset) -> tuple[pa.Schema, pa.Schema]:
    """(bronze, quarantine) table schemas, from the same code that builds their rows."""
    empty = _finish("", "", dataset, 0, _empty_valid(dataset), _quarantine_frame([]))
    now = datetime.now(UTC)
    return (
        _stamp(empty.valid, "", now).to_arrow().schema,
        _stamp(empty.quarantine, "", now).to_arrow().schema,
    )


def _stamp(frame: pl.DataFrame, batch_id: str, ingested_at: datetime) -> pl.DataFrame:
    return frame.with_columns(
        _ingested_at=pl.lit(ingested_at).cast(pl.Datetime("us", "UTC")),
        _batch_id=pl.lit(batch_id),
    )


def ingest_files(
    engine: LakeEngine,
    landing_dir: Path,
    dataset: LandingDataset,
    files: Iterable[Path],
    *,
    batch_id: str,
    flush_rows: int = 2_000_000,
    on_file: Callable[[int, ParsedFile | None], None] | None = None,
) -> IngestResult:
    """Ingest each file exactly once: valid rows to bronze, the rest to the quarantine table.

    Files are batched into one commit per table (at most ``flush_rows`` rows each); every commit
    carries the transaction identifiers of the files it contains.
    """
    started = time.perf_counter()
    result = IngestResult()
    pending: dict[str, list[tuple[pl.DataFrame, AppTransaction]]] = {
        dataset.table: [],
        LANDING_QUARANTINE_TABLE: [],
    }
    pending_rows = 0
    # The versions the "already ingested?" decisions were read at: a concurrent ingestion of the
    # same file after them makes our commit fail instead of duplicating rows.
    bronze_schema, quarantine_schema = landing_schemas(dataset)
    read_versions: dict[str, int | None] = {
        dataset.table: engine.ensure_table(dataset.table, bronze_schema, configuration=BRONZE_TABLE_CONFIG),
        LANDING_QUARANTINE_TABLE: engine.ensure_table(
            LANDING_QUARANTINE_TABLE, quarantine_schema, configuration=BRONZE_TABLE_CONFIG
        ),
    }

    def flush() -> None:
        nonlocal pending_rows
        now = datetime.now(UTC)
        for table, parts in pending.items():
            if not parts:
                continue
            frame = pl.concat([_stamp(p, batch_id, now) for p, _ in parts], how="vertical_relaxed")
            commit = engine.append(
                table,
                frame,
                transactions=[t for _, t in parts],
                commit_metadata={"batch_id": batch_id, "files": len(parts)},
                read_version=read_versions[table],
            )
            read_versions[table] = commit.version
            result.commits.append(commit)
            parts.clear()
        pending_rows = 0

    seen: set[str] = set()
    for index, path in enumerate(files, start=1):
        path = Path(path)
        relpath = path.resolve().relative_to(landing_dir.resolve()).as_posix()
        result.files_seen += 1
        parsed = parse_landing_file(path, relpath, dataset)
        txn = AppTransaction(parsed.app_id, 1)
        done_valid = parsed.app_id in seen or (
            engine.app_transaction_version(dataset.table, parsed.app_id, read_versions[dataset.table])
            is not None
        )
        done_quarantine = parsed.app_id in seen or (
            engine.app_transaction_version(
                LANDING_QUARANTINE_TABLE, parsed.app_id, read_versions[LANDING_QUARANTINE_TABLE]
            )
            is not None
        )
        seen.add(parsed.app_id)
        if done_valid and done_quarantine:
            result.files_skipped += 1
            if on_file:
                on_file(index, None)
            continue
        if not done_valid:  # a retry after a crash between the two commits skips this part
            pending[dataset.table].append((parsed.valid, txn))
            result.rows_landed += parsed.valid.height
            result.rows_read += parsed.valid.height
        if not done_quarantine:
            pending[LANDING_QUARANTINE_TABLE].append((parsed.quarantine, txn))
            result.rows_quarantined += parsed.quarantine.height
            result.rows_read += parsed.quarantine.height
            for reason in parsed.quarantine["reason"].to_list():
                kind = reason.split(":")[0].split(";")[0]
                result.reasons[kind] = result.reasons.get(kind, 0) + 1
        result.files_ingested += 1
        result.rows_read_by_file[parsed.file_id] = parsed.rows_read
        pending_rows += parsed.valid.height + parsed.quarantine.height
        per_commit = engine.max_transactions_per_commit
        if pending_rows >= flush_rows or (
            per_commit is not None and max(map(len, pending.values())) >= per_commit
        ):
            flush()
        if on_file:
            on_file(index, parsed)
    flush()
    result.seconds = time.perf_counter() - started
    return result


def file_id_of(path: Path) -> str:
    """Content hash that, with the path, identifies one version of a landed file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def is_ingested(engine: LakeEngine, dataset: LandingDataset, landing_dir: Path, path: Path) -> bool:
    """Whether this exact file (path and content) is already committed to both tables."""
    relpath = path.resolve().relative_to(landing_dir.resolve()).as_posix()
    app_id = f"landing:{relpath}:{file_id_of(path)}"
    return all(
        engine.app_transaction_version(table, app_id) is not None
        for table in (dataset.table, LANDING_QUARANTINE_TABLE)
    )


def reconcile_files(
    engine: LakeEngine, dataset: LandingDataset, rows_read_by_file: dict[str, int]
) -> dict[str, tuple[int, int, int]]:
    """Files whose committed rows (bronze + quarantine) differ from the records read:
    file_id -> (read, landed, quarantined). Empty when nothing was lost or duplicated."""
    if not rows_read_by_file:
        return {}
    ids = list(rows_read_by_file)

    def counts(table: str, column: str) -> dict[str, int]:
        if not engine.exists(table):
            return {}
        frame = engine.read(table, columns=[column]).filter(pl.col(column).is_in(ids))
        return dict(frame.group_by(column).len().iter_rows())

    landed = counts(dataset.table, "_file_id")
    quarantined = counts(LANDING_QUARANTINE_TABLE, "file_id")
    return {
        file_id: (read, landed.get(file_id, 0), quarantined.get(file_id, 0))
        for file_id, read in rows_read_by_file.items()
        if landed.get(file_id, 0) + quarantined.get(file_id, 0) != read
    }
