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

from lakehouse_assets.registry.promotion import PRIMARY_METRIC
from lakehouse_assets.settings import TrainingSettings
from lakehouse_assets.training.candidates import (
    TRUSTED_TYPES,
    Candidate,
    candidates,
    feature_importance,
)
from lakehouse_assets.training.dataset import FEATURES, LABEL, TimeSplit, model_input, time_split
from lakehouse_assets.training.metrics import classification_metrics, save_plots

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


def fingerprint(data: TrainingData, settings: TrainingSettings) -> str:
    """Same training set version, same sources and same settings give the same models."""
    grid = [c.name for c in candidates(settings.seed)]
    payload = json.dumps(
        {
            "path": data.path,
            "version": data.version,
            "sources": data.source_versions,
            "settings": settings.model_dump(),
            "grid": grid,
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


def log_datasets(data: TrainingData, split: TimeSplit) -> None:
    """Training and validation data as MLflow inputs: the Delta table and version they were read
    at, their schema and row count. (MLflow's pandas dataset infers its schema cell by cell:
    seconds per million rows; the schema of a sample is the same.)"""
    source = DeltaDatasetSource(path=data.path, delta_table_version=data.version)
    for context, part in (("training", split.train), ("validation", split.holdout)):
        sample = model_input(part.head(1000)).assign(**{LABEL: part[LABEL].head(1000).to_numpy()})
        identity = f"{data.path}@{data.version}:{context}:{split.cutoff}:{part.height}"
        dataset = DeltaSlice(
            source,
            f"training_set@v{data.version}:{context}",
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


def train_candidate(
    candidate: Candidate, split: TimeSplit, data: TrainingData, settings: TrainingSettings
) -> CandidateRun:
    """Fit one candidate and log it as a (nested) MLflow run."""
    x_train, y_train = model_input(split.train), split.train[LABEL].cast(pl.Int64).to_numpy()
    x_holdout, y_holdout = model_input(split.holdout), split.holdout[LABEL].cast(pl.Int64).to_numpy()
    with mlflow.start_run(run_name=candidate.name, nested=True) as run:
        model = candidate.build().fit(x_train, y_train)
        probabilities = model.predict_proba(x_holdout)[:, 1]
        metrics = classification_metrics(y_holdout, probabilities, settings.decision_threshold)
        mlflow.log_params(
            {
                "family": candidate.family,
                **candidate.params,
                "seed": settings.seed,
                "decision_threshold": settings.decision_threshold,
                "train_rows": len(y_train),
                "holdout_rows": len(y_holdout),
                "cutoff": str(split.cutoff),
            }
        )
        mlflow.log_metrics(metrics)
        importance = feature_importance(model)
        with tempfile.TemporaryDirectory() as folder:
            save_plots(y_holdout, probabilities, settings.decision_threshold, importance, Path(folder))
            mlflow.log_artifacts(folder, artifact_path="plots")
        mlflow.log_dict(importance, "feature_importance.json")
        log_datasets(data, split)
        info = log_sklearn_model(model, x_train.head(5))
    return CandidateRun(candidate, run.info.run_id, info.model_uri, metrics, model)


def log_sklearn_model(model: Pipeline, example: pd.DataFrame) -> Any:
    """Log a fitted pipeline to the active run the way serving and the gate load it: skops with
    the trusted types only, probabilities from predict_proba, signature, input example and
    pinned requirements. Returns MLflow's ModelInfo."""
    return mlflow.sklearn.log_model(
        model,
        name="model",
        serialization_format="skops",
        skops_trusted_types=TRUSTED_TYPES,
        pyfunc_predict_fn="predict_proba",
        signature=infer_signature(example, model.predict_proba(example)),
        input_example=example,
        pip_requirements=MODEL_REQUIREMENTS,
    )


def train_candidates(data: TrainingData, settings: TrainingSettings, log: Any = None) -> TrainingOutcome:
    """One parent run for the search, one nested run per candidate; best = highest holdout
    ROC AUC (ties: lower log loss)."""
    split = time_split(data.frame, settings.holdout_fraction, settings.label_window_days)
    key = fingerprint(data, settings)
    runs = []
    with mlflow.start_run(run_name=f"return_risk search v{data.version}") as parent:
        mlflow.set_tags({"fingerprint": key, "training_set_version": str(data.version)})
        mlflow.log_params(
            {
                "holdout_fraction": settings.holdout_fraction,
                "seed": settings.seed,
                "features": ",".join(FEATURES),
                **split.window(),
            }
        )
        for number, candidate in enumerate(candidates(settings.seed), start=1):
            runs.append(train_candidate(candidate, split, data, settings))
            if log:
                log(
                    f"[{number}/{len(candidates(settings.seed))}] {candidate.name}: "
                    f"{PRIMARY_METRIC} {runs[-1].metrics[PRIMARY_METRIC]:.4f}"
                )
        best = max(runs, key=lambda r: (r.metrics[PRIMARY_METRIC], -r.metrics["log_loss"]))
        mlflow.log_metrics({f"best_{k}": v for k, v in best.metrics.items()})
        mlflow.set_tags({"best_run_id": best.run_id, "best_candidate": best.candidate.name})
    return TrainingOutcome(parent.info.run_id, runs, best, split, key)


def positive_probability(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """P(return) from a loaded pyfunc model (predict_proba: one column per class)."""
    return np.asarray(model.predict(frame))[:, 1]
