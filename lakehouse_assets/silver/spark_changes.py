"""apply-changes' data steps as Spark DataFrame operations (the Spark engine's ``ChangeFrames``).

The same steps as the polars ones in ``apply_changes``, expressed so that no table or batch is
collected to the driver: newest-per-key is a window, tombstones and touched keys are joins, an
SCD2 history is windows and an aggregation per version, expectations are Spark SQL predicates,
and the frames handed to the engine's MERGE and append stay Spark DataFrames. Only counts and the
five-row sample of a failed expectation come back to the driver. Frames that are counted and then
written are persisted (memory and disk, on the executors) so the change feed is read once.
"""

from __future__ import annotations

from functools import reduce
from typing import TYPE_CHECKING, Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F  # noqa: N812 - PySpark's own convention
from pyspark.sql.types import TimestampNTZType, TimestampType

from lakehouse_assets.silver.apply_changes import (
    SCD2_COLUMNS,
    ApplyChangesSpec,
    ExpectationResult,
    event_columns,
    expectation_failure,
)

if TYPE_CHECKING:
    from lakehouse_assets.engine.spark import SparkEngine


def is_delete(spec: ApplyChangesSpec) -> Column:
    """The spec's delete operations as a Spark predicate."""
    return F.col(spec.operation_column).isin(list(spec.delete_operations))


def polars_timestamp_text(column: str) -> Column:
    """A timestamp as polars' JSON encoder writes it: seconds, then .mmm or .uuuuuu only when
    the fraction needs them (the quarantine's ``row`` is the same text on both engines)."""
    micros = F.date_format(F.col(column), "SSSSSS").cast("int")
    base = "yyyy-MM-dd HH:mm:ss"
    return (
        F.when(micros == 0, F.date_format(column, base))
        .when(micros % 1000 == 0, F.date_format(column, base + ".SSS"))
        .otherwise(F.date_format(column, base + ".SSSSSS"))
    )


def row_json(frame: DataFrame, columns: tuple[str, ...]) -> Column:
    """The columns as one JSON object, nulls kept. Doubles are written by Java, so a number
    outside [1e-3, 1e7) reads 1.0E7 where polars writes 1e7: the same JSON number."""
    types = dict(frame.dtypes)
    fields = [
        polars_timestamp_text(c).alias(c)
        if isinstance(frame.schema[c].dataType, TimestampType | TimestampNTZType)
        else F.col(c)
        for c in columns
        if c in types
    ]
    return F.to_json(F.struct(*fields), {"ignoreNullFields": "false"})


def scd2_versions(history: DataFrame, spec: ApplyChangesSpec) -> DataFrame:
    """``build_scd2_versions`` in Spark: the same versions from the touched keys' history."""
    keys, seq, ts = list(spec.keys), spec.sequence_by, spec.timestamp_column
    deleted = is_delete(spec)
    by_seq = Window.partitionBy(*keys).orderBy(seq)
    changed = reduce(lambda a, b: a | b, [~F.col(c).eqNullSafe(F.lag(c).over(by_seq)) for c in spec.tracked])
    previous_delete = F.lag(deleted).over(by_seq)
    opens = ~deleted & (previous_delete.isNull() | previous_delete | changed)
    events = (
        history.dropDuplicates([*keys, seq])
        .withColumn("_opens", opens)
        .withColumn(
            "_version",
            F.sum(F.col("_opens").cast("long")).over(
                by_seq.rowsBetween(Window.unboundedPreceding, Window.currentRow)
            ),
        )
        .where(F.col("_version") > 0)
    )
    upsert_seq = F.when(~deleted, F.col(seq))
    delete_seq = F.when(deleted, F.col(seq))
    by_version = Window.partitionBy(*keys).orderBy("_version")
    versions = (
        events.groupBy(*keys, "_version")
        .agg(
            *[F.max_by(c, upsert_seq).alias(c) for c in spec.columns if c not in keys],
            F.min_by(ts, seq).alias("valid_from"),  # the version's first event opened it
            F.min(seq).alias("_seq"),
            F.max(upsert_seq).alias("_last_seq"),
            F.min_by(ts, delete_seq).alias("_delete_ts"),
            F.min(delete_seq).alias("_delete_seq"),
        )
        .withColumn("valid_to", F.coalesce("_delete_ts", F.lead("valid_from").over(by_version)))
        .withColumn("_end_seq", F.coalesce("_delete_seq", F.lead("_seq").over(by_version)))
        .withColumn("is_current", F.col("valid_to").isNull())
    )
    return versions.select(*spec.columns, *SCD2_COLUMNS)


