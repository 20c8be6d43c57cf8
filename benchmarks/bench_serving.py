"""Load test of the scoring API on loopback, beside `mlflow models serve` of the same model with
the Feast online lookup done by the client.

    make demo && uv run python benchmarks/bench_serving.py [--home ~/.lakehouse] [--requests 3000]

Over the demo's home (a champion in the registry, a filled online store):
1. `lakehouse serve` alone: closed loop, 8 concurrent clients, ``--requests`` single-order calls
   to POST /v1/predict (lookup, on-demand and basket features, scoring, inference log):
   throughput and p50/p99; then an open loop at ``--rate`` requests/s: p50/p99 at that rate;
2. then the baseline alone: the client computes the same features with the service's own
   lookup code (Feast online store, measured) and POSTs them to `mlflow models serve` of
   `models:/return_risk@champion`, closed loop as in 1; the throughput ratio.
Targets on the 2-core machine: p99 <= 15 ms at 300 requests/s; >= 1.5x the baseline's throughput.
"""

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path

import httpx
from common import CLIENTS, closed_loop, free_port, open_loop, percentiles, start, stop

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.features.store import feature_store
from lakehouse_assets.runtime import child_env, disable_telemetry
from lakehouse_assets.serving.scoring import ProductFeatures
from lakehouse_assets.serving.server import served_products
from lakehouse_assets.settings import LakehouseSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path("~/.lakehouse").expanduser())
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=300.0)
    args = parser.parse_args()
    disable_telemetry()
    settings = LakehouseSettings(home=args.home)
    engine = DeltaEngine(settings.lake_root)
    customers = engine.read("gold/customer_daily_features", columns=["customer_id"])
    products = engine.read("gold/product_daily_features", columns=["product_id"])
    rng = random.Random(7)
    customer_ids = customers["customer_id"].unique().to_list()
    product_ids = products["product_id"].unique().to_list()
    bodies = [
        {
            "customer_id": rng.choice(customer_ids),
            "items": [
                {"product_id": p, "quantity": rng.choice([1, 1, 2])}
                for p in rng.sample(product_ids, rng.choice([1, 1, 2, 3]))
            ],
            "amount": round(rng.uniform(5, 400), 2),
            "discount": rng.choice([0.0, 0.1, 0.2]),
        }
        for _ in range(args.requests)
    ]
    env = {
        **child_env(settings),
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        # mlflow models serve starts `uvicorn` from PATH: this environment's.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "LAKEHOUSE_SERVING__RELOAD_SECONDS": "3600",
    }
    ours_port, mlflow_port = free_port(), free_port()
    served = {p.name: p for p in served_products(settings)}
    features = ProductFeatures(feature_store(settings)[0], served[settings.serving.default_product])
    lookup_seconds: list[float] = []

    async def run(process_url: str, measure) -> None:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CLIENTS * 8), timeout=30) as client:
            await measure(client, process_url)

    async def measure_ours(client: httpx.AsyncClient, url: str) -> None:
        async def call(body: dict) -> None:
            (await client.post(f"{url}/v1/predict", json=body)).raise_for_status()

        await closed_loop(call, bodies[:300])  # warm-up
        throughput, latencies = await closed_loop(call, bodies)
        results["ours"] = throughput
        report("lakehouse serve", throughput, latencies)
        await open_loop(call, bodies[:300], args.rate)  # warm-up at the rate
        achieved, latencies = await open_loop(call, bodies, args.rate)
        p50, p99 = percentiles(latencies)
        print(
            f"lakehouse serve at {args.rate:.0f} requests/s offered ({achieved:,.0f} "
            f"achieved): p50 {p50:.2f} ms, p99 {p99:.2f} ms (target p99 <= 15 ms)"
        )

    async def measure_baseline(client: httpx.AsyncClient, url: str) -> None:
        async def call(body: dict) -> None:
            started = time.perf_counter()
            row = features.lookup([body])[0].features  # the service's own lookup code
            lookup_seconds.append(time.perf_counter() - started)
            r = await client.post(f"{url}/invocations", json={"dataframe_records": [row]})
            r.raise_for_status()

        await closed_loop(call, bodies[:100])  # warm-up
        lookup_seconds.clear()
        throughput, latencies = await closed_loop(call, bodies)
        results["baseline"] = throughput
        report("mlflow models serve + client-side Feast lookup", throughput, latencies)
        l50, l99 = percentiles(lookup_seconds)
        print(f"  of which the feature lookup in the baseline client: p50 {l50:.2f} ms, p99 {l99:.2f} ms")

    def report(name: str, throughput: float, latencies: list[float]) -> None:
        p50, p99 = percentiles(latencies)
        print(
            f"{name}: {throughput:,.0f} requests/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms "
            f"({CLIENTS} clients, {len(bodies):,} requests)"
        )

    results: dict[str, float] = {}
    # one server at a time, so neither competes with the other for the two cores
    ours = start(
        [sys.executable, "-m", "lakehouse_assets.cli", "serve", "--port", str(ours_port)],
        env,
        f"http://127.0.0.1:{ours_port}/ready",
    )
    try:
        asyncio.run(run(f"http://127.0.0.1:{ours_port}", measure_ours))
    finally:
        stop(ours)
    baseline = start(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            "models:/return_risk@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(mlflow_port),
        ],
        env,
        f"http://127.0.0.1:{mlflow_port}/ping",
    )
    try:
        asyncio.run(run(f"http://127.0.0.1:{mlflow_port}", measure_baseline))
    finally:
        stop(baseline)
    print(f"throughput ratio: {results['ours'] / results['baseline']:.2f}x (target >= 1.5x)")


if __name__ == "__main__":
    main()
