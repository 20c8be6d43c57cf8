"""Champion and challenger scored on the same holdout, and the gate's decision: the logic of the
evaluation asset, as plain functions."""

from __future__ import annotations

from typing import Any

import mlflow
import polars as pl
from mlflow import MlflowClient

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.products.spec import Product
from lakehouse_assets.registry.promotion import (
    CHALLENGER,
    CHAMPION,
    Evaluation,
    alias_version,
    gate,
    require_skops,
)
from lakehouse_assets.served_log import read_served
from lakehouse_assets.training.dataset import TimeSplit, model_input
from lakehouse_assets.training.metrics import task_metrics
from lakehouse_assets.training.train import labels, served_predictions


def online_evidence(engine: LakeEngine, challenger: int, product: str | None = None) -> int:
    """How many logged requests the challenger version (of ``product``) scored beside a champion."""
    frame = read_served(engine, product, ["challenger_version", "challenger_prediction"])
    if not {"challenger_version", "challenger_prediction"} <= set(frame.columns):
        return 0  # nothing served yet, or a log from before rollouts existed
    return frame.filter(
        (pl.col("challenger_version") == challenger) & pl.col("challenger_prediction").is_not_null()
    ).height


def score(product: Product, version: int, holdout: pl.DataFrame) -> dict[str, float]:
    """Metrics of a registered version on the holdout, loaded the way serving loads it, with
    the feature columns that version was trained on."""
    uri = f"models:/{product.spec.model_name}/{version}"
    require_skops(uri)
    model = mlflow.pyfunc.load_model(uri)
    columns = [c.name for c in model.metadata.get_input_schema().inputs]
    prediction = served_predictions(model, model_input(holdout, product, columns), product.spec.task)
    return task_metrics(
        product.spec.task, labels(holdout, product), prediction, product.spec.decision_threshold
    )


def evaluate(
    client: MlflowClient, product: Product, split: TimeSplit, online_requests: int = 0
) -> Evaluation:
    """Champion and challenger on the same, most recent holdout, and the gate's decision. With
    ``gate.min_online_requests``, a challenger that passes offline also needs that many live
    requests scored in shadow or canary (``online_requests``) before it replaces a champion."""
    name, spec = product.spec.model_name, product.spec
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
    new = score(product, int(challenger.version), holdout)
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
    old = score(product, int(champion.version), holdout)
    promote, reason = gate(old, new, spec)
    if promote and online_requests < spec.gate.min_online_requests:
        return Evaluation(
            **base,
            decision="awaiting_evidence",
            reason=f"{reason}; but only {online_requests} of the "
            f"{spec.gate.min_online_requests} live requests in shadow or canary "
            "the gate requires (gate.min_online_requests)",
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
