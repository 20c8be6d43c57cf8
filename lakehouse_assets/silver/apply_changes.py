"""Declarative apply-changes: a spec per entity turns bronze change events into a silver table.

Users add an entity by writing an ``ApplyChangesSpec`` (keys, sequence column, which operations
are deletes, SCD type, tracked columns, expectations), not a MERGE. ``apply_changes`` then:

1. reads only the bronze rows added since the last applied bronze version (Delta Change Data
   Feed); the applied version is a Delta transaction identifier committed with the silver MERGE;
2. evaluates the expectations on the new upserts (warn: keep and count; drop: move to the silver
   quarantine table with the expectation names; fail: stop before anything is written);
3. SCD1: keeps the newest event per key; a MERGE updates or deletes a row only with a newer
   sequence, and inserts a key only if it is not deleted by a newer sequence (deletes leave a
   tombstone, so an out-of-order update can never resurrect a deleted row);
   SCD2: rebuilds the version history of the touched keys from their bronze events in sequence
   order (so late events land in the right place), and MERGEs the difference.

Every table is written with the bronze version as transaction identifier, in the order
quarantine -> tombstones -> silver, so a crash at any point is repaired by a rerun.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import polars as pl
import pyarrow as pa

from lakehouse_assets.engine import AppTransaction, LakeEngine, MergeClause
from lakehouse_assets.sources.cdc import BRONZE_METADATA_COLUMNS
from lakehouse_assets.tables import (
    EXPECTATION_RESULTS_TABLE,
    SILVER_QUARANTINE_TABLE,
    silver_table,
    tombstones_table,
)

SILVER_TABLE_CONFIG: dict[str, str | None] = {"delta.enableChangeDataFeed": "true"}
# One row per expectation per batch of change events: the history behind pass rates.
SCD2_COLUMNS = ("valid_from", "valid_to", "is_current", "_seq", "_last_seq", "_end_seq")


class ExpectationFailedError(RuntimeError):
    """A ``fail`` expectation was violated; nothing was committed for the table."""


@dataclass(frozen=True)
class Expectation:
    """A named SQL boolean predicate over a row's columns. A row meets it only when it is TRUE
    (NULL counts as a violation: write ``x IS NULL OR ...`` to allow missing values)."""

    name: str
    predicate: str
    action: Literal["warn", "drop", "fail"] = "warn"
    # drop: the asset check fails (and blocks downstream) above this share of dropped rows.
    max_drop_share: float = 0.05

    def holds(self) -> pl.Expr:
        return pl.sql_expr(self.predicate).fill_null(False)


@dataclass(frozen=True)
class ApplyChangesSpec:
    """A declared silver table: its bronze source, keys, columns, sequencing, SCD type and expectations."""

    name: str
    source: str
    keys: tuple[str, ...]
    columns: tuple[str, ...]
    sequence_by: str = "_seq"
    operation_column: str = "_op"
    delete_operations: tuple[str, ...] = ("delete",)
    scd_type: Literal[1, 2] = 1
    track_history_columns: tuple[str, ...] | None = None
    timestamp_column: str = "_commit_ts"
    expectations: tuple[Expectation, ...] = ()
    zorder_by: tuple[str, ...] = ()
    description: str = ""

    @property
    def table(self) -> str:
        return silver_table(self.name)

    @property
    def tombstones(self) -> str:
        return tombstones_table(self.name)

    @property
    def app_id(self) -> str:
        return f"apply_changes:{self.name}"

    @property
    def tracked(self) -> tuple[str, ...]:
        """SCD2: columns whose change opens a new version (default: every non-key column)."""
        return self.track_history_columns or tuple(c for c in self.columns if c not in self.keys)

    def is_delete(self) -> pl.Expr:
        return pl.col(self.operation_column).is_in(list(self.delete_operations))


@dataclass
class ExpectationResult:
    """How many rows of a run met or failed one expectation, and what was done with them."""

    action: str
    checked: int = 0
    failed: int = 0


@dataclass
class ApplyResult:
    """What one apply-changes run read, merged, deleted and quarantined, and up to where in bronze."""

    table: str
    bronze_from: int = -1
    bronze_to: int = -1
    events_read: int = 0
    events_quarantined: int = 0
    events_superseded: int = 0
    events_applied: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_deleted: int = 0
    silver_version: int | None = None
    expectations: dict[str, ExpectationResult] = field(default_factory=dict)
    seconds: float = 0.0

    def followed_by(self, later: ApplyResult) -> ApplyResult:
        """This run and the next range's as one run."""
        counts = {
            f.name: getattr(self, f.name) + getattr(later, f.name)
            for f in dataclasses.fields(self)
            if f.name.startswith(("events_", "rows_")) or f.name == "seconds"
        }
        expectations = {
            name: ExpectationResult(
                result.action,
                result.checked + later.expectations[name].checked,
                result.failed + later.expectations[name].failed,
            )
            for name, result in self.expectations.items()
        }
        return dataclasses.replace(self, bronze_to=later.bronze_to, expectations=expectations, **counts)

    @property
    def reconciled(self) -> bool:
        """Every event read was applied, superseded by a newer one, or quarantined."""
        return self.events_read == (self.events_applied + self.events_superseded + self.events_quarantined)


