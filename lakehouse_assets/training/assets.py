"""Training, evaluation and promotion of the return-risk model as Dagster assets (thin: the
logic is in training/ and registry/)."""

import json

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.metadata import OWNERS
from lakehouse_assets.registry.promotion import (
    CHALLENGER,
    CHAMPION,
    Evaluation,
    alias_version,
    apply_decision,
    record_evaluation,
)
from lakehouse_assets.resources.lake import LakeResource
from lakehouse_assets.resources.mlflow import MlflowResource
from lakehouse_assets.tables import ALIAS_HISTORY_TABLE, EVALUATIONS_TABLE
from lakehouse_assets.training.challenger import train_challenger, training_data
from lakehouse_assets.training.dataset import NotEnoughData, time_split
from lakehouse_assets.training.evaluation import evaluate, online_evidence


def _actor(context: AssetExecutionContext) -> str:
    return f"dagster run {context.run.run_id}"


@asset(
    group_name="ml",
    kinds={"mlflow", "scikit-learn"},
    owners=OWNERS,
    deps=[AssetKey("training_set")],
    description="Trains the candidate families (logistic regression, random forest, LightGBM) "
    "with a small search on a time-based split, each an MLflow run, and registers the best as "
    "a new version of the model with the alias `challenger`. Unchanged data and settings: "
    "nothing is retrained.",
)
def return_risk_challenger(
    context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource
) -> MaterializeResult:
    mlflow.activate()
    result = train_challenger(
        lake.engine(),
        mlflow.client(),
        mlflow.model_name,
        mlflow.training,
        _actor(context),
        log=context.log.info,
    )
    if result.outcome is None:  # unchanged data (or too little of it): nothing trained
        return MaterializeResult(
            metadata={
                "retrained": False,
                "fingerprint": result.fingerprint,
                "resumed": result.resumed,
                **({"model_version": int(result.version.version)} if result.version else {}),
                **({"not_trained": result.not_trained} if result.not_trained else {}),
            }
        )
    outcome, version, key = result.outcome, result.version, result.fingerprint
    if version is None:  # trained means registered (train_challenger returns both or neither)
        raise RuntimeError(f"training of {key} produced no registered version")
    best = outcome.best
    return MaterializeResult(
        metadata={
            "model_version": int(version.version),
            "retrained": True,
            "fingerprint": key,
            "best_candidate": best.candidate.name,
            "best_run_id": best.run_id,
            "search_run_id": outcome.parent_run_id,
            "candidates": MetadataValue.json({r.candidate.name: r.metrics for r in outcome.runs}),
            "window": MetadataValue.json(outcome.split.window()),
            **{f"holdout_{k}": v for k, v in best.metrics.items()},
        }
    )


@asset(
    group_name="ml",
    kinds={"mlflow", "delta"},
    owners=OWNERS,
    deps=[return_risk_challenger],
    metadata={"table": EVALUATIONS_TABLE},
    description="Scores champion and challenger on the same, most recent holdout and decides "
    "(promote / keep / unchanged); every decision is appended to ml/model_evaluations.",
)
def return_risk_evaluation(
    context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource
) -> MaterializeResult:
    settings = mlflow.training
    engine = lake.engine()
    mlflow.activate()
    data = training_data(engine)
    challenger = alias_version(mlflow.client(), mlflow.model_name, CHALLENGER)
    online = online_evidence(engine, int(challenger.version)) if challenger else 0
    try:
        split = time_split(data.frame, settings.holdout_fraction, settings.label_window_days)
        evaluation = evaluate(mlflow.client(), mlflow.model_name, split, settings, online_requests=online)
    except NotEnoughData as reason:
        evaluation = Evaluation(mlflow.model_name, None, None, "deferred", str(reason))
    record_evaluation(engine, evaluation)
    context.log.info(f"decision: {evaluation.decision} ({evaluation.reason})")
    return MaterializeResult(
        metadata={
            "decision": evaluation.decision,
            "reason": evaluation.reason,
            "challenger_version": evaluation.challenger_version or -1,
            "champion_version": evaluation.champion_version or -1,
            "holdout_rows": evaluation.holdout_rows,
            "online_requests": online,
            "challenger_metrics": MetadataValue.json(evaluation.challenger_metrics),
            "champion_metrics": MetadataValue.json(evaluation.champion_metrics),
        }
    )


def latest_evaluation(engine: LakeEngine) -> Evaluation:
    """The newest evaluation recorded in the model evaluations table."""
    row = engine.read(EVALUATIONS_TABLE).sort("evaluated_at").row(-1, named=True)
    for key in ("challenger_metrics", "champion_metrics"):
        row[key] = json.loads(row[key])
    return Evaluation(**row)


@asset_check(
    asset=return_risk_evaluation,
    description="The promotion gate's decision: a challenger reaches champion only if it "
    "beats the champion by the configured margin on ROC AUC without regressing log loss "
    "or calibration (and, when required, after enough live requests). A kept challenger "
    "is a normal outcome, not a fault: the check fails as a warning with the reason, the "
    "run succeeds and return_risk_champion leaves the champion as it is.",
)
def promotion_gate(lake: LakeResource) -> AssetCheckResult:
    evaluation = latest_evaluation(lake.engine())
    return AssetCheckResult(
        passed=evaluation.gate_passed,
        severity=AssetCheckSeverity.WARN,
        description=f"{evaluation.decision}: {evaluation.reason}",
        metadata={
            "decision": evaluation.decision,
            "reason": evaluation.reason,
            "challenger_version": evaluation.challenger_version or -1,
            "champion_version": evaluation.champion_version or -1,
        },
    )


@asset(
    group_name="ml",
    kinds={"mlflow", "delta"},
    owners=OWNERS,
    deps=[return_risk_evaluation],
    metadata={"table": ALIAS_HISTORY_TABLE},
    description="Carries out the gate's decision: moves the `champion` alias, records the "
    "change in ml/alias_history, tags other versions archived and updates the model card.",
)
def return_risk_champion(
    context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource
) -> MaterializeResult:
    settings = mlflow.training
    engine = lake.engine()
    mlflow.activate()
    client = mlflow.client()
    evaluation = latest_evaluation(engine)
    window = {}
    if evaluation.decision in ("promote", "keep"):  # the model card states the data window
        window = time_split(
            training_data(engine).frame, settings.holdout_fraction, settings.label_window_days
        ).window()
    done = apply_decision(client, engine, evaluation, window, _actor(context))
    context.log.info(done)
    champion = alias_version(client, mlflow.model_name, CHAMPION)
    challenger = alias_version(client, mlflow.model_name, CHALLENGER)
    return MaterializeResult(
        metadata={
            "result": done,
            "champion_version": int(champion.version) if champion else -1,
            "challenger_version": int(challenger.version) if challenger else -1,
            "champion_uri": f"models:/{mlflow.model_name}@{CHAMPION}",
        }
    )


ML_ASSETS = [return_risk_challenger, return_risk_evaluation, return_risk_champion]
ML_CHECKS = [promotion_gate]
