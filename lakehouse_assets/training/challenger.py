"""Train the candidates on the current training set and register the best as the challenger:
the logic of the `return_risk_challenger` asset, as a plain function (the crash harness runs it
too)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.registry.promotion import (
    finish_registration,
    register_challenger,
    version_with_fingerprint,
)
from lakehouse_assets.settings import TrainingSettings
from lakehouse_assets.tables import TRAINING_SET_TABLE
from lakehouse_assets.training.dataset import FEATURES, NotEnoughData
from lakehouse_assets.training.train import TrainingData, TrainingOutcome, fingerprint, train_candidates


def training_data(engine: LakeEngine, version: int | None = None) -> TrainingData:
    """The training set (the current version, or ``version``) with its Delta version and the
    source versions its build recorded."""
    current = engine.version(TRAINING_SET_TABLE)
    if current is None:
        raise ValueError(f"{TRAINING_SET_TABLE} does not exist: materialize training_set first")
    version = current if version is None else version
    # the newest build at or before that version (a later commit may be an erasure's delete)
    commit = next(
        (c for c in engine.history(TRAINING_SET_TABLE) if c["version"] <= version and "source_versions" in c),
        {},
    )
    sources = commit.get("source_versions") or "{}"
    return TrainingData(
        engine.read(TRAINING_SET_TABLE, version=version),
        engine.table_path(TRAINING_SET_TABLE),
        version,
        json.loads(sources) if isinstance(sources, str) else dict(sources),
    )


def lineage_tags(data: TrainingData, window: dict[str, str]) -> dict[str, str]:
    """Registry tags that tie a model version to the data it was trained on (monitoring and
    `lakehouse lineage` read them)."""
    return {
        "training_set": data.path,
        "training_set_version": str(data.version),
        "features": ", ".join(FEATURES),
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
    model_name: str,
    settings: TrainingSettings,
    actor: str,
    log: Callable[[str], Any] = print,
) -> ChallengerResult:
    """Unchanged data and settings: the version trained from them (its registration finished if
    a crash cut it short); else train, and register the best candidate as the challenger."""
    data = training_data(engine)
    key = fingerprint(data, settings)
    existing = version_with_fingerprint(client, model_name, key)
    if existing is not None:
        resumed = finish_registration(client, engine, existing, actor)
        log(
            f"training set v{data.version} already trained: version {existing.version}"
            + ("; its registration was finished" if resumed else "; nothing to do")
        )
        return ChallengerResult(key, existing, resumed=resumed)
    try:
        outcome = train_candidates(data, settings, log=log)
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
            **lineage_tags(data, outcome.split.window()),
        },
        window=outcome.split.window(),
        metrics=best.metrics,
        actor=actor,
    )
    return ChallengerResult(key, version, outcome)