# ------------------------------------------------------------------------- expectations
def evaluate_expectations(
    batch: pl.DataFrame, spec: ApplyChangesSpec
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, ExpectationResult]]:
    """Split a batch into kept rows and dropped rows (with the violated expectation names).

    Deletes are never dropped: losing one would keep a row the source removed."""
    results = {e.name: ExpectationResult(e.action) for e in spec.expectations}
    if not spec.expectations or batch.height == 0:
        return batch, batch.clear().with_columns(_expectations=pl.lit(None, pl.String)), results
    checked = batch.with_columns(
        [(spec.is_delete() | e.holds()).alias(f"__ok_{i}") for i, e in enumerate(spec.expectations)]
    )
    upserts = checked.filter(~spec.is_delete()).height
    for i, e in enumerate(spec.expectations):
        failed = checked.height - int(checked[f"__ok_{i}"].sum())
        results[e.name] = ExpectationResult(e.action, upserts, failed)
    samples = {
        e.name: checked.filter(~pl.col(f"__ok_{i}")).select(spec.keys).head(5).rows()
        for i, e in enumerate(spec.expectations)
        if e.action == "fail" and results[e.name].failed
    }
    if samples:
        raise expectation_failure(spec, results, samples)
    drops = [(i, e) for i, e in enumerate(spec.expectations) if e.action == "drop"]
    violated = pl.concat_str(
        [pl.when(~pl.col(f"__ok_{i}")).then(pl.lit(e.name)) for i, e in drops] or [pl.lit(None)],
        separator=",",
        ignore_nulls=True,
    )
    checked = checked.with_columns(_expectations=pl.when(violated != "").then(violated))
    helper = [f"__ok_{i}" for i in range(len(spec.expectations))]
    kept = checked.filter(pl.col("_expectations").is_null()).drop(helper, "_expectations")
    dropped = checked.filter(pl.col("_expectations").is_not_null()).drop(helper)
    return kept, dropped, results


def expectation_failure(
    spec: ApplyChangesSpec, results: dict[str, ExpectationResult], samples: dict[str, list[tuple]]
) -> ExpectationFailedError:
    """The error for violated ``fail`` expectations: each one's predicate, count and sample keys."""
    details = [
        f"{e.name!r} ({e.predicate}) failed for {results[e.name].failed} row(s), "
        f"e.g. {list(spec.keys)}={samples[e.name]}"
        for e in spec.expectations
        if e.name in samples
    ]
    return ExpectationFailedError(
        f"{spec.table}: " + "; ".join(details) + ". Nothing was committed for this table."
    )


QUARANTINE_SCHEMA = pa.schema(
    [
        ("table", pa.string()),
        ("expectations", pa.string()),
        ("key", pa.string()),
        ("_seq", pa.int64()),
        ("_op", pa.string()),
        ("row", pa.string()),
        ("_quarantined_at", pa.timestamp("us", "UTC")),
        ("_batch_id", pa.string()),
    ]
)


def _quarantine_rows(dropped: pl.DataFrame, spec: ApplyChangesSpec, batch_id: str) -> pl.DataFrame:
    return dropped.select(
        pl.lit(spec.table).alias("table"),
        pl.col("_expectations").alias("expectations"),
        pl.concat_str([pl.col(k).cast(pl.String) for k in spec.keys], separator="|").alias("key"),
        pl.col(spec.sequence_by).alias("_seq"),
        pl.col(spec.operation_column).alias("_op"),
        pl.struct(list(spec.columns)).struct.json_encode().alias("row"),
        pl.lit(datetime.now(UTC)).cast(pl.Datetime("us", "UTC")).alias("_quarantined_at"),
        pl.lit(batch_id).alias("_batch_id"),
    )


