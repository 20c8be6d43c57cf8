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
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import polars as pl
from common import ChildDied, in_child, peak_bytes
from deltalake import DeltaTable, write_deltalake

from lakehouse_assets.engine import AppTransaction, DeltaEngine
from lakehouse_assets.resources.spark_cluster import StandaloneCluster
from lakehouse_assets.silver.apply_changes import apply_changes
from lakehouse_assets.silver.specs import SILVER_SPECS
from lakehouse_assets.sources.cdc import BRONZE_TABLE_CONFIG, bronze_arrow_schema
from lakehouse_assets.sources.schema import SOURCE_TABLES_BY_NAME

ORDERS = next(s for s in SILVER_SPECS if s.name == "orders")
T0 = pl.datetime(2026, 1, 1)


def orders_frame(ids: pl.Series, seq: pl.Expr, status: str) -> pl.DataFrame:
    frame = pl.DataFrame({"order_id": ids})
    return frame.select(
        pl.col("order_id"),
        customer_id=pl.col("order_id") % 100_003,
        status=pl.lit(status),
        order_ts=T0 + pl.duration(seconds=pl.col("order_id") // 10),
        amount=(pl.col("order_id") % 997).cast(pl.Float64) + 1,
        discount=pl.lit(0.0),
        updated_at=T0 + pl.duration(seconds=pl.col("order_id") // 10),
        _seq=seq,
        _commit_ts=T0 + pl.duration(seconds=pl.col("order_id") // 10),
    )


def build(work: Path, rows: int, events: int) -> None:
    engine = DeltaEngine(str(work / "lake"))
    silver = orders_frame(pl.int_range(0, rows, eager=True), pl.col("order_id"), "delivered")
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
    recent_low = int(rows * 0.8)
    n_update, n_delete = int(events * 0.6), int(events * 0.1)
    n_insert = events - n_update - n_delete
    updated = pl.int_range(recent_low, rows, eager=True).sample(n_update, with_replacement=True, seed=1)
    recent = rows - recent_low  # more deletes than recent keys: some keys are deleted twice
    deleted = pl.int_range(recent_low, rows, eager=True).sample(
        n_delete, with_replacement=n_delete > recent, seed=2
    )
    seq0 = rows + 1
    parts = [
        orders_frame(updated, seq0 + pl.int_range(0, n_update), "shipped").with_columns(_op=pl.lit("update")),
        orders_frame(
            pl.int_range(rows, rows + n_insert, eager=True),
            seq0 + n_update + pl.int_range(0, n_insert),
            "placed",
        ).with_columns(_op=pl.lit("insert")),
        orders_frame(deleted, seq0 + n_update + n_insert + pl.int_range(0, n_delete), "shipped").with_columns(
            _op=pl.lit("delete")
        ),
    ]
    batch = pl.concat(parts)
    batch = pl.concat([batch, batch.sample(fraction=0.05, seed=3)]).sample(fraction=1.0, shuffle=True, seed=4)
    bronze = batch.with_columns(
        _ingested_at=T0.cast(pl.Datetime("us", "UTC")),
        _source=pl.lit("bench"),
        _batch_id=pl.lit("bench"),
    ).select(bronze_schema.names)
    engine.append("bronze/orders", bronze.to_arrow().cast(bronze_schema))
    # The baseline's input: the same events deduplicated (newest per key), as plain MERGE needs.
    batch.sort("_seq").unique("order_id", keep="last").write_parquet(work / "deduplicated.parquet")
    shutil.copytree(work / "lake" / "silver", work / "plain_silver")


def run_ours(work: Path, out) -> None:
    started = time.perf_counter()
    result = apply_changes(DeltaEngine(str(work / "lake")), ORDERS, batch_id="bench")
    out.put(
        (
            "ours",
            time.perf_counter() - started,
            peak_bytes(),
            result,
        )
    )


def executor_peaks() -> int:
    """The summed memory high-water marks (VmHWM) of this machine's standalone executors."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            cmdline = (status.parent / "cmdline").read_bytes()
            if b"CoarseGrainedExecutorBackend" in cmdline:
                total += peak_bytes(status.parent.name)
        except OSError:
            continue
    return total


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
    out.put(
        (
            "plain",
            time.perf_counter() - started,
            peak_bytes(),
            None,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--events", type=int, default=1_000_000)
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
    with tempfile.TemporaryDirectory(dir=data) as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        build(work, args.rows, args.events)
        masters: dict[str, tuple[str, dict[str, str]]] = {
            m: (m, {"spark.driver.memory": args.driver_memory}) for m in args.spark
        }
        if args.cluster:
            masters["cluster"] = ("", {})
        for name in masters:  # each Spark run applies the batch to its own copy
            shutil.copytree(work / "lake", work / f"lake_{name}")
        print(
            f"built {args.rows:,}-row silver table and {args.events:,}-event batch "
            f"(+5% duplicates) in {time.perf_counter() - started:.0f}s"
        )
        try:
            _, ours_s, ours_mem, result = in_child(run_ours, work)
        except ChildDied as died:  # the embedded engine did not fit in this machine's memory
            print(f"apply_changes (embedded): did not complete: {died}")
            ours_s, ours_mem, result = None, None, None
        try:
            _, plain_s, plain_mem, _ = in_child(run_plain, work)
        except ChildDied as died:
            print(f"plain MERGE: did not complete: {died}")
            plain_s, plain_mem = None, None
        spark_runs = []
        for name, (master, conf) in list(masters.items()):
            try:
                if name != "cluster":
                    spark_runs.append(in_child(run_spark, work, name, master, conf))
                    continue
                cluster = StandaloneCluster(work / "cluster", workers=2, cores=1, memory=args.executor_memory)
                with cluster as url:
                    spark_runs.append(in_child(run_spark, work, name, url, cluster.app_conf()))
            except ChildDied as died:  # e.g. the driver JVM out of heap
                print(f"spark {name}: did not complete: {died}")
                del masters[name]
        # the reference table: the embedded run's, else the first Spark run's
        reference = "lake" if result else f"lake_{next(iter(masters))}"
        ours_table = DeltaEngine(str(work / reference)).read(ORDERS.table).sort("order_id")
        same_on_spark = [
            DeltaEngine(str(work / f"lake_{m}")).read(ORDERS.table).sort("order_id").equals(ours_table)
            for m in masters
        ]
        same = None
        if plain_s is not None:
            plain_table = pl.read_delta(str(work / "plain_silver" / "orders")).sort("order_id")
            same = ours_table.equals(plain_table.select(ours_table.columns))
    gib = 1024**3
    if result is not None and ours_s and ours_mem:
        print(
            f"  ours: {result.events_read:,} events read, {result.events_superseded:,} superseded, "
            f"{result.rows_inserted:,} inserted, {result.rows_updated:,} updated, "
            f"{result.rows_deleted:,} deleted; same table as the plain MERGE: {same}"
        )
        print(f"apply_changes: {ours_s:.2f}s, peak {ours_mem / gib:.2f} GiB")
    if plain_s and plain_mem:
        ratio = f" | ratio {ours_s / plain_s:.2f}x (targets: <= 6 s, <= 4 GiB, <= 1.5x)" if ours_s else ""
        print(f"plain MERGE of deduplicated events: {plain_s:.2f}s, peak {plain_mem / gib:.2f} GiB{ratio}")
    for (name, seconds, driver, executors, applied), same_table in zip(
        spark_runs, same_on_spark, strict=True
    ):
        versus = f"{seconds / ours_s:.1f}x the embedded time" if ours_s else "embedded did not complete"
        print(
            f"{name}: {seconds:.2f}s ({seconds / (applied.events_read / 1e6):.2f} s per million "
            f"events), peak {driver / gib:.2f} GiB driver (Python + JVM) + {executors / gib:.2f} GiB "
            f"executors | {versus} | same table as {reference}: {same_table}"
        )


if __name__ == "__main__":
    main()
