"""Online features: retrieval latency and materialization throughput.

    uv run python benchmarks/bench_online_features.py [--customers 200000] [--days 5] [--calls 1000]

Builds a synthetic gold `customer_daily_features` Delta table (customers x days rows), applies
the platform's Feast definitions in a temporary home, and measures:
- materialization (the first run's backfill into the SQLite online store) through the platform's
  bulk writer and through Feast's own `materialize` into a second store, same data, same process:
  source rows per second, entities per second and the speed-up;
- latency of 1 and 100 entities per call over ``--calls`` calls: through `OnlineFeatureLookup`
  (the path serving uses: the return_risk_v1 service with request-time features) and through
  Feast's plain `get_online_features` with the view's features, p50 and p99 of each.
Targets: p99 <= 2 ms for 1 entity in process; materialization >= 100,000 rows/s.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC
from pathlib import Path

import polars as pl
from common import percentiles
from deltalake import write_deltalake

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.features.online import OnlineFeatureLookup
from lakehouse_assets.features.pipeline import materialize_online
from lakehouse_assets.features.store import feature_store
from lakehouse_assets.product_declarations import default_product, load_products
from lakehouse_assets.resources.connections import open_feast
from lakehouse_assets.runtime import disable_telemetry, ensure_dirs
from lakehouse_assets.settings import LakehouseSettings


def synthetic_features(customers: int, days: int) -> pl.DataFrame:
    frame = pl.DataFrame({"customer_id": pl.int_range(1, customers + 1, eager=True)})
    frame = frame.join(pl.DataFrame({"d": list(range(days))}), how="cross")
    c, d = pl.col("customer_id"), pl.col("d")
    return frame.select(
        "customer_id",
        feature_date=(pl.date(2026, 1, 1) + pl.duration(days=d)),
        feature_ts=(pl.datetime(2026, 1, 2) + pl.duration(days=d)),
        segment=pl.lit("regular"),
        city=pl.lit("Berlin"),
        country=pl.lit("DE"),
        tenure_days=(c % 700 + d).cast(pl.Int64),
        orders_7d=(c % 3).cast(pl.Int64),
        orders_30d=(c % 7).cast(pl.Int64),
        orders_90d=(c % 11 + d).cast(pl.Int64),
        spend_7d=(c % 97).cast(pl.Float64),
        spend_30d=(c % 301).cast(pl.Float64),
        spend_90d=(c % 997 + d).cast(pl.Float64),
        returns_30d=(c % 2).cast(pl.Int64),
        returns_90d=(c % 4).cast(pl.Int64),
        avg_discount_90d=pl.lit(0.05),
        lifetime_orders=(c % 13).cast(pl.Int64),
        days_since_last_order=(c % 9).cast(pl.Int64),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    disable_telemetry()
    with tempfile.TemporaryDirectory() as tmp:
        settings = LakehouseSettings(home=Path(tmp))
        ensure_dirs(settings)
        frame = synthetic_features(args.customers, args.days)
        write_deltalake(f"{settings.lake_root}/gold/customer_daily_features", frame.to_arrow())
        store, definitions = feature_store(settings)
        store.apply(definitions.all())
        started = time.perf_counter()
        materialize_online(store, DeltaEngine(settings.lake_root), definitions)
        ours = time.perf_counter() - started
        feast_store = open_feast(Path(tmp) / "feast-baseline")
        feast_store.apply(definitions.all())
        started = time.perf_counter()
        feast_store.materialize(
            start_date=frame["feature_ts"].min().replace(tzinfo=UTC),
            end_date=frame["feature_ts"].max().replace(tzinfo=UTC),
            feature_views=["customer_daily_features"],
        )
        baseline = time.perf_counter() - started
        features = len(definitions.customer_features.features)  # Feast's SQLite: a row per value
        for name, seconds in (("bulk writer", ours), ("Feast materialize", baseline)):
            print(
                f"materialization, {name}: {frame.height:,} source rows, {args.customers:,} "
                f"entities in {seconds:.2f}s = {frame.height / seconds:,.0f} source rows/s, "
                f"{args.customers / seconds:,.0f} entities/s, "
                f"{args.customers * features / seconds:,.0f} online values/s"
            )
        print(f"materialization speed-up vs Feast: {baseline / ours:.2f}x (target >= 100,000 source rows/s)")

        served = default_product(
            load_products(settings), settings.serving.default_product
        )  # the online product's row features
        assert served is not None, "no data product is served online"
        lookup = OnlineFeatureLookup(store, list(served.row_features))
        refs = [f"customer_daily_features:{f.name}" for f in definitions.customer_features.features]
        rng = random.Random(7)
        for batch in (1, 100):
            ours, plain = [], []
            for _ in range(args.calls):
                ids = [rng.randint(1, args.customers) for _ in range(batch)]
                orders = [{"customer_id": i, "amount": 100.0, "discount": 0.1} for i in ids]
                t = time.perf_counter()
                lookup.lookup(orders)
                ours.append(time.perf_counter() - t)
                t = time.perf_counter()
                store.get_online_features(
                    features=refs, entity_rows=[{"customer_id": i} for i in ids]
                ).to_dict()
                plain.append(time.perf_counter() - t)
            (o50, o99), (p50, p99) = percentiles(ours), percentiles(plain)
            print(
                f"{batch:>3} entit{'y' if batch == 1 else 'ies'}: serving path p50 {o50:.2f} ms "
                f"p99 {o99:.2f} ms | plain get_online_features p50 {p50:.2f} ms p99 "
                f"{p99:.2f} ms | p99 ratio {o99 / p99:.2f} (target p99 <= 2 ms for 1 entity)"
            )


if __name__ == "__main__":
    main()