def _expectation_rows(
    results: dict[str, ExpectationResult],
    spec: ApplyChangesSpec,
    batch_id: str,
    bronze_from: int,
    bronze_to: int,
) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "table": spec.table,
                "expectation": e.name,
                "action": e.action,
                "predicate": e.predicate,
                "rows_checked": results[e.name].checked,
                "rows_failed": results[e.name].failed,
                "bronze_from_version": bronze_from + 1,
                "bronze_to_version": bronze_to,
                "checked_at": datetime.now(UTC),
                "_batch_id": batch_id,
            }
            for e in spec.expectations
        ],
        schema_overrides={"checked_at": pl.Datetime("us", "UTC")},
    )


# ------------------------------------------------------------------------- SCD1 / SCD2
def latest_per_key(events: pl.DataFrame, spec: ApplyChangesSpec) -> pl.DataFrame:
    """The newest event of each key in a batch (duplicates and older events fall away)."""
    return events.sort(spec.sequence_by, descending=True).unique(subset=list(spec.keys), keep="first")


def build_scd2_versions(history: pl.DataFrame, spec: ApplyChangesSpec) -> pl.DataFrame:
    """All versions of the keys in ``history`` (their complete event history), in one pass.

    A version opens at an upsert after nothing, after a delete, or that changes a tracked
    column; untracked-only changes update the open version in place; a delete closes it."""
    keys, seq, ts = list(spec.keys), spec.sequence_by, spec.timestamp_column
    is_delete = spec.is_delete()
    events = history.unique(subset=[*keys, seq], keep="first").sort([*keys, seq])
    changed = pl.any_horizontal([pl.col(c).ne_missing(pl.col(c).shift(1).over(keys)) for c in spec.tracked])
    previous_delete = is_delete.shift(1).over(keys)
    opens = ~is_delete & (previous_delete.is_null() | previous_delete | changed)
    events = (
        events.with_columns(_opens=opens)
        .with_columns(_version=pl.col("_opens").cast(pl.Int64).cum_sum().over(keys))
        .filter(pl.col("_version") > 0)
    )
    upsert = ~is_delete
    versions = (
        events.group_by([*keys, "_version"])
        .agg(
            *[pl.col(c).filter(upsert).last() for c in spec.columns if c not in keys],
            pl.col(ts).filter(pl.col("_opens")).first().alias("valid_from"),
            pl.col(seq).filter(pl.col("_opens")).first().alias("_seq"),
            pl.col(seq).filter(upsert).last().alias("_last_seq"),
            pl.col(ts).filter(is_delete).first().alias("_delete_ts"),
            pl.col(seq).filter(is_delete).first().alias("_delete_seq"),
        )
        .sort([*keys, "_version"])
        .with_columns(
            valid_to=pl.coalesce("_delete_ts", pl.col("valid_from").shift(-1).over(keys)),
            _end_seq=pl.coalesce("_delete_seq", pl.col("_seq").shift(-1).over(keys)),
        )
        .with_columns(is_current=pl.col("valid_to").is_null())
    )
    return versions.select([*spec.columns, *SCD2_COLUMNS])


def silver_schema(spec: ApplyChangesSpec, bronze_schema: pl.Schema) -> pa.Schema:
    """The silver table's Arrow schema from the spec and the bronze column types."""
    columns = {c: bronze_schema[c] for c in spec.columns}
    columns[spec.sequence_by] = bronze_schema[spec.sequence_by]
    if spec.scd_type == 1:
        columns[spec.timestamp_column] = bronze_schema[spec.timestamp_column]
    else:
        ts = bronze_schema[spec.timestamp_column]
        columns |= {
            "valid_from": ts,
            "valid_to": ts,
            "is_current": pl.Boolean(),
            "_last_seq": pl.Int64(),
            "_end_seq": pl.Int64(),
        }
    return pl.DataFrame(schema=columns).to_arrow().schema


def _merge_counts(metrics: dict[str, Any] | None) -> tuple[int, int, int]:
    m = metrics or {}
    return (
        int(m.get("num_target_rows_inserted", 0)),
        int(m.get("num_target_rows_updated", 0)),
        int(m.get("num_target_rows_deleted", 0)),
    )


def _done(engine: LakeEngine, table: str, spec: ApplyChangesSpec, bronze_version: int) -> bool:
    applied = engine.app_transaction_version(table, spec.app_id)
    return applied is not None and applied >= bronze_version


