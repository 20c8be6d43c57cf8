"""Champion/challenger in the MLflow registry.

The best candidate of a training run becomes a new version with the alias ``challenger``. An
evaluation scores champion and challenger on the same, most recent holdout; the gate promotes
the challenger to ``champion`` only if it beats the champion by a margin on the primary metric
without regressing the guard metrics (the first model becomes champion). Every alias change is
appended to a Delta table; versions that are neither champion nor challenger are tagged
archived; each version carries a model card.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import mlflow
import polars as pl
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.products.spec import ProductSpec
from lakehouse_assets.tables import ALIAS_HISTORY_TABLE, EVALUATIONS_TABLE

CHAMPION, CHALLENGER = "champion", "challenger"
ALIAS_HISTORY_SCHEMA = pl.Schema(
    {
        "model_name": pl.String(),
        "alias": pl.String(),
        "from_version": pl.Int64(),
        "to_version": pl.Int64(),
        "changed_at": pl.Datetime("us"),
        "changed_by": pl.String(),
        "reason": pl.String(),
        "metrics": pl.String(),
    }
)
EVALUATIONS_SCHEMA = pl.Schema(
    {
        "model_name": pl.String(),
        "challenger_version": pl.Int64(),
        "champion_version": pl.Int64(),
        "decision": pl.String(),
        "reason": pl.String(),
        "challenger_metrics": pl.String(),
        "champion_metrics": pl.String(),
        "holdout_rows": pl.Int64(),
        "evaluated_at": pl.Datetime("us"),
    }
)


def alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version an alias of the registered model points to, or None."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def version_with_fingerprint(client: MlflowClient, name: str, key: str) -> ModelVersion | None:
    """The version already trained from exactly this data and these settings, if any."""
    found = client.search_model_versions(f"name = '{name}' and tag.fingerprint = '{key}'")
    return found[0] if found else None


def record_alias_change(
    engine: LakeEngine,
    name: str,
    alias: str,
    old: int | None,
    new: int | None,
    actor: str,
    reason: str,
    metrics: dict[str, Any] | None = None,
) -> None:
    """Append one alias move (from, to, who, why, metrics) to the alias history table."""
    row = pl.DataFrame(
        [
            {
                "model_name": name,
                "alias": alias,
                "from_version": old,
                "to_version": new,
                "changed_at": datetime.now(UTC).replace(tzinfo=None),
                "changed_by": actor,
                "reason": reason,
                "metrics": json.dumps(metrics or {}, sort_keys=True),
            }
        ],
        schema=ALIAS_HISTORY_SCHEMA,
    )
    engine.append(ALIAS_HISTORY_TABLE, row)


def last_recorded_version(engine: LakeEngine, name: str, alias: str) -> int | None:
    """The version the alias history last recorded for the alias (None: none or removed)."""
    if not engine.exists(ALIAS_HISTORY_TABLE):
        return None
    rows = (
        engine.read(ALIAS_HISTORY_TABLE)
        .filter((pl.col("model_name") == name) & (pl.col("alias") == alias))
        .sort("changed_at")
    )
    return None if rows.height == 0 else rows["to_version"][-1]


def move_alias(
    client: MlflowClient,
    engine: LakeEngine,
    name: str,
    alias: str,
    version: int | None,
    actor: str,
    reason: str,
    metrics: dict[str, Any] | None = None,
) -> None:
    """Point ``alias`` at ``version`` (None: remove it) and append the change to the history."""
    current = alias_version(client, name, alias)
    old = int(current.version) if current else None
    if old == version:  # moved already; recorded too, unless a crash came in between
        recorded = last_recorded_version(engine, name, alias)
        if recorded != version:
            record_alias_change(
                engine,
                name,
                alias,
                recorded,
                version,
                actor,
                f"{reason} (recorded after an interruption)",
                metrics,
            )
        return
    if version is None:
        client.delete_registered_model_alias(name, alias)
    else:
        client.set_registered_model_alias(name, alias, str(version))
    record_alias_change(engine, name, alias, old, version, actor, reason, metrics)


def model_card(
    version: ModelVersion, split_window: dict[str, str], metrics: dict[str, float], decision: str
) -> str:
    """A version's model card in Markdown: lineage, data window, features, metrics and decision."""
    tags = version.tags
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items()))
    return f"""# Model card: {version.name} version {version.version}

- Candidate: {tags.get("candidate", "?")}
- Training run: {version.run_id}
- Training set: {tags.get("training_set", "?")} (Delta version {tags.get("training_set_version", "?")})
- Source tables (Delta versions): {tags.get("source_delta_versions", "{}")}
- Data window: trained on rows {split_window.get("train_from")} .. {split_window.get("train_to")};
  validated on the newest rows {split_window.get("holdout_from")} .. {split_window.get("holdout_to")}
  (time-based split; rows younger than the label window left out)
- Features: {tags.get("features", "?")}
- Task: {tags.get("task", "?")}; output: {tags.get("description", "?")}

## Holdout metrics

| metric | value |
|---|---|
{rows}

## Decision

{decision}
"""


