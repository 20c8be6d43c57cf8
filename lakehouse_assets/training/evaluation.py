"""Champion and challenger scored on the same holdout, and the gate's decision: the logic of the
evaluation asset, as plain functions."""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import polars as pl
from mlflow import MlflowClient

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.registry.promotion import (
    CHALLENGER,
    CHAMPION,
    Evaluation,
    alias_version,
    gate,
    require_skops,
)
from lakehouse_assets.settings import TrainingSettings
from lakehouse_assets.tables import INFERENCE_LOG_TABLE
from lakehouse_assets.training.dataset import LABEL, TimeSplit, model_input
from lakehouse_assets.training.metrics import classification_metrics


def online_evidence(engine: LakeEngine, challenger: int) -> int:
    """How many logged requests the challenger version scored beside a champion."""
    if engine.version(INFERENCE_LOG_TABLE) is None:
        return 0
    columns = ["challenger_version", "challenger_probability"]
    if not set(columns) <= set(engine.schema(INFERENCE_LOG_TABLE).names):
        return 0  # a log from before rollouts existed
    return (
        engine.read(INFERENCE_LOG_TABLE, columns=columns)
        .filter((pl.col("challenger_version") == challenger) & pl.col("challenger_probability").is_not_null())
        .height
    )


def score(name: str, version: int, holdout: pl.DataFrame, threshold: float) -> dict[str, float]:
    """Metrics of a registered version on the holdout, loaded the way serving loads it."""
    require_skops(f"models:/{name}/{version}")
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    probabilities = np.asarray(model.predict(model_input(holdout)))[:, 1]
    return classification_metrics(holdout[LABEL].cast(pl.Int64).to_numpy(), probabilities, threshold)


def evaluate(
    client: MlflowClient, name: str, split: TimeSplit, settings: TrainingSettings, online_requests: int = 0
) -> Evaluation:
    """Champion and challenger on the same, most recent holdout, and the gate's decision. With
    ``settings.min_online_requests``, a challenger that passes offline also needs that many
    live requests scored in shadow or canary (``online_requests``) before it replaces a
    champion."""
    challenger, champion = alias_version(client, name, CHALLENGER), alias_version(client, name, CHAMPION)
    holdout = split.holdout
    base: dict[str, Any] = {
        "model_name": name,
        "holdout_rows": holdout.height,
        "champion_version": int(champion.version) if champion else None,
        "challenger_version": int(challenger.version) if challenger else None,
    }
    if challenger is None:
        return Evaluation(**base, decision="no_challenger", reason="no challenger to evaluate")
    new = score(name, int(challenger.version), holdout, settings.decision_threshold)
    if champion is None:
        return Evaluation(
            **base, decision="promote", reason="first model: becomes champion", challenger_metrics=new
        )
    if champion.version == challenger.version:
        return Evaluation(
            **base,
            decision="unchanged",
            reason="challenger is the champion",
            challenger_metrics=new,
            champion_metrics=new,
        )
    old = score(name, int(champion.version), holdout, settings.decision_threshold)
    promote, reason = gate(old, new, settings)
    if promote and online_requests < settings.min_online_requests:
        return Evaluation(
            **base,
            decision="awaiting_evidence",
            reason=f"{reason}; but only {online_requests} of the "
            f"{settings.min_online_requests} live requests in shadow or canary "
            "the gate requires (training.min_online_requests)",
            challenger_metrics=new,
            champion_metrics=old,
        )
    return Evaluation(
        **base,
        decision="promote" if promote else "keep",
        reason=reason,
        challenger_metrics=new,
        champion_metrics=old,
    )
