"""Silver apply-changes benchmark: 1M CDC events into a 10M-row SCD1 silver table.

    uv run python benchmarks/bench_silver_apply.py [--rows 10000000] [--events 1000000]

The silver table holds ``--rows`` orders (sorted by order_id, as apply-changes leaves a table
that grew by inserts). The bronze batch holds ``--events`` change events shaped like the shop's
CDC: 60% status updates and 10% cancellations (deletes) of the most recent 20% of orders, 30%
new orders; 5% of the events are delivered twice and the batch is shuffled (out of order).

Ours: ``apply_changes`` (Change Data Feed read, expectations, dedupe, tombstones, conditional
MERGE, cursor commit). Baseline: a plain delta-rs MERGE (update / delete / insert on the key) of
the already-deduplicated events into an identical copy of the table. Each runs in its own process
so peak memory (max RSS) is its own. Prints seconds, peak memory and the ratio (target: <= 6 s,
<= 4 GiB, <= 1.5x the plain MERGE).

``--spark local[2]`` and ``--cluster`` (a standalone master and two one-core workers started
here) apply the same batch on the Spark engine, each on its own copy, and compare the table. A
run that dies (killed for memory) is reported as not completed: the scale curve's point where
an engine stops fitting.

``--commit-rows N`` writes the batch in bronze commits of N events (as capture does, 250,000 by
default there); ``--max-events M`` then also applies it on the embedded engine range by range
(``apply_changes(max_events=M)``, the ``silver_max_events_per_apply`` setting): the bounded-memory
way past the size where the whole batch does not fit. The batch is built in its own process too.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from common import executor_peaks, in_child, measured, peak_bytes
from deltalake import DeltaTable, write_deltalake

from lakehouse_assets.engine import AppTransaction, DeltaEngine
from lakehouse_assets.resources.spark_cluster import StandaloneCluster
from lakehouse_assets.silver.apply_changes import apply_changes
from lakehouse_assets.silver.specs import SILVER_SPECS
from lakehouse_assets.sources.cdc import BRONZE_TABLE_CONFIG, bronze_arrow_schema
from lakehouse_assets.sources.schema import SOURCE_TABLES_BY_NAME

ORDERS = next(s for s in SILVER_SPECS if s.name == "orders")
ORDERS_COLUMNS = [
    "order_id",
    "customer_id",
    "status",
    "order_ts",
    "amount",
    "discount",
    "updated_at",
    "_seq",
    "_commit_ts",
]
T0 = pl.datetime(2026, 1, 1)


def orders_frame(events: pl.DataFrame) -> pl.DataFrame:
    """Order rows from (order_id, _seq, status[, _op]): every other column follows from the id."""
    at = T0 + pl.duration(seconds=pl.col("order_id") // 10)
    return events.with_columns(
        customer_id=pl.col("order_id") % 100_003,
        order_ts=at,
        amount=(pl.col("order_id") % 997).cast(pl.Float64) + 1,
        discount=pl.lit(0.0),
        updated_at=at,
        _commit_ts=at,
    )


class EventBatch:
    """The bronze batch as event numbers 0..events-1: updates of recent orders, then new orders,
    then deletes of recent orders (some twice); 5% of the events delivered twice, all shuffled.
    Built commit by commit from the numbers, so a 100M-event batch never sits in memory whole."""

    def __init__(self, rows: int, events: int):
        rng = np.random.default_rng(1)
        recent_low = int(rows * 0.8)
        self.rows, self.n_update, self.n_delete = rows, int(events * 0.6), int(events * 0.1)
        self.n_insert = events - self.n_update - self.n_delete
        self.updated = rng.integers(recent_low, rows, self.n_update)
        self.deleted = rng.integers(recent_low, rows, self.n_delete)
        twice = rng.choice(events, int(events * 0.05), replace=False)
        self.count = events
        self.delivery = rng.permutation(np.concatenate([np.arange(events), twice]))

    def keys(self, number: np.ndarray) -> np.ndarray:
        inserted = self.n_update + self.n_insert
        return np.where(
            number < self.n_update,
            self.updated[np.minimum(number, self.n_update - 1)],
            np.where(
                number < inserted,
                self.rows + number - self.n_update,
                self.deleted[np.clip(number - inserted, 0, self.n_delete - 1)],
            ),
        )

    def events(self, number: np.ndarray) -> pl.DataFrame:
        inserted = self.n_update + self.n_insert
        frame = pl.DataFrame({"order_id": self.keys(number), "_seq": self.rows + 1 + number})
        op = np.where(number < self.n_update, "update", np.where(number < inserted, "insert", "delete"))
        return orders_frame(
            frame.with_columns(
                _op=pl.Series(op), status=pl.Series(np.where(op == "insert", "placed", "shipped"))
            )
        )

    def newest_per_key(self) -> pl.DataFrame:
        """The baseline's input: the newest event of each key, as a plain MERGE needs."""
        numbers = np.arange(self.count)
        newest = pl.DataFrame({"k": self.keys(numbers), "n": numbers}).group_by("k").agg(pl.col("n").max())
        return self.events(newest["n"].to_numpy())