def write_model_card(
    client: MlflowClient,
    version: ModelVersion,
    window: dict[str, str],
    metrics: dict[str, float],
    decision: str,
) -> None:
    """Log the model card to the version's run (MLflow shows it with the model)."""
    if version.run_id is None:
        raise ValueError(f"{version.name} version {version.version} has no run for its card")
    client.log_text(version.run_id, model_card(version, window, metrics, decision), "model_card.md")


REGISTERED_TAG = "registration"  # "pending" until card, alias and archiving are done


def register_challenger(
    client: MlflowClient,
    engine: LakeEngine,
    name: str,
    model_uri: str,
    run_id: str,
    tags: dict[str, str],
    window: dict[str, str],
    metrics: dict[str, float],
    actor: str,
) -> ModelVersion:
    """A new version of ``name`` from the best run, aliased ``challenger``, with its card. The
    version is tagged pending until the last step: a crash in between leaves it pending, and
    ``finish_registration`` (the next run) completes it."""
    version = mlflow.register_model(
        model_uri,
        name,
        tags={
            **tags,
            REGISTERED_TAG: "pending",
            "window": json.dumps(window, sort_keys=True),
            "metrics": json.dumps(metrics, sort_keys=True),
        },
    )
    version = client.get_model_version(name, version.version)
    _complete(client, engine, version, window, metrics, actor, f"best candidate of run {run_id}")
    return client.get_model_version(name, version.version)


def _complete(
    client: MlflowClient,
    engine: LakeEngine,
    version: ModelVersion,
    window: dict[str, str],
    metrics: dict[str, float],
    actor: str,
    reason: str,
) -> None:
    write_model_card(
        client,
        version,
        window,
        metrics,
        "Registered as challenger; awaiting evaluation against the champion.",
    )
    move_alias(client, engine, version.name, CHALLENGER, int(version.version), actor, reason, metrics)
    archive_others(client, version.name)  # a challenger replaced before evaluation is archived
    client.set_model_version_tag(version.name, version.version, REGISTERED_TAG, "complete")


def finish_registration(client: MlflowClient, engine: LakeEngine, version: ModelVersion, actor: str) -> bool:
    """Complete a registration a crash cut short (card, challenger alias, archiving); returns
    whether there was anything to finish."""
    if version.tags.get(REGISTERED_TAG) != "pending":  # complete (or from before the tag)
        return False
    _complete(
        client,
        engine,
        version,
        json.loads(version.tags.get("window", "{}")),
        json.loads(version.tags.get("metrics", "{}")),
        actor,
        f"registration of version {version.version} finished after an interruption",
    )
    return True


@dataclass
class Evaluation:
    """Champion and challenger scored on one holdout, and the gate's decision with its reason."""

    model_name: str
    challenger_version: int | None
    champion_version: int | None
    decision: str  # promote | keep | unchanged | no_challenger | deferred
    reason: str
    challenger_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)
    holdout_rows: int = 0
    evaluated_at: datetime = field(default_factory=lambda: datetime.now(UTC).replace(tzinfo=None))

    @property
    def gate_passed(self) -> bool:
        """The gate blocks a challenger that is not good enough, or not yet proven online."""
        return self.decision not in ("keep", "awaiting_evidence")

    def row(self) -> dict[str, Any]:
        values = asdict(self)
        for key in ("challenger_metrics", "champion_metrics"):
            values[key] = json.dumps(values[key], sort_keys=True)
        return values


def gate(champion: dict[str, float], challenger: dict[str, float], spec: ProductSpec) -> tuple[bool, str]:
    """Promote only if the primary metric improves by at least the margin (in its direction)
    and no guard metric gets worse by more than its tolerance."""
    primary, margin = spec.gate.primary_metric, spec.gate.margin

    def gain(metric: str) -> float:  # positive: the challenger is better
        difference = challenger[metric] - champion[metric]
        return difference if spec.better(metric) == "max" else -difference

    if gain(primary) < margin:
        return False, (
            f"{primary} {challenger[primary]:.4f} vs champion {champion[primary]:.4f}: gain "
            f"{gain(primary):+.4f} below the margin {margin}"
        )
    for metric, tolerance in spec.gate.guards.items():
        if -gain(metric) > tolerance:
            return False, (
                f"guard {metric} regressed: {challenger[metric]:.4f} vs champion "
                f"{champion[metric]:.4f} (tolerance {tolerance})"
            )
    return True, f"{primary} gain {gain(primary):+.4f} >= margin {margin}; guards hold"


class UntrustedModelError(RuntimeError):
    """A registered model is serialized in a format that runs code when loaded (pickle)."""