def event_columns(spec: ApplyChangesSpec) -> list[str]:
    """The bronze columns apply-changes reads: sequencing, operation, commit time, the spec's."""
    return [spec.sequence_by, spec.operation_column, spec.timestamp_column, *spec.columns]


class ChangeFrames(Protocol):
    """apply-changes' data steps on one engine's frames: polars in this process, or Spark
    DataFrames that stay on the cluster (``spark_changes``). Cursors, the order of commits and
    the MERGE clauses are shared (``apply_changes``)."""

    def new_events(self, spec: ApplyChangesSpec, cursor: int, up_to: int | None) -> tuple[Any, int, int]:
        """Bronze's new change events (None when there is no new version), the version read up
        to, and how many."""
        ...

    def split(
        self, events: Any, spec: ApplyChangesSpec
    ) -> tuple[Any, Any, int, dict[str, ExpectationResult]]:
        """Kept events, dropped events (with ``_expectations``), how many dropped, and the
        counts per expectation; raises ExpectationFailedError for a violated ``fail``."""
        ...

    def quarantine_rows(self, dropped: Any, spec: ApplyChangesSpec, batch_id: str) -> Any: ...

    def scd1_source(self, spec: ApplyChangesSpec, kept: Any, kept_rows: int) -> tuple[Any, Any, int, int]:
        """The newest event per key not made stale by a tombstone (with ``_is_delete``), its
        deletes, how many deletes, and how many events were superseded."""
        ...

    def scd2_source(
        self, spec: ApplyChangesSpec, kept: Any, kept_rows: int, silver_version: int, bronze_to: int
    ) -> tuple[Any, int]:
        """The touched keys' versions rebuilt from their history plus the silver versions to
        remove (``_remove``), and how many events were superseded (duplicates)."""
        ...

    def release(self) -> None:
        """Free what the steps kept (Spark: persisted frames)."""
        ...


class PolarsChanges:
    """apply-changes' data steps in polars (the embedded engine)."""

    def __init__(self, engine: LakeEngine):
        self.engine = engine

    def new_events(self, spec: ApplyChangesSpec, cursor: int, up_to: int | None) -> tuple[Any, int, int]:
        changes, bronze_to = self.engine.changes(spec.source, cursor, up_to)
        if changes.height == 0:
            return None, bronze_to, 0
        events = changes.filter(pl.col("_change_type") == "insert").select(event_columns(spec))
        return events, bronze_to, events.height

    def split(self, events: pl.DataFrame, spec: ApplyChangesSpec):
        kept, dropped, results = evaluate_expectations(events, spec)
        return kept, dropped, dropped.height, results

    def quarantine_rows(self, dropped: pl.DataFrame, spec: ApplyChangesSpec, batch_id: str) -> pl.DataFrame:
        return _quarantine_rows(dropped, spec, batch_id)

    def scd1_source(self, spec: ApplyChangesSpec, kept: pl.DataFrame, kept_rows: int):
        keys, seq = list(spec.keys), spec.sequence_by
        latest = latest_per_key(kept, spec).with_columns(_is_delete=spec.is_delete())
        if self.engine.exists(spec.tombstones):  # an upsert older than its key's delete is stale
            tombstones = self.engine.read(
                spec.tombstones, where_in={keys[0]: latest[keys[0]].unique().to_list()}
            ).rename({seq: "_deleted_seq"})
            stale = ~pl.col("_is_delete") & (pl.col("_deleted_seq") >= pl.col(seq))
            latest = latest.join(tombstones, on=keys, how="left")
            latest = latest.filter(~stale.fill_null(False)).drop("_deleted_seq")
        deletes = latest.filter("_is_delete").select([*keys, seq])
        return latest, deletes, deletes.height, kept_rows - latest.height

    def scd2_source(
        self, spec: ApplyChangesSpec, kept: pl.DataFrame, kept_rows: int, silver_version: int, bronze_to: int
    ):
        keys, seq = list(spec.keys), spec.sequence_by
        touched = kept[keys[0]].unique().to_list()
        superseded = kept_rows - kept.unique(subset=[*keys, seq]).height
        # The touched keys' complete history as of this bronze version (earlier dropped rows are
        # dropped again, silently: they were counted and quarantined when they arrived).
        history = self.engine.read(spec.source, version=bronze_to, where_in={keys[0]: touched}).select(
            kept.columns
        )
        history, _, _ = evaluate_expectations(history, spec)
        versions = build_scd2_versions(history, spec).with_columns(_remove=pl.lit(False))
        existing = self.engine.read(
            spec.table, version=silver_version, where_in={keys[0]: touched}, columns=[*keys, seq]
        )
        removed = existing.join(versions.select([*keys, seq]), on=[*keys, seq], how="anti")
        return pl.concat([versions, removed.with_columns(_remove=pl.lit(True))], how="diagonal"), superseded

    def release(self) -> None:
        pass


