"""Spark engine: Delta Lake through PySpark + delta-spark, behind the same protocol.

Data moves between Spark and the callers' polars frames as Arrow; callers that keep the work in
Spark (apply-changes) pass Spark DataFrames to ``append`` / ``merge`` and read lazily with
``frame`` / ``change_frame``, so nothing is collected to the driver. The Delta log is the contract
between engines, so small metadata reads (versions, transaction identifiers) use delta-rs on the
same table; everything that reads or writes data runs in Spark.

Exactly-once works as on the embedded engine: a write carries its transaction identifier
(``txnAppId`` / ``txnVersion``; for MERGE the matching session settings), Spark skips a write whose
identifier is already committed, and a concurrent commit of the same identifier fails.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from typing import Any

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable as RustDeltaTable

from lakehouse_assets.engine.base import (
    APPEND_ONLY,
    UPSERT,
    AppTransaction,
    CommitResult,
    ConcurrentWriteError,
    MergeClause,
    TableNotFoundError,
    clause_assignments,
    in_predicate,
    merge_predicate,
    missing_columns,
)
from lakehouse_assets.engine.storage import DeltaLogReader

# delta-spark's MERGE metric names -> the names the protocol's callers read (delta-rs's).
MERGE_METRICS = {
    "numTargetRowsInserted": "num_target_rows_inserted",
    "numTargetRowsUpdated": "num_target_rows_updated",
    "numTargetRowsDeleted": "num_target_rows_deleted",
    "numSourceRows": "num_source_rows",
}


def is_spark_frame(data: Any) -> bool:
    """Whether ``data`` is a (classic or Connect) Spark DataFrame, without importing PySpark."""
    return type(data).__name__ == "DataFrame" and type(data).__module__.startswith("pyspark.")


def arrow_schema(frame: Any) -> pa.Schema:
    """A Spark DataFrame's schema as Arrow (no rows are computed)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(frame.schema)