def require_skops(model_uri: str) -> None:
    """Refuse to load a scikit-learn model that is not serialized with skops: unpickling runs
    whatever code the file holds; skops loads only the types the platform trusts."""
    flavor = mlflow.models.get_model_info(model_uri).flavors.get("sklearn", {})
    found = flavor.get("serialization_format", "no scikit-learn flavor")
    if found != "skops":
        raise UntrustedModelError(
            f"{model_uri} is serialized as {found!r}; the platform loads "
            "skops models only (a pickle runs arbitrary code when loaded)"
        )


def record_evaluation(engine: LakeEngine, evaluation: Evaluation) -> None:
    """Append an evaluation to the model evaluations table."""
    engine.append(EVALUATIONS_TABLE, pl.DataFrame([evaluation.row()], schema=EVALUATIONS_SCHEMA))


def apply_decision(
    client: MlflowClient, engine: LakeEngine, evaluation: Evaluation, window: dict[str, str], actor: str
) -> str:
    """Carry out the gate's decision in the registry; returns what was done."""
    name, version = evaluation.model_name, evaluation.challenger_version
    if version is None or evaluation.decision not in ("promote", "keep"):
        return evaluation.reason
    challenger = client.get_model_version(name, str(version))
    if evaluation.decision == "keep":
        client.set_model_version_tag(name, str(version), "gate_decision", "kept: " + evaluation.reason)
        write_model_card(
            client,
            challenger,
            window,
            evaluation.challenger_metrics,
            f"Not promoted; stays challenger. {evaluation.reason}.",
        )
        return f"version {version} stays challenger: {evaluation.reason}"
    move_alias(
        client, engine, name, CHAMPION, version, actor, evaluation.reason, evaluation.challenger_metrics
    )
    move_alias(client, engine, name, CHALLENGER, None, actor, f"promoted to {CHAMPION}")
    client.set_model_version_tag(name, str(version), "gate_decision", "promoted: " + evaluation.reason)
    write_model_card(
        client,
        challenger,
        window,
        evaluation.challenger_metrics,
        f"Promoted to champion. {evaluation.reason}.",
    )
    archive_others(client, name)
    return f"version {version} promoted to champion"


def archive_others(client: MlflowClient, name: str) -> list[int]:
    """Tag every version that holds no alias as archived (MLflow's stages are deprecated)."""
    live = {int(v.version) for v in (alias_version(client, name, a) for a in (CHAMPION, CHALLENGER)) if v}
    archived = []
    for version in client.search_model_versions(f"name = '{name}'"):
        number = int(version.version)
        tagged = version.tags.get("lifecycle")
        wanted = "live" if number in live else "archived"
        if tagged != wanted:
            client.set_model_version_tag(name, version.version, "lifecycle", wanted)
        if wanted == "archived":
            archived.append(number)
    return sorted(archived)


class RollbackError(ValueError):
    """The champion cannot be rolled back as asked (the message says why)."""


ROLLED_BACK_TAG = "rolled_back"


def rollback_target(client: MlflowClient, engine: LakeEngine, name: str, current: int) -> int:
    """The champion before the current one: the newest earlier champion in the alias history
    that was not itself rolled back."""
    history = (
        engine.read(ALIAS_HISTORY_TABLE)
        .filter(
            (pl.col("model_name") == name)
            & (pl.col("alias") == CHAMPION)
            & pl.col("to_version").is_not_null()
        )
        .sort("changed_at")
        if engine.version(ALIAS_HISTORY_TABLE) is not None
        else pl.DataFrame()
    )
    rolled_back = {
        int(v.version) for v in client.search_model_versions(f"name = '{name}'") if ROLLED_BACK_TAG in v.tags
    }
    for version in reversed(history["to_version"].to_list() if history.height else []):
        if version != current and version not in rolled_back:
            return int(version)
    raise RollbackError(
        f"{name} has had no champion before version {current} to roll back to "
        "(see ml/alias_history); name one with --to"
    )


def rollback(
    client: MlflowClient,
    engine: LakeEngine,
    name: str,
    actor: str,
    reason: str,
    to_version: int | None = None,
) -> tuple[int, int]:
    """Move ``champion`` back to the previous champion (or ``to_version``), recorded in the alias
    history; the replaced version is tagged rolled back. Returns (from, to)."""
    found = alias_version(client, name, CHAMPION)
    if found is None:
        raise RollbackError(f"{name} has no champion to roll back")
    current = int(found.version)
    target = to_version if to_version is not None else rollback_target(client, engine, name, current)
    if target == current:
        raise RollbackError(f"version {target} is already the champion")
    try:
        client.get_model_version(name, str(target))
    except MlflowException as error:
        raise RollbackError(f"{name} has no version {target}") from error
    require_skops(f"models:/{name}/{target}")  # the service would refuse to load it
    client.set_model_version_tag(name, str(current), ROLLED_BACK_TAG, reason)
    with contextlib.suppress(MlflowException):  # rolling forward again to a rolled-back one
        client.delete_model_version_tag(name, str(target), ROLLED_BACK_TAG)
    move_alias(client, engine, name, CHAMPION, target, actor, f"rollback from version {current}: {reason}")
    archive_others(client, name)
    return current, target