def change_frames(engine: LakeEngine) -> ChangeFrames:
    """The data steps for the engine: Spark's keep everything on the cluster."""
    if engine.name == "spark":
        from lakehouse_assets.silver.spark_changes import SparkChanges

        return SparkChanges(engine)  # type: ignore[arg-type]
    return PolarsChanges(engine)


# What a commit of bronze reads as in the Change Data Feed: rows written, or rows deleted (erasure).
_FEED_ROW_METRICS = ("num_added_rows", "numOutputRows", "num_deleted_rows", "numDeletedRows")


def bronze_ranges(
    engine: LakeEngine, spec: ApplyChangesSpec, max_events: int, up_to: int | None = None
) -> list[int | None]:
    """The bronze versions that end each run of at most ``max_events`` new change events (a
    single larger commit is a run of its own), from the commits' row counts in the table
    history: a backlog is applied range by range so memory stays bounded by the range."""
    newest = engine.version(spec.source)
    if newest is None:  # no bronze table: the one run reports it
        return [up_to]
    last = newest if up_to is None else min(up_to, newest)
    applied = engine.app_transaction_version(spec.table, spec.app_id) if engine.exists(spec.table) else None
    cursor = -1 if applied is None else applied
    if last <= cursor:
        return [last]
    rows = {int(c["version"]): _feed_rows(c) for c in engine.history(spec.source, limit=newest - cursor)}
    ends: list[int | None] = []
    pending = 0
    for version in range(cursor + 1, last + 1):
        count = rows.get(version, max_events)  # a commit the history does not show: its own range
        if pending and pending + count > max_events:
            ends.append(version - 1)
            pending = 0
        pending += count
    return [*ends, last]


def _feed_rows(commit: dict[str, Any]) -> int:
    metrics = commit.get("operationMetrics") or {}
    return sum(int(metrics.get(name) or 0) for name in _FEED_ROW_METRICS)


