"""Trigger-based change data capture for the SQLite source, and its exactly-once capture into bronze.

Each source table gets a change table (``_cdc_<table>``) filled by AFTER INSERT/UPDATE/DELETE
triggers with the full row image (the old image for deletes) and a sequence drawn from one
counter shared by all tables. SQLite has a single writer, so sequence order is commit order and a
reader never sees a gap that a later commit fills.

Capture reads the change rows after the bronze table's cursor and appends them to bronze. The
cursor is a Delta transaction identifier committed *in the same commit* as the rows, so a crash
before the commit loses nothing (the rows are read again) and a crash after it duplicates nothing
(the cursor moved with the rows).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import connectorx as cx
import numpy as np
import polars as pl
import pyarrow as pa

from lakehouse_assets.engine.base import AppTransaction, CommitResult, LakeEngine
from lakehouse_assets.sources.schema import SOURCE_TABLES, SQLITE_TYPES, SourceTable
from lakehouse_assets.tables import bronze_table

OPERATIONS = ("insert", "update", "delete")
# Bronze is append-only; its Change Data Feed lets silver read just the rows added since a version.
BRONZE_TABLE_CONFIG: dict[str, str | None] = {
    "delta.appendOnly": "true",
    "delta.enableChangeDataFeed": "true",
}
_COMMIT_TS = "COALESCE((SELECT ts FROM _cdc_clock), CAST(strftime('%s','now') AS INTEGER))"


class CaptureError(RuntimeError):
    """The source's change log cannot be captured consistently (named cause in the message)."""


def bronze_table_name(table: SourceTable) -> str:
    """The bronze table of a source table's change events."""
    return bronze_table(table.name)


def _image(table: SourceTable, ref: str) -> str:
    values = []
    for name, kind in table.columns:
        col = f"{ref}.{name}"
        values.append(f"CAST(strftime('%s', {col}) AS INTEGER)" if kind == "ts" else col)
    return ", ".join(values)


def install_change_capture(conn: sqlite3.Connection) -> None:
    """Create the sequence, clock, change tables and triggers (idempotent)."""
    conn.execute("CREATE TABLE IF NOT EXISTS _cdc_sequence (value INTEGER NOT NULL)")
    if conn.execute("SELECT COUNT(*) FROM _cdc_sequence").fetchone()[0] == 0:
        conn.execute("INSERT INTO _cdc_sequence VALUES (0)")
    # The commit clock: the simulator sets it to simulated time; unset, wall time is used.
    conn.execute("CREATE TABLE IF NOT EXISTS _cdc_clock (ts INTEGER NOT NULL)")
    for table in SOURCE_TABLES:
        cols = ", ".join(
            # Timestamps are stored as epoch seconds: cheap to read back and convert.
            f"{name} {'INTEGER' if kind == 'ts' else SQLITE_TYPES[kind]}"
            for name, kind in table.columns
        )
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table.change_table} ("
            f"_seq INTEGER PRIMARY KEY, _op TEXT NOT NULL, _commit_ts INTEGER NOT NULL, {cols})"
        )
        col_list = ", ".join(table.column_names)
        for op, event, ref in (
            ("insert", "INSERT", "NEW"),
            ("update", "UPDATE", "NEW"),
            ("delete", "DELETE", "OLD"),
        ):
            conn.execute(
                f"CREATE TRIGGER IF NOT EXISTS {table.change_table}_{op} AFTER {event} ON {table.name} "
                f"BEGIN UPDATE _cdc_sequence SET value = value + 1; "
                f"INSERT INTO {table.change_table} (_seq, _op, _commit_ts, {col_list}) VALUES "
                f"((SELECT value FROM _cdc_sequence), '{op}', {_COMMIT_TS}, {_image(table, ref)}); END"
            )


# bronze columns that describe the change, not the source row
BRONZE_METADATA_COLUMNS = ("_seq", "_op", "_commit_ts", "_ingested_at", "_source", "_batch_id")


