"""Load test of the scoring API on loopback, beside `mlflow models serve` of the same model with
the Feast online lookup done by the client.

    make demo && uv run python benchmarks/bench_serving.py [--home ~/.lakehouse] [--requests 3000]

Over the demo's home (a champion in the registry, a filled online store):
1. closed loop, 8 concurrent clients, ``--requests`` single-order calls each way:
   - `lakehouse serve`: POST /v1/predict (lookup, on-demand features, scoring, inference log);
   - baseline: the client looks the features up with Feast (`OnlineFeatureLookup`, measured in
     the same run) and POSTs them to `mlflow models serve` of `models:/return_risk@champion`;
   throughput and p50/p99 of each, and the throughput ratio;
2. open loop at ``--rate`` requests/s (8 clients) against `lakehouse serve`: p50/p99 at that rate.
Targets on the 2-core machine: p99 <= 15 ms at 300 requests/s; >= 1.5x the baseline's throughput.
"""

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.features.online import OnlineFeatureLookup, OrderRequest
from lakehouse_assets.features.store import feature_store
from lakehouse_assets.settings import LakehouseSettings, disable_telemetry
from lakehouse_assets.training.dataset import FEATURES

CLIENTS = 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], env: dict[str, str], ready_url: str) -> subprocess.Popen:
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[:4]} exited with {process.returncode}")
        try:
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(ready_url)


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=60)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] * 1e3, ordered[int(len(ordered) * 0.99)] * 1e3


async def closed_loop(call, bodies: list[dict]) -> tuple[float, list[float]]:
    """CLIENTS workers take the next body as soon as their last call returns."""
    queue = list(reversed(bodies))
    latencies: list[float] = []

    async def worker() -> None:
        while queue:
            body = queue.pop()
            started = time.perf_counter()
            await call(body)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return len(bodies) / (time.perf_counter() - started), latencies


async def open_loop(call, bodies: list[dict], rate: float) -> tuple[float, list[float]]:
    """Requests start on a fixed schedule (rate per second), whatever the replies do."""
    latencies: list[float] = []
    limit = asyncio.Semaphore(CLIENTS * 8)

    async def one(body: dict, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        async with limit:
            started = time.perf_counter()
            await call(body)
            latencies.append(time.perf_counter() - started)

    begin = time.perf_counter() + 0.1
    await asyncio.gather(*(one(b, begin + i / rate) for i, b in enumerate(bodies)))
    return len(bodies) / (time.perf_counter() - begin), latencies


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
    bodies = [{"customer_id": rng.choice(customer_ids),
               "items": [{"product_id": rng.choice(product_ids), "quantity": 1}],
               "amount": round(rng.uniform(5, 400), 2), "discount": rng.choice([0.0, 0.1, 0.2])}
              for _ in range(args.requests)]
    env = {**settings.child_env(), "MLFLOW_TRACKING_URI": settings.tracking_uri,
           # mlflow models serve starts `uvicorn` from PATH: this environment's.
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "LAKEHOUSE_SERVING__RELOAD_SECONDS": "3600"}
    ours_port, mlflow_port = free_port(), free_port()
    ours = start([sys.executable, "-m", "lakehouse_assets.cli", "serve", "--port",
                  str(ours_port)], env, f"http://127.0.0.1:{ours_port}/ready")
    baseline = start([sys.executable, "-m", "mlflow", "models", "serve", "-m",
                      "models:/return_risk@champion", "--env-manager", "local", "-h",
                      "127.0.0.1", "-p", str(mlflow_port)], env,
                     f"http://127.0.0.1:{mlflow_port}/ping")
    lookup = OnlineFeatureLookup(feature_store(settings)[0])
    lookup_seconds: list[float] = []
    try:
        async def run() -> None:
            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CLIENTS * 8),
                                         timeout=30) as client:
                async def ours_call(body: dict) -> None:
                    r = await client.post(f"http://127.0.0.1:{ours_port}/v1/predict", json=body)
                    r.raise_for_status()

                async def baseline_call(body: dict) -> None:
                    started = time.perf_counter()
                    row = lookup.lookup([OrderRequest(body["customer_id"], body["amount"],
                                                      body["discount"])])[0]
                    lookup_seconds.append(time.perf_counter() - started)
                    record = {**{f: row.get(f) for f in FEATURES}, "amount": body["amount"],
                              "discount": body["discount"]}
                    r = await client.post(f"http://127.0.0.1:{mlflow_port}/invocations",
                                          json={"dataframe_records": [record]})
                    r.raise_for_status()

                for call in (ours_call, baseline_call):  # warm-up
                    await closed_loop(call, bodies[:200])
                lookup_seconds.clear()
                results = {}
                for name, call in (("lakehouse serve", ours_call),
                                   ("mlflow models serve + client-side Feast lookup",
                                    baseline_call)):
                    throughput, latencies = await closed_loop(call, bodies)
                    results[name] = throughput
                    p50, p99 = percentiles(latencies)
                    print(f"{name}: {throughput:,.0f} requests/s, p50 {p50:.2f} ms, "
                          f"p99 {p99:.2f} ms ({CLIENTS} clients, {len(bodies):,} requests)")
                l50, l99 = percentiles(lookup_seconds)
                print(f"  of which the Feast lookup in the baseline client: p50 {l50:.2f} ms, "
                      f"p99 {l99:.2f} ms")
                ours_tp, base_tp = results.values()
                print(f"throughput ratio: {ours_tp / base_tp:.2f}x (target >= 1.5x)")
                achieved, latencies = await open_loop(ours_call, bodies, args.rate)
                p50, p99 = percentiles(latencies)
                print(f"lakehouse serve at {args.rate:.0f} requests/s offered ({achieved:,.0f} "
                      f"achieved): p50 {p50:.2f} ms, p99 {p99:.2f} ms (target p99 <= 15 ms)")

        asyncio.run(run())
    finally:
        stop(ours)
        stop(baseline)


if __name__ == "__main__":
    main()
