"""Embedded engine: Delta Lake through delta-rs, data frames in polars. No JVM, no server."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError
from deltalake.exceptions import TableNotFoundError as DeltaTableNotFound

from lakehouse_assets.engine.base import (
    AppTransaction,
    CommitResult,
    ConcurrentWriteError,
    TableNotFoundError,
)


def _commit_properties(
    transactions: list[AppTransaction] | None, metadata: dict[str, Any] | None
) -> CommitProperties:
    return CommitProperties(
        app_transactions=[Transaction(t.app_id, t.version) for t in transactions or []] or None,
        custom_metadata={k: json.dumps(v) if not isinstance(v, str) else v
                         for k, v in (metadata or {}).items()} or None,
    )


class DeltaEngine:
    """Tables are folders ``<root>/<table>``; ``root`` may be a local path or an object-store URI."""

    name = "embedded"

    def __init__(self, root: str, storage_options: dict[str, str] | None = None):
        self.root = root.rstrip("/")
        self.storage_options = storage_options or None

    def table_path(self, table: str) -> str:
        return f"{self.root}/{table}"

    def _table(self, table: str, version: int | None = None) -> DeltaTable:
        try:
            return DeltaTable(
                self.table_path(table), version=version, storage_options=self.storage_options
            )
        except DeltaTableNotFound as exc:
            raise TableNotFoundError(f"table {table!r} not found at {self.table_path(table)}") from exc

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
                    self.table_path(table), schema, mode="ignore", configuration=configuration,
                    storage_options=self.storage_options,
                )
        return self._table(table).version()

    def version(self, table: str) -> int | None:
        if not self.exists(table):
            return None
        return self._table(table).version()

    def read(
        self,
        table: str,
        *,
        version: int | None = None,
        columns: list[str] | None = None,
    ) -> pl.DataFrame:
        arrow = self._table(table, version).to_pyarrow_table(columns=columns)
        return pl.DataFrame(pl.from_arrow(arrow))

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
        target: str | DeltaTable = self.table_path(table)
        if read_version is not None:
            target = self._table(table, read_version)
        try:
            self._write(target, data, partition_by, configuration, transactions, commit_metadata)
        except CommitFailedError as exc:
            raise ConcurrentWriteError(
                f"append to {table!r} conflicts with a commit made after version {read_version} "
                f"was read ({exc}); nothing was written"
            ) from exc
        return CommitResult(table, self._table(table).version(), data.num_rows, self.table_path(table))

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
        transactions: list[AppTransaction] | None = None,
        commit_metadata: dict[str, Any] | None = None,
    ) -> CommitResult:
        data = df.to_arrow() if isinstance(df, pl.DataFrame) else df
        if not self.exists(table):
            return self.append(
                table, data, transactions=transactions, commit_metadata=commit_metadata
            )
        predicate = " AND ".join(f"target.`{k}` = source.`{k}`" for k in keys)
        (
            self._table(table)
            .merge(
                data,
                predicate=predicate,
                source_alias="source",
                target_alias="target",
                commit_properties=_commit_properties(transactions, commit_metadata),
            )
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
        return CommitResult(table, self._table(table).version(), data.num_rows, self.table_path(table))

    def app_transaction_version(
        self, table: str, app_id: str, at_version: int | None = None
    ) -> int | None:
        if not self.exists(table):
            return None
        return self._table(table, at_version).transaction_version(app_id)

    def history(self, table: str, limit: int | None = None) -> list[dict[str, Any]]:
        return self._table(table).history(limit)

    def row_count(self, table: str) -> int:
        if not self.exists(table):
            return 0
        actions = pa.table(self._table(table).get_add_actions(flatten=True))
        return int(pc.sum(actions.column("num_records")).as_py() or 0)

    def head(self, table: str, rows: int = 10) -> pl.DataFrame:
        return pl.DataFrame(pl.from_arrow(self._table(table).to_pyarrow_dataset().head(rows)))
