"""Embedded engine: Delta Lake through delta-rs, data frames in polars. No JVM, no server."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from lakehouse_assets.engine.base import (
    APPEND_ONLY,
    UPSERT,
    AppTransaction,
    CommitResult,
    ConcurrentWriteError,
    MergeClause,
    clause_assignments,
    in_predicate,
    merge_predicate,
    missing_columns,
)
from lakehouse_assets.engine.storage import DeltaLogReader


def nullable(schema: pa.Schema) -> pa.Schema:
    """The schema with every column nullable. NOT NULL columns need the Delta "invariants" table
    feature, which delta-rs does not list in the protocol it writes; Spark then refuses the table.
    Not-null rules live in expectations and checks instead."""
    return pa.schema([field.with_nullable(True) for field in schema])


def _commit_properties(
    transactions: list[AppTransaction] | None, metadata: dict[str, Any] | None
) -> CommitProperties:
    return CommitProperties(
        app_transactions=[Transaction(t.app_id, t.version) for t in transactions or []] or None,
        custom_metadata={
            k: json.dumps(v) if not isinstance(v, str) else v for k, v in (metadata or {}).items()
        }
        or None,
    )


class DeltaEngine(DeltaLogReader):
    """Tables are folders ``<root>/<table>``; ``root`` may be a local path or an object-store URI."""

    name = "embedded"
    max_transactions_per_commit: int | None = None

    def __init__(self, root: str, storage_options: dict[str, str] | None = None):
        self.root = root.rstrip("/")
        self.storage_options = storage_options or None

    def exists(self, table: str) -> bool:
        return DeltaTable.is_deltatable(self.table_path(table), self.storage_options)

    def ensure_table(
        self,
        table: str,
        schema: pa.Schema,
        *,
        configuration: dict[str, str | None] | None = None,
    ) -> int:
        if not self.exists(table):
            with contextlib.suppress(CommitFailedError):  # another writer created it first
                DeltaTable.create(
                    self.table_path(table),
                    nullable(schema),
                    mode="ignore",
                    configuration=configuration,
                    storage_options=self.storage_options,
                )
        elif missing_columns(pa.schema(self._delta_table(table).schema()).names, schema):
            self._write(
                self.table_path(table),
                nullable(schema).empty_table(),
                None,
                None,
                None,
                {"schema_change": "add columns"},
            )  # an empty append, schema merge
        return self._delta_table(table).version()

    def version(self, table: str) -> int | None:
        if not self.exists(table):
            return None
        return self._delta_table(table).version()

    def read(
        self,
        table: str,
        *,
        version: int | None = None,
        columns: list[str] | None = None,
        where_in: dict[str, list[Any]] | None = None,
    ) -> pl.DataFrame:
        dataset = self._delta_table(table, version).to_pyarrow_dataset()
        condition = None
        for column, values in (where_in or {}).items():
            term = pc.field(column).isin(pa.array(values))
            condition = term if condition is None else condition & term
        return pl.DataFrame(pl.from_arrow(dataset.to_table(columns=columns, filter=condition)))

    def append(
        self,
        table: str,
        df: pl.DataFrame | pa.Table,
        *,
        transactions: list[AppTransaction] | None = None,
        partition_by: list[str] | None = None,
        commit_metadata: dict[str, Any] | None = None,
        configuration: dict[str, str | None] | None = None,
        read_version: int | None = None,
    ) -> CommitResult:
        """Append rows (creating the table on first write) in one atomic commit.

        See ``LakeEngine.append`` for ``read_version``; ``configuration`` applies only when the
        table is created.
        """
        data = df.to_arrow() if isinstance(df, pl.DataFrame) else df
        data = data.cast(nullable(data.schema))
        target: str | DeltaTable = self.table_path(table)
        if read_version is not None:
            target = self._delta_table(table, read_version)
        elif self.exists(table):
            target = self._delta_table(table)  # the kept state: the write need not read the log again
        try:
            self._write(target, data, partition_by, configuration, transactions, commit_metadata)
        except CommitFailedError as exc:
            raise ConcurrentWriteError(
                f"append to {table!r} conflicts with a commit made after version {read_version} "
                f"was read ({exc}); nothing was written"
            ) from exc
        return CommitResult(table, self._delta_table(table).version(), data.num_rows, self.table_path(table))

    def overwrite(
        self,
        table: str,
        df: pl.DataFrame | pa.Table | pa.RecordBatchReader,
        *,
        commit_metadata: dict[str, Any] | None = None,
    ) -> CommitResult:
        """Also from an Arrow stream, written batch by batch in one commit (bounded memory)."""
        data = df.to_arrow() if isinstance(df, pl.DataFrame) else df
        rows = 0
        if isinstance(data, pa.RecordBatchReader):
            schema = nullable(data.schema)

            def counted(batches: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
                nonlocal rows
                for batch in batches:
                    rows += batch.num_rows
                    yield batch.cast(schema)

            data = pa.RecordBatchReader.from_batches(schema, counted(data))
        else:
            data = data.cast(nullable(data.schema))
            rows = data.num_rows
        write_deltalake(
            self.table_path(table),
            data,
            mode="overwrite",
            schema_mode="overwrite",
            storage_options=self.storage_options,
            commit_properties=_commit_properties(None, commit_metadata),
        )
        return CommitResult(table, self._delta_table(table).version(), rows, self.table_path(table))

    def _write(
        self,
        target: str | DeltaTable,
        data: pa.Table,
        partition_by: list[str] | None,
        configuration: dict[str, str | None] | None,
        transactions: list[AppTransaction] | None,
        commit_metadata: dict[str, Any] | None,
    ) -> None:
        write_deltalake(
            target,
            data,
            mode="append",
            partition_by=partition_by,
            configuration=configuration,
            schema_mode="merge",
            storage_options=self.storage_options,
            commit_properties=_commit_properties(transactions, commit_metadata),
        )

    def merge(
        self,
        table: str,
        df: pl.DataFrame | pa.Table,
        *,
        keys: list[str],
        clauses: tuple[MergeClause, ...] = UPSERT,
        transactions: list[AppTransaction] | None = None,
        commit_metadata: dict[str, Any] | None = None,
        read_version: int | None = None,
    ) -> CommitResult:
        data = df.to_arrow() if isinstance(df, pl.DataFrame) else df
        if not self.exists(table):
            self.ensure_table(table, data.schema)
        target = self._delta_table(table, read_version)
        target_columns = [field.name for field in pa.schema(target.schema())]
        merger = target.merge(
            data,
            predicate=merge_predicate(keys),
            source_alias="source",
            target_alias="target",
            commit_properties=_commit_properties(transactions, commit_metadata),
        )
        for clause in clauses:
            assignments = clause_assignments(clause, target_columns)
            if (clause.when, clause.action) == ("matched", "update"):
                merger = merger.when_matched_update(assignments, predicate=clause.condition)
            elif (clause.when, clause.action) == ("matched", "delete"):
                merger = merger.when_matched_delete(predicate=clause.condition)
            elif (clause.when, clause.action) == ("not_matched", "insert"):
                merger = merger.when_not_matched_insert(assignments, predicate=clause.condition)
            elif (clause.when, clause.action) == ("not_matched_by_source", "delete"):
                merger = merger.when_not_matched_by_source_delete(predicate=clause.condition)
            else:
                raise ValueError(f"unsupported MERGE clause: {clause}")
        try:
            metrics = merger.execute()
        except CommitFailedError as exc:
            raise ConcurrentWriteError(
                f"merge into {table!r} conflicts with a commit made after version {read_version} "
                f"was read ({exc}); nothing was written"
            ) from exc
        return CommitResult(
            table, self._delta_table(table).version(), data.num_rows, self.table_path(table), metrics
        )

    def changes(
        self, table: str, after_version: int, up_to_version: int | None = None
    ) -> tuple[pl.DataFrame, int]:
        dt = self._delta_table(table, up_to_version)
        end = dt.version()
        if end <= after_version:
            return pl.DataFrame(), end
        reader = dt.load_cdf(starting_version=after_version + 1, ending_version=end)
        return pl.DataFrame(pl.from_arrow(pa.table(reader))), end

    def optimize(self, table: str, zorder_by: list[str] | None = None) -> dict[str, Any]:
        dt = self._delta_table(table)
        return dt.optimize.z_order(zorder_by) if zorder_by else dt.optimize.compact()

    def delete(
        self,
        table: str,
        column: str,
        values: list[Any],
        *,
        commit_metadata: dict[str, Any] | None = None,
    ) -> int:
        if not values or not self.exists(table):
            return 0
        append_only = self._delta_table(table).metadata().configuration.get(APPEND_ONLY) == "true"
        if append_only:
            self._delta_table(table).alter.set_table_properties({APPEND_ONLY: "false"})
        try:
            metrics = self._delta_table(table).delete(
                in_predicate(column, values), commit_properties=_commit_properties(None, commit_metadata)
            )
        except CommitFailedError as exc:
            raise ConcurrentWriteError(
                f"delete from {table!r} conflicts with a concurrent commit ({exc}); nothing was deleted"
            ) from exc
        finally:
            if append_only:
                self._delta_table(table).alter.set_table_properties({APPEND_ONLY: "true"})
        return int(metrics.get("num_deleted_rows", 0))

    def vacuum(self, table: str, retention_hours: int) -> list[str]:
        # The retention is the caller's (a setting): below the 7-day Delta default is allowed.
        # full: also the files a crashed writer left without ever committing them (the default
        # only looks at files the log once referenced)
        return self._delta_table(table).vacuum(
            retention_hours=retention_hours,
            dry_run=False,
            enforce_retention_duration=False,
            full=True,
        )

    def app_transaction_version(self, table: str, app_id: str, at_version: int | None = None) -> int | None:
        if not self.exists(table):
            return None
        return self._delta_table(table, at_version).transaction_version(app_id)

    def history(self, table: str, limit: int | None = None) -> list[dict[str, Any]]:
        return self._delta_table(table).history(limit)

    def row_count(self, table: str) -> int:
        if not self.exists(table):
            return 0
        actions = pa.table(self._delta_table(table).get_add_actions(flatten=True))
        return int(pc.sum(actions.column("num_records")).as_py() or 0)

    def head(self, table: str, rows: int = 10) -> pl.DataFrame:
        return pl.DataFrame(pl.from_arrow(self._delta_table(table).to_pyarrow_dataset().head(rows)))