class SparkChanges:
    """apply-changes' data steps on Spark DataFrames (see the module docstring)."""

    def __init__(self, engine: SparkEngine):
        self.engine = engine
        self._persisted: list[DataFrame] = []

    def _persist(self, frame: DataFrame) -> DataFrame:
        frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
        self._persisted.append(frame)
        return frame

    def release(self) -> None:
        for frame in self._persisted:
            frame.unpersist()
        self._persisted.clear()

    def new_events(self, spec: ApplyChangesSpec, cursor: int, up_to: int | None) -> tuple[Any, int, int]:
        changes, bronze_to = self.engine.change_frame(spec.source, cursor, up_to)
        if changes is None:
            return None, bronze_to, 0
        events = changes.where(F.col("_change_type") == "insert").select(*event_columns(spec))
        events = self._persist(events)
        return events, bronze_to, events.count()

    def split(
        self, events: DataFrame, spec: ApplyChangesSpec
    ) -> tuple[DataFrame, DataFrame, int, dict[str, ExpectationResult]]:
        results = {e.name: ExpectationResult(e.action) for e in spec.expectations}
        if not spec.expectations:
            return events, events.limit(0).withColumn("_expectations", F.lit(None).cast("string")), 0, results
        deleted = is_delete(spec)
        ok = [f"__ok_{i}" for i in range(len(spec.expectations))]
        checked = events.select(
            "*",
            *[
                (deleted | F.coalesce(F.expr(e.predicate), F.lit(False))).alias(name)
                for name, e in zip(ok, spec.expectations, strict=True)
            ],
        )
        drops = [
            F.when(~F.col(name), F.lit(e.name))
            for name, e in zip(ok, spec.expectations, strict=True)
            if e.action == "drop"
        ]
        violated = F.concat_ws(",", *drops) if drops else F.lit("")
        checked = self._persist(checked.withColumn("_expectations", F.when(violated != "", violated)))
        counts = checked.agg(
            F.count(F.when(~deleted, 1)).alias("upserts"),
            F.count("_expectations").alias("dropped"),
            *[F.count(F.when(~F.col(name), 1)).alias(name) for name in ok],
        ).collect()[0]  # an aggregation: one row
        for name, e in zip(ok, spec.expectations, strict=True):
            results[e.name] = ExpectationResult(e.action, counts["upserts"], counts[name])
        samples = {
            e.name: [tuple(r) for r in checked.where(~F.col(name)).select(*spec.keys).limit(5).collect()]
            for name, e in zip(ok, spec.expectations, strict=True)
            if e.action == "fail" and results[e.name].failed
        }
        if samples:
            raise expectation_failure(spec, results, samples)
        kept = checked.where(F.col("_expectations").isNull()).drop(*ok, "_expectations")
        dropped = checked.where(F.col("_expectations").isNotNull()).drop(*ok)
        return kept, dropped, counts["dropped"], results

    def quarantine_rows(self, dropped: DataFrame, spec: ApplyChangesSpec, batch_id: str) -> DataFrame:
        key_parts = [F.col(k).cast("string") for k in spec.keys]
        key = F.concat(*[part for k in key_parts for part in (F.lit("|"), k)][1:])
        return dropped.select(
            F.lit(spec.table).alias("table"),
            F.col("_expectations").alias("expectations"),
            key.alias("key"),
            F.col(spec.sequence_by).cast("long").alias("_seq"),
            F.col(spec.operation_column).alias("_op"),
            row_json(dropped, spec.columns).alias("row"),
            F.current_timestamp().alias("_quarantined_at"),
            F.lit(batch_id).alias("_batch_id"),
        )

    def scd1_source(
        self, spec: ApplyChangesSpec, kept: DataFrame, kept_rows: int
    ) -> tuple[DataFrame, DataFrame, int, int]:
        keys, seq = list(spec.keys), spec.sequence_by
        newest = Window.partitionBy(*keys).orderBy(F.col(seq).desc())
        latest = (
            kept.withColumn("__rank", F.row_number().over(newest))
            .where(F.col("__rank") == 1)
            .drop("__rank")
            .withColumn("_is_delete", is_delete(spec))
        )
        if self.engine.exists(spec.tombstones):  # an upsert older than its key's delete is stale
            tombstones = self.engine.frame(spec.tombstones).select(*keys, F.col(seq).alias("_deleted_seq"))
            stale = ~F.col("_is_delete") & (F.col("_deleted_seq") >= F.col(seq))
            latest = (
                latest.join(tombstones, keys, "left")
                .where(~F.coalesce(stale, F.lit(False)))
                .drop("_deleted_seq")
            )
        latest = self._persist(latest)
        counts = latest.agg(
            F.count(F.lit(1)).alias("applied"), F.count(F.when(F.col("_is_delete"), 1)).alias("d")
        ).collect()[0]  # an aggregation: one row
        deletes = latest.where(F.col("_is_delete")).select(*keys, seq)
        return latest, deletes, counts["d"], kept_rows - counts["applied"]

    def scd2_source(
        self, spec: ApplyChangesSpec, kept: DataFrame, kept_rows: int, silver_version: int, bronze_to: int
    ) -> tuple[DataFrame, int]:
        keys, seq = list(spec.keys), spec.sequence_by
        superseded = kept_rows - kept.dropDuplicates([*keys, seq]).count()
        touched = kept.select(keys[0]).distinct()
        history = (
            self.engine.frame(spec.source, bronze_to)
            .join(touched, keys[0], "left_semi")
            .select(*kept.columns)
        )
        history, _, _, _ = self.split(history, spec)  # earlier dropped rows are dropped again
        versions = scd2_versions(history, spec).withColumn("_remove", F.lit(False))
        existing = (
            self.engine.frame(spec.table, silver_version)
            .join(touched, keys[0], "left_semi")
            .select(*keys, seq)
        )
        removed = existing.join(versions.select(*keys, seq), [*keys, seq], "left_anti")
        source = versions.unionByName(removed.withColumn("_remove", F.lit(True)), allowMissingColumns=True)
        return self._persist(source), superseded
