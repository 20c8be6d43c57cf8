"""What both engines read from the Delta log and the storage under the lake root: the tables
there, their schemas and statistics, Arrow datasets for DuckDB, and the change-data files of
chosen commits. delta-rs reads the log and pyarrow's file systems list and delete files, so the
same code runs on a local folder and on an object store (``s3://``, ``gs://``, ``abfs://``)."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError as DeltaTableNotFound

from lakehouse_assets.engine.base import TableNotFoundError

LOG_FOLDER = "_delta_log"
_OPENED = threading.local()  # (root, table, options) -> DeltaTable at its latest version, per thread


@dataclass(frozen=True)
class TableStats:
    """A table's current version, rows, files and size (from the log, no data read)."""

    delta_version: int
    rows: int
    last_update: datetime
    files: int
    size_bytes: int
    schema: pa.Schema


def filesystem(root: str, storage_options: dict[str, str] | None = None) -> tuple[pafs.FileSystem, str]:
    """The file system of a lake root and the root's path in it. S3 takes the same storage
    options as delta-rs (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ...)."""
    if "://" not in root:
        return pafs.LocalFileSystem(), os.path.abspath(root)
    options = {k.upper(): v for k, v in (storage_options or {}).items()}
    if root.startswith(("s3://", "s3a://")) and options:
        endpoint = options.get("AWS_ENDPOINT_URL") or options.get("AWS_ENDPOINT")
        scheme = endpoint.split("://", 1)[0] if endpoint else "https"
        s3 = pafs.S3FileSystem(
            access_key=options.get("AWS_ACCESS_KEY_ID"),
            secret_key=options.get("AWS_SECRET_ACCESS_KEY"),
            session_token=options.get("AWS_SESSION_TOKEN"),
            region=options.get("AWS_REGION") or options.get("AWS_DEFAULT_REGION"),
            endpoint_override=endpoint.split("://", 1)[-1] if endpoint else None,
            scheme=scheme,
        )
        return s3, root.split("://", 1)[1]
    return pafs.FileSystem.from_uri(root)


class DeltaLogReader:
    """Metadata reads shared by the engines; they set ``root`` and ``storage_options``."""

    root: str
    storage_options: dict[str, str] | None

    def table_path(self, table: str) -> str:
        return f"{self.root}/{table}"

    def _delta_table(self, table: str, version: int | None = None) -> DeltaTable:
        """The table at ``version`` (the latest when None). The latest state is kept per thread
        and brought up to date by reading only the commits since (opening a table reads its
        log from the last checkpoint: ten times the cost, paid by every call of a busy writer
        such as the stream)."""
        opened = _OPENED.__dict__.setdefault("tables", {})
        key = (self.root, table, tuple(sorted((self.storage_options or {}).items())))
        cached: DeltaTable | None = opened.pop(key, None)
        if cached is not None:
            try:
                cached.update_incremental()
            except Exception:  # noqa: BLE001 - anything odd: open it afresh
                cached = None
        if cached is not None and self._still_there(table, cached.version()):
            opened[key] = cached
            if version is None or version == cached.version():
                return cached
        try:
            fresh = DeltaTable(self.table_path(table), version=version, storage_options=self.storage_options)
        except DeltaTableNotFound as exc:
            raise TableNotFoundError(f"table {table!r} not found at {self.table_path(table)}") from exc
        if version is None:
            opened[key] = fresh
        return fresh

    def _still_there(self, table: str, version: int) -> bool:
        """Whether the commit a cached table is at still exists (a local table deleted and
        created again starts a new log)."""
        if "://" in self.root:
            return True
        return os.path.exists(f"{self.table_path(table)}/{LOG_FOLDER}/{version:020d}.json")

    def tables(self) -> list[str]:
        """Every Delta table under the root as ``layer/name`` (deeper paths kept), sorted."""
        fs, base = filesystem(self.root, self.storage_options)
        base = base.rstrip("/")
        found: list[str] = []

        def walk(path: str) -> None:
            try:
                entries = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
            except (FileNotFoundError, NotADirectoryError):
                return
            folders = [e for e in entries if e.type == pafs.FileType.Directory]
            if any(e.base_name == LOG_FOLDER for e in folders):
                found.append(path[len(base) + 1 :])
                return  # a table's folders hold data files, not tables
            for entry in folders:
                if not entry.base_name.startswith("."):
                    walk(entry.path)

        walk(base)
        return sorted(t for t in found if "/" in t)

    def schema(self, table: str, version: int | None = None) -> pa.Schema:
        return pa.schema(self._delta_table(table, version).schema())

    def dataset(self, table: str, version: int | None = None) -> ds.Dataset:
        """The table (at a version) as an Arrow dataset: filters and projections push down."""
        return self._delta_table(table, version).to_pyarrow_dataset()

    def stats(self, table: str) -> TableStats:
        delta = self._delta_table(table)
        actions = pa.table(delta.get_add_actions(flatten=True))
        last = delta.history(1)[0]["timestamp"]
        return TableStats(
            delta_version=delta.version(),
            rows=int(pc.sum(actions.column("num_records")).as_py() or 0) if actions.num_rows else 0,
            last_update=datetime.fromtimestamp(last / 1000, UTC),
            files=actions.num_rows,
            size_bytes=int(pc.sum(actions.column("size_bytes")).as_py() or 0) if actions.num_rows else 0,
            schema=pa.schema(delta.schema()),
        )

    def remove_change_files(self, table: str, commit_key: str, *, dry_run: bool = False) -> list[str]:
        """Delete the change-data files of the commits whose metadata carries ``commit_key``
        (those files keep the rows such a commit deleted, e.g. an erasure). Returns them (with
        ``dry_run``: only lists them)."""
        fs, base = filesystem(self.table_path(table), self.storage_options)
        log = f"{base.rstrip('/')}/{LOG_FOLDER}"
        commits = [
            e
            for e in fs.get_file_info(pafs.FileSelector(log, allow_not_found=True))
            if e.base_name.endswith(".json")
        ]
        removed = []
        for commit in sorted(commits, key=lambda e: e.base_name):
            with fs.open_input_stream(commit.path) as stream:
                actions = [json.loads(line) for line in stream.read().decode().splitlines() if line]
            info: dict[str, Any] = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
            if commit_key not in info and commit_key not in json.dumps(info.get("userMetadata", "")):
                continue
            for action in actions:
                if "cdc" not in action:
                    continue
                path = f"{base.rstrip('/')}/{action['cdc']['path']}"
                if fs.get_file_info(path).type == pafs.FileType.File:
                    if not dry_run:
                        fs.delete_file(path)
                    removed.append(action["cdc"]["path"])
        return removed