def apply_changes(
    engine: LakeEngine,
    spec: ApplyChangesSpec,
    *,
    batch_id: str,
    up_to_bronze_version: int | None = None,
    max_events: int | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> ApplyResult:
    """Apply the bronze change events after the table's cursor to silver, exactly once (see the module
    docstring). With ``max_events``, a larger backlog is applied in bronze version ranges of at
    most that many events, each committed with its own cursor (a crash keeps the ranges done)."""
    if max_events is None:
        return _apply_range(engine, spec, batch_id, up_to_bronze_version, log)
    ranges = bronze_ranges(engine, spec, max_events, up_to_bronze_version)
    if len(ranges) > 1:
        log(f"{spec.table}: the backlog is applied in {len(ranges)} ranges of at most {max_events:,} events")
    parts = [_apply_range(engine, spec, batch_id, upper, log) for upper in ranges]  # in order
    return functools.reduce(ApplyResult.followed_by, parts)


def _apply_range(
    engine: LakeEngine,
    spec: ApplyChangesSpec,
    batch_id: str,
    up_to_bronze_version: int | None,
    log: Callable[[str], None],
) -> ApplyResult:
    started = time.perf_counter()
    bronze_schema = engine.head(spec.source, 0).schema
    added = tuple(
        c for c in bronze_schema.names() if c not in spec.columns and c not in BRONZE_METADATA_COLUMNS
    )
    if added:  # columns the source gained: carried into silver (schema evolution)
        spec = dataclasses.replace(spec, columns=(*spec.columns, *added))
    schema = silver_schema(spec, bronze_schema)
    silver_version = engine.ensure_table(spec.table, schema, configuration=SILVER_TABLE_CONFIG)
    # there even when nothing was ever dropped: reports and dashboards count it
    engine.ensure_table(SILVER_QUARANTINE_TABLE, QUARANTINE_SCHEMA, configuration=SILVER_TABLE_CONFIG)
    applied = engine.app_transaction_version(spec.table, spec.app_id, at_version=silver_version)
    cursor = -1 if applied is None else applied
    frames = change_frames(engine)
    try:
        events, bronze_to, events_read = frames.new_events(spec, cursor, up_to_bronze_version)
        result = ApplyResult(
            spec.table,
            bronze_from=cursor,
            bronze_to=bronze_to,
            events_read=events_read,
            silver_version=silver_version,
            expectations={e.name: ExpectationResult(e.action) for e in spec.expectations},
        )
        if events_read:
            log(
                f"{spec.table}: {events_read:,} new change events "
                f"in bronze versions {cursor + 1}..{bronze_to}"
            )
            _apply_events(engine, frames, spec, schema, events, result, batch_id)
    finally:
        frames.release()
    result.seconds = time.perf_counter() - started
    if not result.reconciled:  # a bug, never bad input: refuse to report success
        raise AssertionError(f"{spec.table}: events do not reconcile: {result}")
    return result


def _apply_events(
    engine: LakeEngine,
    frames: ChangeFrames,
    spec: ApplyChangesSpec,
    schema: pa.Schema,
    events: Any,
    result: ApplyResult,
    batch_id: str,
) -> None:
    """Expectations, quarantine, tombstones and the silver MERGE for one batch of new events,
    each commit carrying the bronze version as its transaction identifier."""
    silver_version, bronze_to = result.silver_version or 0, result.bronze_to
    kept, dropped, result.events_quarantined, result.expectations = frames.split(events, spec)
    kept_rows = result.events_read - result.events_quarantined
    txn = [AppTransaction(spec.app_id, bronze_to)]
    if result.events_quarantined and not _done(engine, SILVER_QUARANTINE_TABLE, spec, bronze_to):
        engine.append(
            SILVER_QUARANTINE_TABLE,
            frames.quarantine_rows(dropped, spec, batch_id),
            transactions=txn,
            configuration=SILVER_TABLE_CONFIG,
        )
    if spec.expectations and not _done(engine, EXPECTATION_RESULTS_TABLE, spec, bronze_to):
        engine.append(
            EXPECTATION_RESULTS_TABLE,
            _expectation_rows(result.expectations, spec, batch_id, result.bronze_from, bronze_to),
            transactions=txn,
        )
    keys, seq = list(spec.keys), spec.sequence_by
    metadata = {"bronze_from": result.bronze_from, "bronze_to": bronze_to}
    if spec.scd_type == 1:
        latest, deletes, delete_rows, result.events_superseded = frames.scd1_source(spec, kept, kept_rows)
        if delete_rows and not _done(engine, spec.tombstones, spec, bronze_to):
            engine.merge(  # the first deletes create the table
                spec.tombstones,
                deletes,
                keys=keys,
                transactions=txn,
                clauses=(
                    MergeClause("matched", "update", f"source.{seq} > target.{seq}"),
                    MergeClause("not_matched", "insert"),
                ),
            )
        newer = f"source.{seq} > target.{seq}"
        commit = engine.merge(
            spec.table,
            latest,
            keys=keys,
            transactions=txn,
            read_version=silver_version,
            commit_metadata=metadata,
            clauses=(
                MergeClause("matched", "delete", f"source._is_delete AND {newer}"),
                MergeClause("matched", "update", f"NOT source._is_delete AND {newer}"),
                MergeClause("not_matched", "insert", "NOT source._is_delete"),
            ),
        )
    else:
        source, result.events_superseded = frames.scd2_source(
            spec, kept, kept_rows, silver_version, bronze_to
        )
        commit = engine.merge(
            spec.table,
            source,
            keys=[*keys, seq],
            transactions=txn,
            read_version=silver_version,
            commit_metadata=metadata,
            clauses=(
                MergeClause("matched", "delete", "source._remove"),
                MergeClause("matched", "update", "NOT source._remove"),
                MergeClause("not_matched", "insert", "NOT source._remove"),
            ),
        )
    result.events_applied = kept_rows - result.events_superseded
    result.rows_inserted, result.rows_updated, result.rows_deleted = _merge_counts(commit.metrics)
    if not _done(engine, spec.table, spec, bronze_to):
        # A MERGE that changes nothing (only stale or duplicate events) commits nothing: record
        # the cursor with an empty commit, so the next run does not read these events again.
        commit = engine.append(spec.table, schema.empty_table(), transactions=txn)
    result.silver_version = commit.version
