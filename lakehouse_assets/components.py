"""The data product component: one declaration (`products/<name>/defs.yaml`) becomes the
product's assets, checks, jobs and schedules, grouped under its name.

Per product: `<name>_training_set` (point-in-time, Delta, source versions recorded),
`<name>_challenger` (MLflow runs under the product's experiment, one registered model per
product), `<name>_evaluation` with the `promotion_gate` check, `<name>_champion` (alias
history), and with batch serving `<name>_batch_scores` (gold/<name>_scores) on its schedule.
The assets are thin: the logic is in training/, registry/ and serving/.
"""

import json
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    MaterializeResult,
    MetadataValue,
    ScheduleDefinition,
    asset,
    asset_check,
    define_asset_job,
)

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.features.definitions import build_definitions
from lakehouse_assets.features.pipeline import (
    VIEW_TABLES,
    column_mean,
    write_training_set,
)
from lakehouse_assets.metadata import table_metadata
from lakehouse_assets.monitoring.assets import batch_drift_asset, batch_quality_asset
from lakehouse_assets.product_declarations import resolve
from lakehouse_assets.products.spec import Product, ProductSpec
from lakehouse_assets.registry.promotion import (
    CHALLENGER,
    CHAMPION,
    Evaluation,
    alias_version,
    apply_decision,
    record_evaluation,
)
from lakehouse_assets.resources.feast import FeastResource
from lakehouse_assets.resources.lake import LakeResource
from lakehouse_assets.resources.mlflow import MlflowResource
from lakehouse_assets.serving.batch_scores import score_batch
from lakehouse_assets.settings import get_settings
from lakehouse_assets.tables import ALIAS_HISTORY_TABLE, EVALUATIONS_TABLE, scores_table, training_set_table
from lakehouse_assets.training.challenger import train_challenger, training_data
from lakehouse_assets.training.dataset import NotEnoughData, time_split
from lakehouse_assets.training.evaluation import evaluate, online_evidence

PROMOTION_GATE = "promotion_gate"  # the check every product's evaluation carries


def _actor(context: AssetExecutionContext) -> str:
    return f"dagster run {context.run.run_id}"


def asset_key(product: Product, stage: str) -> AssetKey:
    """The key of one of a product's assets: `<product>_<stage>`."""
    return AssetKey(f"{product.name}_{stage}")


def latest_evaluation(engine: LakeEngine, model_name: str) -> Evaluation:
    """The newest evaluation of ``model_name`` recorded in the model evaluations table."""
    rows = engine.read(EVALUATIONS_TABLE).filter(pl.col("model_name") == model_name).sort("evaluated_at")
    if rows.height == 0:
        raise ValueError(f"no evaluation of {model_name} recorded yet")
    row = rows.row(-1, named=True)
    for key in ("challenger_metrics", "champion_metrics"):
        row[key] = json.loads(row[key])
    return Evaluation(**row)


def _upstream(product: Product) -> list[AssetKey]:
    """The gold marts, silver tables and feature registry a product's training set reads."""
    views = {ref.split(":")[0] for ref in (*product.row_features, *product.line_features)}
    keys = [AssetKey("feature_registry"), AssetKey(product.spec.label.table)]
    keys += [AssetKey(VIEW_TABLES[v].split("/")[1]) for v in sorted(views) if v in VIEW_TABLES]
    if product.spec.features.lines is not None:
        keys.append(AssetKey(product.spec.features.lines.table.replace("/", "_")))
    return list(dict.fromkeys(keys))


def decision_metadata(decided: Evaluation) -> dict[str, Any]:
    """What the evaluation and its gate check show of a decision (-1: no such version)."""
    return {
        "decision": decided.decision,
        "reason": decided.reason,
        "challenger_version": decided.challenger_version or -1,
        "champion_version": decided.champion_version or -1,
    }


