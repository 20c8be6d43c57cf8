"""Train every candidate on the time split, each as an MLflow run (parameters, metrics, plots,
the model with signature and input example, dataset lineage), and pick the best."""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import polars as pl
from mlflow.data.delta_dataset_source import DeltaDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.models import infer_signature
from sklearn.pipeline import Pipeline

from lakehouse_assets.products.spec import Product
from lakehouse_assets.training.candidates import (
    TRUSTED_TYPES,
    Candidate,
    candidates,
    coefficients,
    feature_importance,
)
from lakehouse_assets.training.dataset import TimeSplit, model_input, time_split
from lakehouse_assets.training.metrics import save_plots, save_regression_plots, task_metrics

MODEL_REQUIREMENTS = [
    f"{p}=={version(p)}" for p in ("mlflow", "scikit-learn", "skops", "lightgbm", "pandas", "numpy")
]


@dataclass(frozen=True)
class TrainingData:
    """The training set as read, with where it came from (for lineage and the fingerprint)."""

    frame: pl.DataFrame
    path: str
    version: int
    source_versions: dict[str, int] = field(default_factory=dict)


@dataclass
class CandidateRun:
    """One trained candidate: its MLflow run, model URI and holdout metrics."""

    candidate: Candidate
    run_id: str
    model_uri: str
    metrics: dict[str, float]
    model: Pipeline


@dataclass
class TrainingOutcome:
    """A training run's candidates, the best of them and the split they were compared on."""

    parent_run_id: str
    runs: list[CandidateRun]
    best: CandidateRun
    split: TimeSplit
    fingerprint: str


TRAINING_FIELDS = {"task", "entity", "label", "features", "split", "candidates", "seed", "decision_threshold"}


def fingerprint(data: TrainingData, product: Product) -> str:
    """Same training set version, same sources and same declaration give the same models."""
    payload = json.dumps(
        {
            "path": data.path,
            "version": data.version,
            "sources": data.source_versions,
            # what shapes the models (not the gate, serving or monitoring: changing those retrains nothing)
            "declaration": product.spec.model_dump(mode="json", include=TRAINING_FIELDS),
            "inputs": product.features,
            "grid": [c.name for c in candidates(product)],
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class DeltaSlice(MetaDataset):
    """An MLflow input that points at rows of a Delta table version: schema and row count, no
    copy of the data."""

    def __init__(self, source: DeltaDatasetSource, name: str, digest: str, schema: Any, rows: int):
        super().__init__(source, name=name, digest=digest, schema=schema)
        self._rows = rows

    @property
    def profile(self) -> dict[str, int]:
        return {"num_rows": self._rows}

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self.profile)}


def log_datasets(data: TrainingData, split: TimeSplit, product: Product) -> None:
    """Training and validation data as MLflow inputs: the Delta table and version they were read
    at, their schema and row count. (MLflow's pandas dataset infers its schema cell by cell:
    seconds per million rows; the schema of a sample is the same.)"""
    source = DeltaDatasetSource(path=data.path, delta_table_version=data.version)
    for context, part in (("training", split.train), ("validation", split.holdout)):
        sample = model_input(part.head(1000), product).assign(
            **{product.label: part[product.label].head(1000).to_numpy()}
        )
        identity = f"{data.path}@{data.version}:{context}:{split.cutoff}:{part.height}"
        dataset = DeltaSlice(
            source,
            f"{product.name}_training_set@v{data.version}:{context}",
            hashlib.sha256(identity.encode()).hexdigest()[:8],
            infer_signature(sample).inputs,
            part.height,
        )
        mlflow.log_input(
            dataset,
            context=context,
            tags={
                "delta_version": str(data.version),
                "rows": str(part.height),
                "source_delta_versions": json.dumps(data.source_versions, sort_keys=True),
            },
        )


def labels(frame: pl.DataFrame, product: Product) -> np.ndarray:
    """The label column as the task's numbers (0/1 for a classifier)."""
    column = frame[product.label]
    return (
        column.cast(pl.Int64) if product.spec.task == "binary_classification" else column.cast(pl.Float64)
    ).to_numpy()