def build(work: Path, rows: int, events: int, commit_rows: int | None) -> None:
    engine = DeltaEngine(str(work / "lake"))
    silver = orders_frame(
        pl.DataFrame({"order_id": pl.int_range(0, rows, eager=True)}).with_columns(
            _seq=pl.col("order_id"), status=pl.lit("delivered")
        )
    ).select(ORDERS_COLUMNS)
    bronze_schema = bronze_arrow_schema(SOURCE_TABLES_BY_NAME["orders"])
    engine.ensure_table("bronze/orders", bronze_schema, configuration=BRONZE_TABLE_CONFIG)
    start_version = engine.version("bronze/orders")
    # The silver table as a previous apply left it (its cursor at the empty bronze table).
    write_deltalake(
        engine.table_path(ORDERS.table),
        silver.to_arrow(),
        mode="append",
        configuration={"delta.enableChangeDataFeed": "true"},
    )
    engine.append(ORDERS.table, silver.clear(), transactions=[AppTransaction(ORDERS.app_id, start_version)])
    del silver
    batch = EventBatch(rows, events)
    step = commit_rows or len(batch.delivery)
    for low in range(0, len(batch.delivery), step):  # bronze commits as capture writes them
        bronze = batch.events(batch.delivery[low : low + step]).with_columns(
            _ingested_at=T0.cast(pl.Datetime("us", "UTC")),
            _source=pl.lit("bench"),
            _batch_id=pl.lit("bench"),
        )
        engine.append("bronze/orders", bronze.select(bronze_schema.names).to_arrow().cast(bronze_schema))
    batch.newest_per_key().select([*ORDERS_COLUMNS, "_op"]).write_parquet(work / "deduplicated.parquet")
    shutil.copytree(work / "lake" / "silver", work / "plain_silver")


def run_build(work: Path, rows: int, events: int, commit_rows: int | None, out) -> None:
    build(work, rows, events, commit_rows)
    out.put(peak_bytes())


def run_ours(work: Path, lake: str, max_events: int | None, out) -> None:
    started = time.perf_counter()
    result = apply_changes(DeltaEngine(str(work / lake)), ORDERS, batch_id="bench", max_events=max_events)
    out.put((time.perf_counter() - started, peak_bytes(), result))


def run_spark(work: Path, name: str, master: str, conf: dict[str, str], out) -> None:
    """apply_changes on the Spark engine over its own copy of the lake; peak memory = this
    process + the driver JVM (a child process, measured after the run) + the executors of a
    standalone cluster (their own JVMs)."""
    from lakehouse_assets.resources.connections import build_engine
    from lakehouse_assets.settings import LakehouseSettings

    config = LakehouseSettings(engine="spark", spark_master=master, spark_conf=conf).spark_config()
    engine = build_engine(str(work / f"lake_{name}"), "spark", config)
    started = time.perf_counter()
    result = apply_changes(engine, ORDERS, batch_id="bench")
    seconds = time.perf_counter() - started
    jvm_pid = engine.spark.sparkContext._gateway.proc.pid  # type: ignore[attr-defined]
    driver = peak_bytes() + peak_bytes(jvm_pid)
    executors = executor_peaks()
    engine.spark.stop()  # type: ignore[attr-defined]
    out.put((f"spark {name}", seconds, driver, executors, result))