class SparkEngine(DeltaLogReader):
    """The lake engine on a Spark session with delta-spark (metadata reads through delta-rs)."""

    name = "spark"
    # Spark commits one transaction identifier per write.
    max_transactions_per_commit: int | None = 1

    def __init__(self, spark: Any, root: str, storage_options: dict[str, str] | None = None):
        self.spark = spark
        self.root = root.rstrip("/")
        self.storage_options = storage_options or None
        self._session_conf_lock = threading.Lock()

    # ------------------------------------------------------------------ helpers
    def _delta(self, table: str):
        from delta.tables import DeltaTable

        if not self.exists(table):
            raise TableNotFoundError(f"table {table!r} not found at {self.table_path(table)}")
        return DeltaTable.forPath(self.spark, self.table_path(table))

    def _to_spark(self, data: Any):
        """A Spark DataFrame as it is; polars or Arrow through Arrow."""
        if is_spark_frame(data):
            return data
        arrow = data.to_arrow() if isinstance(data, pl.DataFrame) else data
        return self.spark.createDataFrame(arrow)

    @staticmethod
    def _rows(data: Any) -> int:
        """Rows of an in-memory frame; -1 for a Spark DataFrame (counting would run it again)."""
        return -1 if is_spark_frame(data) else len(data)

    def frame(self, table: str, version: int | None = None):
        """The table (at ``version``) as a lazy Spark DataFrame."""
        if not self.exists(table):
            raise TableNotFoundError(f"table {table!r} not found at {self.table_path(table)}")
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(self.table_path(table))

    def change_frame(self, table: str, after_version: int, up_to_version: int | None = None):
        """``changes`` as a lazy Spark DataFrame (None when there is no new version)."""
        end = self.version(table) if up_to_version is None else up_to_version
        if end is None:
            raise TableNotFoundError(f"table {table!r} not found at {self.table_path(table)}")
        if end <= after_version:
            return None, end
        frame = (
            self.spark.read.format("delta")
            .option("readChangeFeed", "true")
            .option("startingVersion", after_version + 1)
            .option("endingVersion", end)
            .load(self.table_path(table))
        )
        return frame, end

    @staticmethod
    def _to_polars(frame) -> pl.DataFrame:
        return pl.DataFrame(pl.from_arrow(frame.toArrow()))

    @contextmanager
    def _commit_settings(self, transactions: list[AppTransaction] | None, metadata: dict[str, Any] | None):
        """Session settings that make the next DML commit carry an identifier and metadata."""
        if transactions and len(transactions) > 1:
            raise ValueError("the Spark engine commits one transaction identifier per write")
        settings = {}
        if transactions:
            settings["spark.databricks.delta.write.txnAppId"] = transactions[0].app_id
            settings["spark.databricks.delta.write.txnVersion"] = str(transactions[0].version)
        if metadata:
            settings["spark.databricks.delta.commitInfo.userMetadata"] = json.dumps(metadata)
        with self._session_conf_lock:
            for key, value in settings.items():
                self.spark.conf.set(key, value)
            try:
                yield
            finally:
                for key in settings:
                    self.spark.conf.unset(key)

    @staticmethod
    def _conflict(table: str, exc: Exception) -> Exception:
        text = str(exc)
        if "Concurrent" in text or "ConcurrentTransaction" in type(exc).__name__:
            return ConcurrentWriteError(
                f"write to {table!r} lost to a concurrent commit ({text[:300]}); nothing was written"
            )
        return exc

    # ------------------------------------------------------------------ protocol
    def exists(self, table: str) -> bool:
        return RustDeltaTable.is_deltatable(self.table_path(table), self.storage_options)

    def version(self, table: str) -> int | None:
        if not self.exists(table):
            return None
        return RustDeltaTable(self.table_path(table), storage_options=self.storage_options).version()

    def app_transaction_version(self, table: str, app_id: str, at_version: int | None = None) -> int | None:
        if not self.exists(table):
            return None
        return RustDeltaTable(
            self.table_path(table), version=at_version, storage_options=self.storage_options
        ).transaction_version(app_id)

    def ensure_table(
        self, table: str, schema: pa.Schema, *, configuration: dict[str, str | None] | None = None
    ) -> int:
        from delta.tables import DeltaTable

        if not self.exists(table):
            builder = DeltaTable.createIfNotExists(self.spark).location(self.table_path(table))
            builder = builder.addColumns(self.spark.createDataFrame(schema.empty_table()).schema)
            for key, value in (configuration or {}).items():
                if value is not None:
                    builder = builder.property(key, value)
            try:
                builder.execute()
            except Exception as exc:
                if not self.exists(table):  # only losing the race to another creator is fine
                    raise self._conflict(table, exc) from exc
        elif missing_columns(self.spark.read.format("delta").load(self.table_path(table)).columns, schema):
            self.append(table, schema.empty_table())  # mergeSchema adds the columns
        version = self.version(table)
        if version is None:
            raise TableNotFoundError(f"table {table!r} was not created at {self.table_path(table)}")
        return version

    def read(
        self,
        table: str,
        *,
        version: int | None = None,
        columns: list[str] | None = None,
        where_in: dict[str, list[Any]] | None = None,
    ) -> pl.DataFrame:
        frame = self.frame(table, version)
        for column, values in (where_in or {}).items():
            frame = frame.where(frame[column].isin(list(values)))
        if columns:
            frame = frame.select(*columns)
        return self._to_polars(frame)

    def head(self, table: str, rows: int = 10) -> pl.DataFrame:
        frame = self.spark.read.format("delta").load(self.table_path(table)).limit(rows)
        return self._to_polars(frame)

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
        data = self._to_spark(df)
        if configuration and not self.exists(table):
            self.ensure_table(table, arrow_schema(data), configuration=configuration)
        if transactions and len(transactions) > 1:
            raise ValueError("the Spark engine commits one transaction identifier per write")
        writer = data.write.format("delta").mode("append").option("mergeSchema", "true")
        if transactions:
            writer = writer.option("txnAppId", transactions[0].app_id)
            writer = writer.option("txnVersion", transactions[0].version)
        if commit_metadata:
            writer = writer.option("userMetadata", json.dumps(commit_metadata))
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        try:
            writer.save(self.table_path(table))
        except Exception as exc:
            raise self._conflict(table, exc) from exc
        return CommitResult(table, self.version(table) or 0, self._rows(df), self.table_path(table))

    def overwrite(
        self, table: str, df: pl.DataFrame | pa.Table, *, commit_metadata: dict[str, Any] | None = None
    ) -> CommitResult:
        writer = self._to_spark(df).write.format("delta").mode("overwrite").option("overwriteSchema", "true")
        if commit_metadata:
            writer = writer.option("userMetadata", json.dumps(commit_metadata))
        writer.save(self.table_path(table))
        return CommitResult(table, self.version(table) or 0, self._rows(df), self.table_path(table))

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
        source = self._to_spark(df)
        if not self.exists(table):
            self.ensure_table(table, arrow_schema(source))
        target = self._delta(table)
        target_columns = target.toDF().columns
        builder = target.alias("target").merge(source.alias("source"), merge_predicate(keys))
        for clause in clauses:
            assignments = clause_assignments(clause, target_columns)
            if (clause.when, clause.action) == ("matched", "update"):
                builder = builder.whenMatchedUpdate(condition=clause.condition, set=assignments)
            elif (clause.when, clause.action) == ("matched", "delete"):
                builder = builder.whenMatchedDelete(condition=clause.condition)
            elif (clause.when, clause.action) == ("not_matched", "insert"):
                builder = builder.whenNotMatchedInsert(condition=clause.condition, values=assignments)
            elif (clause.when, clause.action) == ("not_matched_by_source", "delete"):
                builder = builder.whenNotMatchedBySourceDelete(condition=clause.condition)
            else:
                raise ValueError(f"unsupported MERGE clause: {clause}")
        before = self.version(table)
        try:
            with self._commit_settings(transactions, commit_metadata):
                builder.execute()
        except Exception as exc:
            raise self._conflict(table, exc) from exc
        version = self.version(table) or 0
        metrics: dict[str, Any] = {}
        if version != before:
            last = target.history(1).collect()[0].asDict()
            metrics = {
                MERGE_METRICS[k]: int(v)
                for k, v in (last["operationMetrics"] or {}).items()
                if k in MERGE_METRICS
            }
        rows = metrics.get("num_source_rows", -1) if is_spark_frame(df) else len(df)
        return CommitResult(table, version, rows, self.table_path(table), metrics)

    def changes(
        self, table: str, after_version: int, up_to_version: int | None = None
    ) -> tuple[pl.DataFrame, int]:
        frame, end = self.change_frame(table, after_version, up_to_version)
        return (pl.DataFrame() if frame is None else self._to_polars(frame)), end

    def history(self, table: str, limit: int | None = None) -> list[dict[str, Any]]:
        rows = self._delta(table).history(limit).collect()
        return [row.asDict(recursive=True) for row in rows]

    def row_count(self, table: str) -> int:
        if not self.exists(table):
            return 0
        return int(self.spark.read.format("delta").load(self.table_path(table)).count())

    def optimize(self, table: str, zorder_by: list[str] | None = None) -> dict[str, Any]:
        optimizer = self._delta(table).optimize()
        result = optimizer.executeZOrderBy(*zorder_by) if zorder_by else optimizer.executeCompaction()
        metrics = result.collect()[0]["metrics"].asDict()
        return {
            "numFilesAdded": metrics.get("numFilesAdded", 0),
            "numFilesRemoved": metrics.get("numFilesRemoved", 0),
        }

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
        path = self.table_path(table)
        properties = self.spark.sql(f"SHOW TBLPROPERTIES delta.`{path}`").collect()
        append_only = any(r["key"] == APPEND_ONLY and r["value"] == "true" for r in properties)
        before = self.row_count(table)
        if append_only:
            self.spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('{APPEND_ONLY}' = 'false')")
        try:
            if commit_metadata:
                self.spark.conf.set(
                    "spark.databricks.delta.commitInfo.userMetadata", json.dumps(commit_metadata)
                )
            self._delta(table).delete(in_predicate(column, values))
        finally:
            self.spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")
            if append_only:
                self.spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('{APPEND_ONLY}' = 'true')")
        return before - self.row_count(table)

    def vacuum(self, table: str, retention_hours: int) -> list[str]:
        path = self.table_path(table)
        dry_run = self.spark.sql(f"VACUUM delta.`{path}` RETAIN {int(retention_hours)} HOURS DRY RUN")
        files = [row[0] for row in dry_run.collect()]
        self._delta(table).vacuum(float(retention_hours))
        return files
