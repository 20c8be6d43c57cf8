"""Training-set benchmark: the return-risk point-in-time training set over N labelled orders.

    uv run python benchmarks/bench_training_set.py [--orders 1000000] [--max-rows 0 2000000]
        [--spark local[2]] [--cluster]

The lake holds ``--orders`` orders (one in 11 without a known label) of orders/50 customers over
30 days, two lines each (300 products), and the customers' and products' daily feature rows.
Each run builds the product's training set as its asset does (``write_training_set``: the
point-in-time join of both feature views with Feast's TTL semantics, the on-demand view, the
basket of line features, written to the lake with its source versions): the embedded engine
(Feast's offline store and polars; ``--max-rows``: whole, or that many labelled rows per join,
streamed into one commit) and, with ``--spark local[2]`` / ``--cluster`` (a standalone
master and two one-core workers started here), the Spark engine, which never collects the set.
Each run is its own process, so its peak memory (VmHWM; Spark: driver Python + JVM, and the
executors) is its own; a run killed for memory is reported as not completed. The written sets
are compared by per-column fingerprints (row count, sums, null counts, string hashes).
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
from common import executor_peaks, in_child, measured, peak_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the synthetic inputs of the tests

from lakehouse_assets.engine import DeltaEngine  # noqa: E402
from lakehouse_assets.features.pipeline import write_training_set  # noqa: E402
from lakehouse_assets.features.store import feature_store  # noqa: E402
from lakehouse_assets.resources.connections import build_engine  # noqa: E402
from lakehouse_assets.resources.spark_cluster import StandaloneCluster  # noqa: E402
from lakehouse_assets.runtime import ensure_dirs  # noqa: E402
from lakehouse_assets.settings import LakehouseSettings  # noqa: E402
from tests.features.gold_fixture import write_return_risk_inputs  # noqa: E402
from tests.products import product  # noqa: E402

DAYS, PRODUCTS = 30, 300


def run_build(home: Path, orders: int, out) -> None:
    settings = LakehouseSettings(home=home)
    ensure_dirs(settings)
    write_return_risk_inputs(settings, orders, max(orders // 50, 100), PRODUCTS, DAYS)
    out.put(peak_bytes())


def kept(settings: LakehouseSettings, table: str, name: str) -> None:
    """Move the written set aside (every run writes the same table of the shared lake)."""
    lake = Path(settings.lake_root)
    shutil.move(lake / table, kept_at(settings, name))


def kept_at(settings: LakehouseSettings, name: str) -> Path:
    return Path(settings.lake_root) / "bench" / re.sub(r"[^a-z0-9]+", "-", name.lower())


def run_embedded(home: Path, name: str, max_rows: int, out) -> None:
    settings = LakehouseSettings(home=home)
    store, definitions = feature_store(settings)
    engine = DeltaEngine(settings.lake_root)
    started = time.perf_counter()
    table, _, labelled = write_training_set(store, engine, definitions, product(), max_rows, log=print)
    seconds = time.perf_counter() - started
    kept(settings, table, name)
    out.put((seconds, peak_bytes(), labelled))


def run_spark(home: Path, name: str, master: str, conf: dict[str, str], out) -> None:
    settings = LakehouseSettings(home=home, engine="spark", spark_master=master, spark_conf=conf)
    store, definitions = feature_store(settings)
    engine = build_engine(settings.lake_root, "spark", settings.spark_config())
    started = time.perf_counter()
    table, _, labelled = write_training_set(store, engine, definitions, product())
    seconds = time.perf_counter() - started
    jvm_pid = engine.spark.sparkContext._gateway.proc.pid  # type: ignore[attr-defined]
    driver = peak_bytes() + peak_bytes(jvm_pid)
    executors = executor_peaks()
    engine.spark.stop()  # type: ignore[attr-defined]
    kept(settings, table, name)
    out.put((name, seconds, driver, executors, labelled))


def fingerprint(path: Path) -> dict[str, float]:
    """Order-free per-column aggregates of a written set, in values only (pandas inside Feast
    turns integers with NULLs into floats and naive datetimes into UTC ones)."""
    frame = pl.scan_delta(str(path))
    aggregates = [pl.len().cast(pl.Float64).alias("rows")]
    for column, dtype in frame.collect_schema().items():
        value = pl.col(column)
        if dtype.is_numeric():
            summed = value.cast(pl.Float64)
        elif isinstance(dtype, pl.Datetime):
            summed = value.dt.replace_time_zone(None).dt.cast_time_unit("us").cast(pl.Int64).cast(pl.Float64)
        else:
            summed = value.cast(pl.String).hash(seed=7).cast(pl.Float64)
        aggregates += [
            summed.sum().alias(column),
            value.null_count().cast(pl.Float64).alias(f"{column} nulls"),
        ]
    return frame.select(aggregates).collect().row(0, named=True)


def same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(math.isclose(a[k], b[k], rel_tol=1e-9) for k in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument(
        "--max-rows",
        type=int,
        nargs="*",
        default=[0],
        help="embedded runs: labelled rows per point-in-time join (0: all at once; none: skip)",
    )
    parser.add_argument("--executor-memory", default="6g", help="each cluster worker's memory")
    parser.add_argument("--driver-memory", default="4g", help="the local[N] session's heap")
    parser.add_argument("--cluster", action="store_true", help="also on a 2-worker standalone cluster")
    parser.add_argument("--spark", nargs="*", default=[], metavar="MASTER", help="e.g. local[2]")
    args = parser.parse_args()
    data = Path(__file__).parent / ".data"
    data.mkdir(exist_ok=True)
    gib = 1024**3
    with tempfile.TemporaryDirectory(dir=data) as tmp:
        home = Path(tmp) / "home"
        started = time.perf_counter()
        build_peak = in_child(run_build, home, args.orders)
        print(
            f"built {args.orders:,} orders, {2 * args.orders:,} lines, "
            f"{max(args.orders // 50, 100) * DAYS:,} customer feature rows in "
            f"{time.perf_counter() - started:.0f}s (peak {build_peak / gib:.2f} GiB)",
            flush=True,
        )
        runs: dict[str, tuple[float, int, int, int]] = {}  # name -> seconds, driver, executors, rows
        for max_rows in args.max_rows:
            name = f"embedded in chunks of {max_rows:,}" if max_rows else "embedded"
            if outcome := measured(name, run_embedded, home, name, max_rows):
                runs[name] = (outcome[0], outcome[1], 0, outcome[2])
        masters = {m: (m, {"spark.driver.memory": args.driver_memory}) for m in args.spark}
        for name, (master, conf) in masters.items():
            if outcome := measured(f"spark {name}", run_spark, home, name, master, conf):
                runs[name] = outcome[1:]
        if args.cluster:
            cluster = StandaloneCluster(
                Path(tmp) / "cluster", workers=2, cores=1, memory=args.executor_memory
            )
            with cluster as url:
                if outcome := measured("spark cluster", run_spark, home, "cluster", url, cluster.app_conf()):
                    runs["cluster"] = outcome[1:]
        prints = {name: fingerprint(kept_at(LakehouseSettings(home=home), name)) for name in runs}
    reference = next(iter(runs), None)
    base = next((runs[name][0] for name in runs if name.startswith("embedded")), None)
    for name, (seconds, driver, executors, rows) in runs.items():
        memory = f"peak {driver / gib:.2f} GiB" + (
            ""
            if name.startswith("embedded")
            else f" driver (Python + JVM) + {executors / gib:.2f} GiB executors"
        )
        versus = f" | {seconds / base:.1f}x the first embedded time" if base and name != reference else ""
        check = (
            f" | same as {reference}: {same(prints[name], prints[reference])}" if name != reference else ""
        )
        print(
            f"{name}: {rows:,} rows in {seconds:.2f}s ({seconds / (rows / 1e6):.2f} s per million), "
            f"{memory}{versus}{check}"
        )


if __name__ == "__main__":
    main()
