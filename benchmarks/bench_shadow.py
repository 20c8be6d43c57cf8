"""What the shadow challenger costs a request: p99 latency of `lakehouse serve` with the challenger
out of the way (rollout champion) and scoring every request in the shadow, same process, same
traffic, switched at run time with PUT /v1/rollout.

    make demo && uv run python benchmarks/bench_shadow.py [--home ~/.lakehouse] [--requests 3000]

Over the demo's home: without a `challenger` alias, one is trained and registered first (a
random forest on the stored training set, through the lake API; it stays registered as the
challenger, for the next evaluation to judge). Then, alternating ``--rounds`` times,
``--requests`` single-order calls per mode at ``--rate`` requests/s offered (open loop, as
checkout traffic arrives). Reported: each mode's p99 over all its rounds, and the median over
rounds of (shadow round p99 - the champion round's before it), which cancels slow drifts of the
machine.
Target on the 2-core machine: the shadow call adds at most 1 ms to p99.
"""

import argparse
import asyncio
import random
import statistics
import sys
from pathlib import Path

import httpx
from common import CLIENTS, free_port, in_child, open_loop, percentiles, start, stop

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.runtime import child_env, disable_telemetry
from lakehouse_assets.settings import LakehouseSettings


def ensure_challenger(home: Path, queue) -> None:
    """The challenger's version (on ``queue``); one is trained and registered when there is
    none. Run in a child process: the measuring process stays small (no MLflow, no models)."""
    import os

    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline

    from lakehouse_assets import lake
    from lakehouse_assets.registry.promotion import CHALLENGER, CHAMPION, alias_version
    from lakehouse_assets.resources.mlflow import mlflow_resource
    from lakehouse_assets.training.candidates import preprocessing

    settings = LakehouseSettings(home=home)
    os.environ["LAKEHOUSE_HOME"] = str(settings.home_dir)
    served = lake.product()  # the product the service scores online
    client = mlflow_resource(settings).client()
    found = alias_version(client, served.spec.model_name, CHALLENGER)
    champion = alias_version(client, served.spec.model_name, CHAMPION)
    if champion is None:
        queue.put("no champion in the registry: run `make demo` first")
        return
    if found is not None and found.version != champion.version:
        queue.put(int(found.version))
        return
    data = lake.training_data()
    split = lake.split(data.frame)
    model = Pipeline(
        [
            ("features", preprocessing(served, scale=False)),
            (
                "classifier",
                RandomForestClassifier(
                    n_estimators=200, max_depth=10, min_samples_leaf=3, n_jobs=2, random_state=5
                ),
            ),
        ]
    )
    with lake.experiment_run("bench_shadow challenger", data=data, split=split):
        model.fit(lake.model_input(split.train), lake.labels(split.train))
        metrics = lake.holdout_metrics(model, split)
        uri = lake.log_model(model, split)
    version = lake.register_challenger(uri, data=data, split=split, metrics=metrics)
    print(f"registered version {version.version} as the challenger")
    queue.put(int(version.version))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path("~/.lakehouse").expanduser())
    parser.add_argument("--requests", type=int, default=1500, help="per round and mode")
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    disable_telemetry()
    settings = LakehouseSettings(home=args.home)
    challenger = in_child(ensure_challenger, settings.home_dir)
    if isinstance(challenger, str):
        sys.exit(challenger)
    engine = DeltaEngine(settings.lake_root)
    customer_ids = (
        engine.read("gold/customer_daily_features", columns=["customer_id"])["customer_id"].unique().to_list()
    )
    product_ids = (
        engine.read("gold/product_daily_features", columns=["product_id"])["product_id"].unique().to_list()
    )
    rng = random.Random(7)
    bodies = [
        {
            "customer_id": rng.choice(customer_ids),
            "items": [
                {"product_id": p, "quantity": 1} for p in rng.sample(product_ids, rng.choice([1, 1, 2, 3]))
            ],
            "amount": round(rng.uniform(5, 400), 2),
            "discount": rng.choice([0.0, 0.1, 0.2]),
        }
        for _ in range(args.requests)
    ]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**child_env(settings), "LAKEHOUSE_SERVING__RELOAD_SECONDS": "3600"}
    env.pop("LAKEHOUSE_SERVING__TOKEN", None)
    server = start(
        [sys.executable, "-m", "lakehouse_assets.cli", "serve", "--port", str(port)], env, f"{url}/ready"
    )
    latencies: dict[str, list[float]] = {"champion": [], "shadow": []}
    round_p99: dict[str, list[float]] = {"champion": [], "shadow": []}

    async def measure() -> None:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CLIENTS * 8), timeout=30) as client:

            async def call(body: dict) -> None:
                (await client.post(f"{url}/v1/predict", json=body)).raise_for_status()

            for _ in range(args.rounds):
                for mode in ("champion", "shadow"):
                    state = (await client.put(f"{url}/v1/rollout", json={"mode": mode})).json()
                    assert state["mode"] == mode and state["challenger_version"] == challenger
                    await open_loop(call, bodies[:300], args.rate)  # warm-up in this mode
                    achieved, measured = await open_loop(call, bodies, args.rate)
                    latencies[mode].extend(measured)
                    p50, p99 = percentiles(measured)
                    round_p99[mode].append(p99)
                    print(
                        f"  round {mode:8s}: p50 {p50:.2f} ms, p99 {p99:.2f} ms "
                        f"({achieved:,.0f} requests/s achieved)"
                    )

    try:
        asyncio.run(measure())
    finally:
        stop(server)
    results = {mode: percentiles(values) for mode, values in latencies.items()}
    for mode, (p50, p99) in results.items():
        print(
            f"rollout {mode:8s}: p50 {p50:.2f} ms, p99 {p99:.2f} ms "
            f"({len(latencies[mode]):,} requests at {args.rate:.0f}/s offered)"
        )
    added = results["shadow"][1] - results["champion"][1]
    paired = statistics.median(b - a for a, b in zip(round_p99["champion"], round_p99["shadow"], strict=True))
    print(
        f"the shadow challenger (v{challenger}) adds {added:+.2f} ms at p99 over all rounds "
        f"(ratio {results['shadow'][1] / results['champion'][1]:.2f}x), median paired round "
        f"difference {paired:+.2f} ms (target <= +1 ms)"
    )


if __name__ == "__main__":
    main()