def bronze_arrow_schema(table: SourceTable) -> pa.Schema:
    """The bronze schema of a source table: its columns, the change metadata and the ingestion columns."""
    # All columns nullable: NOT NULL columns need the Delta "invariants" table feature, which
    # delta-rs does not list in the protocol it writes, and Spark then refuses the table.
    return pa.schema(
        [
            pa.field("_seq", pa.int64()),
            pa.field("_op", pa.string()),
            pa.field("_commit_ts", pa.timestamp("us")),
            *table.arrow_fields(),
            pa.field("_ingested_at", pa.timestamp("us", tz="UTC")),
            pa.field("_source", pa.string()),
            pa.field("_batch_id", pa.string()),
        ]
    )


@dataclass
class ChangeLog:
    """Read access to the change tables of one SQLite source database."""

    path: Path

    @property
    def uri(self) -> str:
        return f"sqlite://{self.path.resolve()}"

    def _connect(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise CaptureError(f"source database {self.path} does not exist: run `lakehouse simulate` first")
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)

    def max_seq(self, table: SourceTable) -> int:
        with closing(self._connect()) as conn:
            row = conn.execute(f"SELECT MAX(_seq) FROM {table.change_table}").fetchone()
        return int(row[0] or 0)

    def count_between(self, table: SourceTable, after_seq: int, upto_seq: int) -> int:
        """Number of changes with after_seq < _seq <= upto_seq."""
        with closing(self._connect()) as conn:
            sql = f"SELECT COUNT(*) FROM {table.change_table} WHERE _seq > ? AND _seq <= ?"
            return int(conn.execute(sql, (after_seq, upto_seq)).fetchone()[0])

    def sequences(self, table: SourceTable, upto_seq: int, column: str | None = None) -> pl.DataFrame:
        """The sequences (and ``column``) of the changes with _seq <= upto_seq."""
        columns = "_seq" + (f", {column}" if column else "")
        query = f"SELECT {columns} FROM {table.change_table} WHERE _seq <= {int(upto_seq)}"
        return pl.DataFrame(pl.from_arrow(cx.read_sql(self.uri, query, return_type="arrow")))

    def chunk_upper_bound(self, table: SourceTable, after_seq: int, max_rows: int) -> int | None:
        """The sequence that ends the next chunk of at most ``max_rows`` changes, or None."""
        with closing(self._connect()) as conn:
            row = conn.execute(
                f"SELECT MAX(_seq) FROM (SELECT _seq FROM {table.change_table} "
                f"WHERE _seq > ? ORDER BY _seq LIMIT ?)",
                (after_seq, max_rows),
            ).fetchone()
        return None if row[0] is None else int(row[0])

    def read_range(self, table: SourceTable, after_seq: int, upper_seq: int) -> pa.Table:
        """Change rows with after_seq < _seq <= upper_seq, in sequence order.

        Every sequence up to ``upper_seq`` is committed (it was read), so reading the range in
        parallel partitions over separate connections is still one consistent set of changes.
        """
        query = (
            f"SELECT * FROM {table.change_table} WHERE _seq > {int(after_seq)} AND _seq <= {int(upper_seq)}"
        )
        partitions = 2 if upper_seq - after_seq > 200_000 else 1
        if partitions > 1:
            arrow = cx.read_sql(
                self.uri,
                query,
                return_type="arrow",
                partition_on="_seq",
                partition_num=partitions,
            )
        else:
            arrow = cx.read_sql(self.uri, query, return_type="arrow")
        return pa.table(arrow)


def to_bronze_rows(
    changes: pa.Table, table: SourceTable, *, source: str, batch_id: str, ingested_at: datetime
) -> pa.Table:
    """Change rows as read from SQLite -> the bronze schema (typed timestamps, ingestion columns)."""
    df = pl.DataFrame(pl.from_arrow(changes))
    if df.height == 0:
        return bronze_arrow_schema(table).empty_table()
    seconds_to_ts = [
        (pl.col(name).cast(pl.Int64) * 1_000_000).cast(pl.Datetime("us")).alias(name)
        for name, kind in [("_commit_ts", "ts"), *table.columns]
        if kind == "ts"
    ]
    if not df["_seq"].is_sorted():  # parallel partitions may arrive out of order
        df = df.sort("_seq")
    df = df.with_columns(
        *seconds_to_ts,
        _ingested_at=pl.lit(ingested_at).cast(pl.Datetime("us", "UTC")),
        _source=pl.lit(source),
        _batch_id=pl.lit(batch_id),
    )
    schema = bronze_arrow_schema(table)
    return df.select(schema.names).to_arrow().cast(schema)