def run_plain(work: Path, out) -> None:
    started = time.perf_counter()
    source = (
        pl.read_parquet(work / "deduplicated.parquet")
        .with_columns(_is_delete=pl.col("_op") == "delete")
        .drop("_op")
    )
    columns = {c: f"s.{c}" for c in source.columns if c != "_is_delete"}
    (
        DeltaTable(str(work / "plain_silver" / "orders"))
        .merge(source.to_arrow(), predicate="t.order_id = s.order_id", source_alias="s", target_alias="t")
        .when_matched_delete(predicate="s._is_delete")
        .when_matched_update(columns, predicate="NOT s._is_delete")
        .when_not_matched_insert(columns, predicate="NOT s._is_delete")
        .execute()
    )
    out.put((time.perf_counter() - started, peak_bytes()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--commit-rows", type=int, default=None, help="events per bronze commit (default: one commit)"
    )
    parser.add_argument(
        "--max-events",
        type=int,
        default=None,
        help="also apply on the embedded engine in bronze ranges of at most this many events",
    )
    parser.add_argument("--no-whole", action="store_true", help="skip the embedded apply of the whole batch")
    parser.add_argument("--executor-memory", default="6g", help="each cluster worker's memory")
    parser.add_argument("--driver-memory", default="4g", help="the local[N] session's heap")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="also run on a Spark standalone cluster started here (a master, 2 one-core workers)",
    )
    parser.add_argument(
        "--spark",
        nargs="*",
        default=[],
        metavar="MASTER",
        help="also run on Spark with these masters, e.g. local[1] local[2]",
    )
    args = parser.parse_args()
    data = Path(__file__).parent / ".data"
    data.mkdir(exist_ok=True)
    gib = 1024**3
    with tempfile.TemporaryDirectory(dir=data) as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        build_peak = in_child(run_build, work, args.rows, args.events, args.commit_rows)
        masters: dict[str, tuple[str, dict[str, str]]] = {
            m: (m, {"spark.driver.memory": args.driver_memory}) for m in args.spark
        }
        if args.cluster:
            masters["cluster"] = ("", {})
        copies = [f"lake_{name}" for name in masters] + (["lake_ranges"] if args.max_events else [])
        for copy in copies:  # each run applies the batch to its own copy
            shutil.copytree(work / "lake", work / copy)
        commits = DeltaEngine(str(work / "lake")).version("bronze/orders")
        print(
            f"built {args.rows:,}-row silver table and {args.events:,}-event batch (+5% duplicates) "
            f"in {commits} bronze commits in {time.perf_counter() - started:.0f}s "
            f"(build peak {build_peak / gib:.2f} GiB)",
            flush=True,
        )
        ours = None if args.no_whole else measured("apply_changes (embedded)", run_ours, work, "lake", None)
        ranges = (
            measured("apply_changes in ranges", run_ours, work, "lake_ranges", args.max_events)
            if args.max_events
            else None
        )
        plain = measured("plain MERGE", run_plain, work)
        spark_runs = []
        for name, (master, conf) in list(masters.items()):
            if name != "cluster":
                outcome = measured(f"spark {name}", run_spark, work, name, master, conf)
            else:
                cluster = StandaloneCluster(work / "cluster", workers=2, cores=1, memory=args.executor_memory)
                with cluster as url:
                    outcome = measured(f"spark {name}", run_spark, work, name, url, cluster.app_conf())
            if outcome is None:
                del masters[name]
            else:
                spark_runs.append(outcome)
        # the reference table: the embedded run's, else the ranged run's, else the first Spark run's
        completed = [
            *(["lake"] if ours else []),
            *(["lake_ranges"] if ranges else []),
            *[f"lake_{m}" for m in masters],
        ]
        reference = completed[0]
        ours_table = DeltaEngine(str(work / reference)).read(ORDERS.table).sort("order_id")
        same = {
            lake: DeltaEngine(str(work / lake)).read(ORDERS.table).sort("order_id").equals(ours_table)
            for lake in completed
        }
        same_plain = None
        if plain is not None:
            plain_table = pl.read_delta(str(work / "plain_silver" / "orders")).sort("order_id")
            same_plain = ours_table.equals(plain_table.select(ours_table.columns))
    ours_s = ours[0] if ours else None
    if ours:
        seconds, peak, result = ours
        print(
            f"  ours: {result.events_read:,} events read, {result.events_superseded:,} superseded, "
            f"{result.rows_inserted:,} inserted, {result.rows_updated:,} updated, "
            f"{result.rows_deleted:,} deleted; same table as the plain MERGE: {same_plain}"
        )
        print(f"apply_changes: {seconds:.2f}s, peak {peak / gib:.2f} GiB")
    if ranges:
        seconds, peak, result = ranges
        versus = f" | {seconds / ours_s:.2f}x the whole batch" if ours_s else ""
        print(
            f"apply_changes in ranges of <= {args.max_events:,} events: {seconds:.2f}s, peak "
            f"{peak / gib:.2f} GiB{versus} | same table as {reference}: {same['lake_ranges']}"
        )
    if plain:
        plain_s, plain_mem = plain
        ratio = f" | ratio {ours_s / plain_s:.2f}x (targets: <= 6 s, <= 4 GiB, <= 1.5x)" if ours_s else ""
        print(
            f"plain MERGE of deduplicated events: {plain_s:.2f}s, peak {plain_mem / gib:.2f} GiB{ratio} "
            f"| same table as {reference}: {same_plain}"
        )
    for (name, seconds, driver, executors, applied), master in zip(spark_runs, masters, strict=True):
        versus = f"{seconds / ours_s:.1f}x the embedded time" if ours_s else "no embedded whole-batch time"
        print(
            f"{name}: {seconds:.2f}s ({seconds / (applied.events_read / 1e6):.2f} s per million "
            f"events), peak {driver / gib:.2f} GiB driver (Python + JVM) + {executors / gib:.2f} GiB "
            f"executors | {versus} | same table as {reference}: {same[f'lake_{master}']}"
        )


if __name__ == "__main__":
    main()