def product_assets(product: Product) -> dg.Definitions:
    """Every asset, check, job and schedule of one data product."""
    spec, name = product.spec, product.name
    common: dict[str, Any] = {"group_name": name, "owners": list(spec.owners)}
    model = spec.model_name
    gate = spec.gate

    @asset(
        name=f"{name}_training_set",
        kinds={"feast", "delta"},
        deps=_upstream(product),
        metadata={"table": training_set_table(name), "declaration": product.path},
        description=f"Point-in-time-correct features of {name} ({', '.join(product.features)}) for "
        f"every row of gold {spec.label.table} whose label ({spec.label.column}) is known, joined "
        "as of the row's event time. The commit records the Delta version of every table read, so "
        "the set can be rebuilt exactly by time travel.",
        **common,
    )
    def training_set(
        context: AssetExecutionContext, lake: LakeResource, feast: FeastResource
    ) -> MaterializeResult:
        store, definitions = feast.store(), build_definitions(feast.lake_root)
        engine = lake.engine()
        table, versions, labelled = write_training_set(
            store, engine, definitions, product, lake.training_set_max_rows, log=context.log.info
        )
        context.log.info(f"{name} training set: {labelled:,} labelled rows")
        return MaterializeResult(
            metadata={
                **table_metadata(engine, table),
                "source_delta_versions": MetadataValue.json(versions),
                "label_mean": column_mean(engine, table, spec.label.column),
            }
        )

    families = ", ".join(dict.fromkeys(c.family for c in spec.candidates))

    @asset(
        name=f"{name}_challenger",
        kinds={"mlflow", "scikit-learn"},
        deps=[training_set],
        description=f"Trains the candidate families ({families}) of {name} with their declared "
        "search space on a time-based split, each an MLflow run in the product's experiment, and "
        "registers the best as a new version with the alias `challenger`. Unchanged data and "
        "declaration: nothing is retrained.",
        **common,
    )
    def challenger(
        context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource
    ) -> MaterializeResult:
        mlflow.activate(model)
        result = train_challenger(
            lake.engine(), mlflow.client(), product, _actor(context), log=context.log.info
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
        outcome, version = result.outcome, result.version
        if version is None:  # trained means registered (train_challenger returns both or neither)
            raise RuntimeError(f"training of {result.fingerprint} produced no registered version")
        best = outcome.best
        return MaterializeResult(
            metadata={
                "model_version": int(version.version),
                "retrained": True,
                "fingerprint": result.fingerprint,
                "best_candidate": best.candidate.name,
                "best_run_id": best.run_id,
                "search_run_id": outcome.parent_run_id,
                "candidates": MetadataValue.json({r.candidate.name: r.metrics for r in outcome.runs}),
                "window": MetadataValue.json(outcome.split.window()),
                **{f"holdout_{k}": v for k, v in best.metrics.items()},
            }
        )

    @asset(
        name=f"{name}_evaluation",
        kinds={"mlflow", "delta"},
        deps=[challenger],
        metadata={"table": EVALUATIONS_TABLE},
        description=f"Scores the {name} champion and challenger on the same, most recent holdout "
        "and decides (promote / keep / unchanged); every decision is appended to "
        "ml/model_evaluations.",
        **common,
    )
    def evaluation(
        context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource
    ) -> MaterializeResult:
        engine = lake.engine()
        mlflow.activate(model)
        data = training_data(engine, product)
        current = alias_version(mlflow.client(), model, CHALLENGER)
        online = online_evidence(engine, int(current.version), name) if current else 0
        try:
            split = time_split(data.frame, product)
            decided = evaluate(mlflow.client(), product, split, online_requests=online)
        except NotEnoughData as reason:
            decided = Evaluation(model, None, None, "deferred", str(reason))
        record_evaluation(engine, decided)
        context.log.info(f"decision: {decided.decision} ({decided.reason})")
        return MaterializeResult(
            metadata={
                **decision_metadata(decided),
                "holdout_rows": decided.holdout_rows,
                "online_requests": online,
                "challenger_metrics": MetadataValue.json(decided.challenger_metrics),
                "champion_metrics": MetadataValue.json(decided.champion_metrics),
            }
        )

    guards = ", ".join(f"{m} (tolerance {t})" for m, t in gate.guards.items()) or "none"

    @asset_check(
        asset=evaluation,
        name=PROMOTION_GATE,
        description=f"The promotion gate's decision: a {name} challenger reaches champion only if "
        f"it beats the champion by {gate.margin} on {gate.primary_metric} without regressing the "
        f"guards ({guards})"
        + (f", after {gate.min_online_requests} live requests" if gate.min_online_requests else "")
        + ". A kept challenger is a normal outcome, not a fault: the check fails as a warning with "
        f"the reason, the run succeeds and {name}_champion leaves the champion as it is.",
    )
    def promotion_gate(lake: LakeResource) -> AssetCheckResult:
        decided = latest_evaluation(lake.engine(), model)
        return AssetCheckResult(
            passed=decided.gate_passed,
            severity=AssetCheckSeverity.WARN,
            description=f"{decided.decision}: {decided.reason}",
            metadata=decision_metadata(decided),
        )

    @asset(
        name=f"{name}_champion",
        kinds={"mlflow", "delta"},
        deps=[evaluation],
        metadata={"table": ALIAS_HISTORY_TABLE},
        description=f"Carries out the gate's decision for {name}: moves the `champion` alias, "
        "records the change in ml/alias_history, tags other versions archived and updates the "
        "model card.",
        **common,
    )
    def champion(
        context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource
    ) -> MaterializeResult:
        engine = lake.engine()
        mlflow.activate(model)
        client = mlflow.client()
        decided = latest_evaluation(engine, model)
        window = {}
        if decided.decision in ("promote", "keep"):  # the model card states the data window
            window = time_split(training_data(engine, product).frame, product).window()
        done = apply_decision(client, engine, decided, window, _actor(context))
        context.log.info(done)
        current = alias_version(client, model, CHAMPION)
        waiting = alias_version(client, model, CHALLENGER)
        return MaterializeResult(
            metadata={
                "result": done,
                "champion_version": int(current.version) if current else -1,
                "challenger_version": int(waiting.version) if waiting else -1,
                "champion_uri": f"models:/{model}@{CHAMPION}",
            }
        )

    assets: list[Any] = [training_set, challenger, evaluation, champion]
    retrain = define_asset_job(
        f"{name}_retrain_job",
        selection=AssetSelection.assets(*assets),
        description=f"Rebuild the {name} training set from fresh data, train a challenger, evaluate "
        "it against the champion and promote it only if the gate passes.",
    )
    jobs: list[Any] = [retrain]
    schedules = []
    if spec.serving.batch is not None:

        @asset(
            name=f"{name}_batch_scores",
            kinds={"mlflow", "delta"},
            deps=[champion, *_upstream(product)],
            metadata={"table": scores_table(name)},
            description=f"The {name} champion's predictions for every entity at the newest "
            f"{spec.entity.event_time} of gold {spec.label.table}, with point-in-time features, "
            f"MERGEd into {scores_table(name)} (model version, features' as-of time and the run id "
            "on every row; a rerun replaces its rows).",
            **common,
        )
        def batch_scores(
            context: AssetExecutionContext, lake: LakeResource, feast: FeastResource, mlflow: MlflowResource
        ) -> MaterializeResult:
            engine = lake.engine()
            mlflow.use()
            result = score_batch(
                engine,
                feast.store(),
                build_definitions(feast.lake_root),
                mlflow.client(),
                product,
                context.run.run_id,
            )
            context.log.info(result.note or f"scored {result.rows} rows at {result.scored_time}")
            return MaterializeResult(
                metadata={
                    **table_metadata(engine, scores_table(name)),
                    "scored_rows": result.rows,
                    "model_version": result.model_version or -1,
                    "scored_time": str(result.scored_time),
                    "note": result.note or "-",
                }
            )

        assets += [batch_scores, batch_quality_asset(product), batch_drift_asset(product)]
        scoring = define_asset_job(
            f"{name}_batch_scoring_job",
            selection=AssetSelection.assets(batch_scores),
            description=f"Score every entity of {name} with its champion into {scores_table(name)}.",
        )
        jobs.append(scoring)
        schedules.append(
            ScheduleDefinition(
                name=f"{name}_batch_scoring",
                job=scoring,
                cron_schedule=spec.serving.batch.cron,
                default_status=DefaultScheduleStatus.STOPPED,
                description=f"Batch scoring of {name} ({spec.serving.batch.cron}; start it in the UI).",
            )
        )
    return dg.Definitions(assets=assets, asset_checks=[promotion_gate], jobs=jobs, schedules=schedules)


class DataProduct(dg.Component):
    """A data product declared in YAML (`type: lakehouse_assets.components.DataProduct`, its
    `attributes` a ProductSpec): the platform builds its training set, training, evaluation,
    gated promotion, batch scoring and monitors. `build_definitions` loads every declaration
    with the settings; Dagster's component loader can load one too."""

    def __init__(self, spec: ProductSpec, path: str = "defs.yaml"):
        self.spec, self.path = spec, path

    @classmethod
    def get_model_cls(cls) -> type[ProductSpec]:
        return ProductSpec

    @classmethod
    def load(cls, attributes: Any, context: dg.ComponentLoadContext) -> "DataProduct":
        spec = (
            attributes
            if isinstance(attributes, ProductSpec)
            else ProductSpec.model_validate(attributes or {})
        )
        return cls(spec, str(Path(getattr(context, "path", "") or ".") / "defs.yaml"))

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return product_assets(resolve(self.spec, self.path, get_settings().lake_root))
