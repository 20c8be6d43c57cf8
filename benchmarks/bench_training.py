"""Training wall time per model family, with tracking vs a plain scikit-learn fit.

    uv run python benchmarks/bench_training.py [--rows 1000000] [--demo-home ~/.lakehouse]

For each family (the first setting of its search), on the demo's training set (if
``--demo-home`` holds one, else a synthetic set of demo size) and on ``--rows`` synthetic rows:
- tracked: what the training asset does per candidate (fit, holdout metrics, four plots, dataset
  lineage, the skops model with signature and input example) as an MLflow run into a SQLite
  store in a temporary folder;
- plain: ``pipeline.fit`` of the same model on the same rows, no tracking.
Prints both and the overhead ratio tracked / plain.
"""

import argparse
import tempfile
import time
from pathlib import Path

import mlflow
import polars as pl

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.product_declarations import load_product
from lakehouse_assets.resources.mlflow import mlflow_resource
from lakehouse_assets.runtime import disable_telemetry
from lakehouse_assets.settings import LakehouseSettings
from lakehouse_assets.tables import training_set_table
from lakehouse_assets.training.candidates import candidates
from lakehouse_assets.training.dataset import model_input, time_split
from lakehouse_assets.training.synthetic import synthetic_training_set
from lakehouse_assets.training.train import TrainingData, labels, train_candidate

PRODUCT = "return_risk"  # the synthetic training set has its columns
TRAINING_SET_TABLE = training_set_table(PRODUCT)


def datasets(demo_home: Path | None, rows: int) -> list[tuple[str, pl.DataFrame]]:
    out = []
    engine = DeltaEngine(str(demo_home / "lake")) if demo_home else None
    if engine and engine.exists(TRAINING_SET_TABLE):
        out.append(("demo training set", engine.read(TRAINING_SET_TABLE)))
    else:
        out.append(("demo-size synthetic (2,000 rows)", synthetic_training_set(2_000)))
    out.append((f"synthetic {rows:,} rows", synthetic_training_set(rows, days=365)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--demo-home", type=Path, default=None)
    args = parser.parse_args()
    disable_telemetry()
    with tempfile.TemporaryDirectory() as tmp:
        settings = LakehouseSettings(home=Path(tmp))
        product = load_product(settings, PRODUCT)
        mlflow_resource(settings).activate(PRODUCT)
        first_of_family = {}
        for candidate in candidates(product):
            first_of_family.setdefault(candidate.family, candidate)
        warm = synthetic_training_set(500)  # first-call costs (imports, store) are not overhead
        with mlflow.start_run(run_name="warm-up"):
            train_candidate(
                next(iter(first_of_family.values())),
                time_split(warm, product),
                TrainingData(warm, f"{tmp}/warm", 0),
                product,
            )
        for name, frame in datasets(args.demo_home, args.rows):
            split = time_split(frame, product)
            data = TrainingData(frame, f"{tmp}/training_set", 0)
            x, y = model_input(split.train, product), labels(split.train, product)
            print(f"{name}: {split.train.height:,} training rows, {split.holdout.height:,} holdout rows")
            for family, candidate in first_of_family.items():
                started = time.perf_counter()
                candidate.build().fit(x, y)
                plain = time.perf_counter() - started
                started = time.perf_counter()
                with mlflow.start_run():
                    train_candidate(candidate, split, data, product)
                tracked = time.perf_counter() - started
                print(
                    f"  {family:<20} plain fit {plain:8.2f}s | tracked run {tracked:8.2f}s | "
                    f"overhead ratio {tracked / plain:5.2f}x",
                    flush=True,
                )


if __name__ == "__main__":
    main()
