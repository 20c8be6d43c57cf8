"""Train a product's candidates on its current training set and register the best as the
challenger: the logic of the `<product>_challenger` asset, as a plain function (the crash
harness runs it too)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.products.spec import Product
from lakehouse_assets.registry.promotion import (
    finish_registration,
    register_challenger,
    version_with_fingerprint,
)
from lakehouse_assets.tables import training_set_table
from lakehouse_assets.training.dataset import NotEnoughData
from lakehouse_assets.training.train import TrainingData, TrainingOutcome, fingerprint, train_candidates


def training_data(engine: LakeEngine, product: Product, version: int | None = None) -> TrainingData:
    """The product's training set (the current version, or ``version``) with its Delta version
    and the source versions its build recorded."""
    table = training_set_table(product.name)
    current = engine.version(table)
    if current is None:
        raise ValueError(f"{table} does not exist: materialize {product.name}_training_set first")
    version = current if version is None else version
    # the newest build at or before that version (a later commit may be an erasure's delete)
    commit = next(
        (c for c in engine.history(table) if c["version"] <= version and "source_versions" in c),
        {},
    )
    sources = commit.get("source_versions") or "{}"
    return TrainingData(
        engine.read(table, version=version),
        engine.table_path(table),
        version,
        json.loads(sources) if isinstance(sources, str) else dict(sources),
    )


def lineage_tags(data: TrainingData, window: dict[str, str], product: Product) -> dict[str, str]:
    """Registry tags that tie a model version to the data and the feature specification it was
    trained with (serving, monitoring and `lakehouse lineage` read them)."""
    return {
        "product": product.name,
        "task": product.spec.task,
        "description": product.spec.description,
        "training_set": data.path,
        "training_set_version": str(data.version),
        "features": ", ".join(product.features),
        "feature_spec": json.dumps(product.feature_spec(), sort_keys=True),
        "source_delta_versions": json.dumps(data.source_versions, sort_keys=True),
        **{f"window_{k}": v for k, v in window.items()},
    }


@dataclass
class ChallengerResult:
    """What a challenger training did: the data fingerprint, the version registered or why nothing was
    trained."""

    fingerprint: str
    version: ModelVersion | None = None
    outcome: TrainingOutcome | None = None  # None: nothing was trained
    not_trained: str = ""
    resumed: bool = False  # a registration cut short earlier was finished


def train_challenger(
    engine: LakeEngine,
    client: MlflowClient,
    product: Product,
    actor: str,
    log: Callable[[str], Any] = print,
) -> ChallengerResult:
    """Unchanged data and settings: the version trained from them (its registration finished if
    a crash cut it short); else train, and register the best candidate as the challenger."""
    data = training_data(engine, product)
    key = fingerprint(data, product)
    model_name = product.spec.model_name
    existing = version_with_fingerprint(client, model_name, key)
    if existing is not None:
        resumed = finish_registration(client, engine, existing, actor)
        log(
            f"training set v{data.version} already trained: version {existing.version}"
            + ("; its registration was finished" if resumed else "; nothing to do")
        )
        return ChallengerResult(key, existing, resumed=resumed)
    try:
        outcome = train_candidates(data, product, log=log)
    except NotEnoughData as reason:
        log(f"not trained: {reason}")
        return ChallengerResult(key, not_trained=str(reason))
    best = outcome.best
    version = register_challenger(
        client,
        engine,
        model_name,
        best.model_uri,
        best.run_id,
        tags={
            "fingerprint": key,
            "candidate": best.candidate.name,
            **lineage_tags(data, outcome.split.window(), product),
        },
        window=outcome.split.window(),
        metrics=best.metrics,
        actor=actor,
    )
    return ChallengerResult(key, version, outcome)