def train_candidate(
    candidate: Candidate, split: TimeSplit, data: TrainingData, product: Product
) -> CandidateRun:
    """Fit one candidate and log it as a (nested) MLflow run."""
    spec = product.spec
    x_train, y_train = model_input(split.train, product), labels(split.train, product)
    x_holdout, y_holdout = model_input(split.holdout, product), labels(split.holdout, product)
    with mlflow.start_run(run_name=candidate.name, nested=True) as run:
        model = candidate.build().fit(x_train, y_train)
        prediction = predictions(model, x_holdout, spec.task)
        metrics = task_metrics(spec.task, y_holdout, prediction, spec.decision_threshold)
        mlflow.log_params(
            {
                "family": candidate.family,
                **candidate.params,
                "seed": spec.seed,
                **({"decision_threshold": spec.decision_threshold} if spec.decision_threshold else {}),
                "train_rows": len(y_train),
                "holdout_rows": len(y_holdout),
                "cutoff": str(split.cutoff),
            }
        )
        mlflow.log_metrics(metrics)
        importance = feature_importance(model, product)
        with tempfile.TemporaryDirectory() as folder:
            if spec.task == "binary_classification":
                save_plots(y_holdout, prediction, spec.decision_threshold or 0.5, importance, Path(folder))
            else:
                save_regression_plots(y_holdout, prediction, importance, Path(folder))
            mlflow.log_artifacts(folder, artifact_path="plots")
        mlflow.log_dict(importance, "feature_importance.json")
        linear = coefficients(model)
        if linear is not None:  # an interpretable model: its coefficients beside it
            mlflow.log_dict(linear, "coefficients.json")
        log_datasets(data, split, product)
        info = log_sklearn_model(model, x_train.head(5), spec.task)
    return CandidateRun(candidate, run.info.run_id, info.model_uri, metrics, model)


def log_sklearn_model(model: Pipeline, example: pd.DataFrame, task: str = "binary_classification") -> Any:
    """Log a fitted pipeline to the active run the way serving and the gate load it: skops with
    the trusted types only, a classifier's probabilities from predict_proba, signature, input
    example and pinned requirements. Returns MLflow's ModelInfo."""
    method = "predict_proba" if task == "binary_classification" else "predict"
    return mlflow.sklearn.log_model(
        model,
        name="model",
        serialization_format="skops",
        skops_trusted_types=TRUSTED_TYPES,
        pyfunc_predict_fn=method,
        signature=infer_signature(example, getattr(model, method)(example)),
        input_example=example,
        pip_requirements=MODEL_REQUIREMENTS,
    )


def better(product: Product, metrics: dict[str, float]) -> tuple[float, ...]:
    """Sort key, larger is better: the primary metric (in its direction), then the first guard."""
    spec = product.spec
    sign = {
        m: (1.0 if spec.better(m) == "max" else -1.0) for m in (spec.gate.primary_metric, *spec.gate.guards)
    }
    return tuple(sign[m] * metrics[m] for m in sign)


def train_candidates(data: TrainingData, product: Product, log: Any = None) -> TrainingOutcome:
    """One parent run for the search, one nested run per candidate; best = best holdout value of
    the gate's primary metric (ties: its first guard)."""
    split = time_split(data.frame, product)
    key = fingerprint(data, product)
    primary = product.spec.gate.primary_metric
    grid = candidates(product)
    runs = []
    with mlflow.start_run(run_name=f"{product.name} search v{data.version}") as parent:
        mlflow.set_tags(
            {"fingerprint": key, "training_set_version": str(data.version), "product": product.name}
        )
        mlflow.log_params(
            {
                "holdout_fraction": product.spec.split.holdout_fraction,
                "seed": product.spec.seed,
                "features": ",".join(product.features),
                **split.window(),
            }
        )
        for number, candidate in enumerate(grid, start=1):
            runs.append(train_candidate(candidate, split, data, product))
            if log:
                log(f"[{number}/{len(grid)}] {candidate.name}: {primary} {runs[-1].metrics[primary]:.4f}")
        best = max(runs, key=lambda r: better(product, r.metrics))
        mlflow.log_metrics({f"best_{k}": v for k, v in best.metrics.items()})
        mlflow.set_tags({"best_run_id": best.run_id, "best_candidate": best.candidate.name})
    return TrainingOutcome(parent.info.run_id, runs, best, split, key)


def predictions(model: Any, frame: pd.DataFrame, task: str) -> np.ndarray:
    """What a fitted pipeline predicts: P(positive) for a classifier, the number for a regression."""
    if task == "binary_classification":
        return np.asarray(model.predict_proba(frame))[:, 1]
    return np.asarray(model.predict(frame), dtype=float)


def served_predictions(model: Any, frame: pd.DataFrame, task: str) -> np.ndarray:
    """What a loaded pyfunc model predicts (a classifier's pyfunc returns predict_proba)."""
    output = np.asarray(model.predict(frame))
    return output[:, 1] if task == "binary_classification" else output.astype(float)