@dataclass
class CaptureResult:
    """What one capture run read and committed, and the sequence range it covered."""

    table: str
    rows: int = 0
    commits: list[CommitResult] = field(default_factory=list)
    cursor_before: int = 0
    cursor_after: int = 0
    ops: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    # source commit time of each change committed, epoch seconds (how late it reached the lake)
    commit_times: list[np.ndarray] = field(default_factory=list)

    def note_commit(self, commit: CommitResult, rows: pl.DataFrame) -> None:
        """Count a bronze commit of these change rows."""
        self.commits.append(commit)
        self.rows += rows.height
        for op, count in rows["_op"].value_counts().iter_rows():
            self.ops[op] = self.ops.get(op, 0) + count
        self.commit_times.append(rows["_commit_ts"].dt.epoch("us").to_numpy() / 1e6)

    @property
    def version(self) -> int | None:
        return self.commits[-1].version if self.commits else None


def capture_app_id(table: SourceTable) -> str:
    """The transaction identifier under which a source table's capture progress is committed."""
    return f"cdc:{table.name}"


def _chunks(
    log: ChangeLog, table: SourceTable, cursor: int, chunk_rows: int
) -> Iterator[tuple[int, pa.Table]]:
    """Yield (upper_seq, changes) chunk after chunk, reading the next chunk while the caller
    writes the current one (SQLite reads and Delta writes both release the GIL)."""

    def read_next(after: int) -> tuple[int, pa.Table] | None:
        upper = log.chunk_upper_bound(table, after, chunk_rows)
        return None if upper is None else (upper, log.read_range(table, after, upper))

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read_next, cursor)
        while (chunk := pending.result()) is not None:
            pending = pool.submit(read_next, chunk[0])
            yield chunk


def capture_to_bronze(
    engine: LakeEngine,
    log: ChangeLog,
    table: SourceTable,
    *,
    batch_id: str,
    chunk_rows: int = 250_000,
    on_chunk: Callable[[CaptureResult], None] | None = None,
) -> CaptureResult:
    """Append every change after the bronze cursor to the bronze table, exactly once."""
    started = time.perf_counter()
    target = bronze_table_name(table)
    app_id = capture_app_id(table)
    read_version = engine.ensure_table(target, bronze_arrow_schema(table), configuration=BRONZE_TABLE_CONFIG)
    cursor = engine.app_transaction_version(target, app_id, at_version=read_version) or 0
    source_max = log.max_seq(table)
    if source_max < cursor:
        raise CaptureError(
            f"the change log of {table.name!r} ends at sequence {source_max} but bronze has already "
            f"captured up to {cursor}: the source database was reset or replaced. Point "
            f"LAKEHOUSE_SOURCE_DB_PATH at the original database or start a new lake."
        )
    result = CaptureResult(table=table.name, cursor_before=cursor, cursor_after=cursor)
    source = f"sqlite:{log.path.name}/{table.name}"
    for upper, changes in _chunks(log, table, cursor, chunk_rows):
        rows = to_bronze_rows(changes, table, source=source, batch_id=batch_id, ingested_at=datetime.now(UTC))
        commit = engine.append(
            target,
            rows,
            transactions=[AppTransaction(app_id, upper)],
            commit_metadata={"cdc_from_seq": cursor, "cdc_to_seq": upper, "batch_id": batch_id},
            configuration=BRONZE_TABLE_CONFIG,
            read_version=read_version,
        )
        read_version = commit.version
        result.note_commit(commit, pl.DataFrame(pl.from_arrow(rows.select(["_op", "_commit_ts"]))))
        result.cursor_after = cursor = upper
        if on_chunk:
            on_chunk(result)
    result.seconds = time.perf_counter() - started
    return result
