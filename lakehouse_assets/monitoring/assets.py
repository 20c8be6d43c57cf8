"""Monitoring assets (group `monitoring`): drift, model quality and system health, each with an
asset check. A failing check alerts through the notifier; the retrain sensor reads the
monitoring tables they append to."""

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    asset,
)

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.metadata import OWNERS
from lakehouse_assets.monitoring import monitors
from lakehouse_assets.monitoring.monitors import Champion, MonitorOutcome
from lakehouse_assets.monitoring.online import online_comparison as compare_online
from lakehouse_assets.monitoring.results import ONLINE_KINDS
from lakehouse_assets.products.spec import Product
from lakehouse_assets.registry.promotion import CHALLENGER, alias_version
from lakehouse_assets.registry.promotion import CHAMPION as CHAMPION_ALIAS
from lakehouse_assets.resources.lake import LakeResource
from lakehouse_assets.resources.mlflow import MlflowResource
from lakehouse_assets.resources.monitoring import AlertNotifier, MonitoringResource
from lakehouse_assets.streaming.assets import CHECK as STREAM_LAG_CHECK
from lakehouse_assets.tables import (
    DRIFT_TABLE,
    HEALTH_TABLE,
    INFERENCE_LOG_TABLE,
    ONLINE_COMPARISON_TABLE,
    QUALITY_TABLE,
)

log = logging.getLogger(__name__)
INFERENCE_LOG = AssetSpec(
    "inference_log",
    group_name="serving",
    kinds={"delta", "fastapi"},
    owners=OWNERS,
    description="lake/serving/inference_log: every prediction of `lakehouse serve` (written by "
    "the service, not by Dagster).",
    metadata={"table": INFERENCE_LOG_TABLE},
)


def product_alerts(product: Product, alerts: AlertNotifier) -> AlertNotifier:
    """Where ``product``'s alerts go: the webhook in its declared environment variable
    (monitoring.alert_webhook_env), else the platform's."""
    env = product.spec.monitoring.alert_webhook_env
    url = os.environ.get(env, "").strip() if env else ""
    if env and not url:
        log.warning("%s: %s is not set; alerting through the platform's webhook", product.name, env)
    return AlertNotifier(webhook_url=url, timeout_seconds=alerts.timeout_seconds) if url else alerts


def _report(
    context: AssetExecutionContext,
    check: str,
    outcome: MonitorOutcome,
    alerts: AlertNotifier,
    what: str,
    product: Product | None = None,
):
    """The materialization and the check result of one monitor run; a failure alerts (the
    product's owners named, through its own webhook when it declares one)."""
    metadata: dict[str, Any] = {
        "note": outcome.note or "-",
        "skipped": outcome.passed is None,
        "summary": MetadataValue.json(outcome.summary),
    }
    for source, path in outcome.reports.items():
        metadata[f"report_{source}"] = MetadataValue.path(str(path))
    yield MaterializeResult(metadata=metadata)
    if outcome.passed is False:
        owners = f"\nowners: {', '.join(product.spec.owners)}" if product else ""
        (product_alerts(product, alerts) if product else alerts).send(
            f"{context.asset_key.to_user_string()}: {check} failed",
            f"{what}\n{outcome.summary}\nreports: {', '.join(map(str, outcome.reports.values()))}{owners}",
        )
    yield AssetCheckResult(
        check_name=check,
        passed=outcome.passed is not False,
        description=f"skipped: {outcome.note}" if outcome.passed is None else what,
        metadata={"summary": MetadataValue.json(outcome.summary)},
    )


def _with_champion(
    context: AssetExecutionContext,
    mlflow: MlflowResource,
    product: Product,
    run: Callable[[Champion], MonitorOutcome],
) -> MonitorOutcome:
    model = monitors.champion(mlflow.client(), product.spec.model_name)
    if model is None:
        return MonitorOutcome(None, note=f"no {product.spec.model_name}@champion yet")
    mlflow.activate(product.spec.model_name)
    context.log.info(f"monitoring {model.name} v{model.version}")
    return run(model)


def _spec(name: str, asset: str, description: str) -> AssetCheckSpec:
    return AssetCheckSpec(name, asset=asset, description=description)


@dataclass(frozen=True)
class MonitorSpec:
    """How one champion monitor appears in Dagster: asset and check, what it reads and writes."""

    name: str
    check: str
    check_description: str
    description: str
    what: str  # the alert's one-line subject
    deps: list[AssetKey | AssetSpec]
    table: str
    group: str = "monitoring"
    kinds: frozenset[str] = frozenset({"evidently", "delta"})
    owners: tuple[str, ...] = tuple(OWNERS)


Run = Callable[[LakeEngine, Champion, MonitoringResource], MonitorOutcome]


def champion_monitor(product: Product, spec: MonitorSpec, run: Run) -> Any:
    """The asset (with its check) of a monitor of ``product``'s champion: ``run`` judges it;
    skipped before the first promotion; a failure alerts."""

    @asset(
        name=spec.name,
        group_name=spec.group,
        kinds=set(spec.kinds),
        owners=list(spec.owners),
        deps=spec.deps,
        metadata={"table": spec.table},
        check_specs=[AssetCheckSpec(spec.check, asset=spec.name, description=spec.check_description)],
        description=spec.description,
    )
    def monitor(
        context: AssetExecutionContext,
        lake: LakeResource,
        mlflow: MlflowResource,
        monitoring: MonitoringResource,
        alerts: AlertNotifier,
    ):
        engine = lake.engine()
        outcome = _with_champion(context, mlflow, product, lambda model: run(engine, model, monitoring))
        yield from _report(context, spec.check, outcome, alerts, spec.what, product)

    return monitor


def monitoring_assets(product: Product, prefix: str = "") -> list[Any]:
    """The monitors of an online product's champion (drift, quality, online comparison), named
    ``<prefix><monitor>``."""
    names = {kind: f"{prefix}{kind}" for kind in ONLINE_KINDS}
    training_set = AssetKey(f"{product.name}_training_set")
    champion = AssetKey(f"{product.name}_champion")  # the model they watch
    label_table = AssetKey(product.spec.label.table)
    feature_drift = champion_monitor(
        product,
        MonitorSpec(
            names["feature_drift"],
            "no_dataset_drift",
            f"The served {product.name} features (and the newest gold rows) have not drifted from "
            "the champion's training data (Evidently, share of drifted columns below "
            f"{product.spec.monitoring.drift_share}).",
            f"Evidently data drift of the {product.name} traffic since the last check (inference "
            "log) and of the newest gold rows against the champion's training data; per-column "
            "scores to lake/monitoring/drift_metrics, HTML reports under $LAKEHOUSE_HOME/monitoring.",
            "dataset drift of the model's inputs",
            [INFERENCE_LOG, training_set, champion, label_table],
            DRIFT_TABLE,
        ),
        lambda engine, model, monitoring: monitors.feature_drift(
            engine, model, product, monitoring.settings, monitoring.reports, names["feature_drift"]
        ),
    )
    prediction_drift = champion_monitor(
        product,
        MonitorSpec(
            names["prediction_drift"],
            "no_prediction_drift",
            f"The served {product.name} predictions have not drifted from the champion's "
            "predictions on its training data.",
            f"Drift of the {product.name} champion's output distribution (Evidently).",
            "drift of the model's predictions",
            [INFERENCE_LOG, training_set, champion],
            DRIFT_TABLE,
        ),
        lambda engine, model, monitoring: monitors.prediction_drift(
            engine, model, product, monitoring.settings, monitoring.reports, names["prediction_drift"]
        ),
    )
    model_quality = champion_monitor(
        product,
        MonitorSpec(
            names["model_quality"],
            "quality_above_floor",
            f"On labelled live predictions the {product.name} champion's {product.quality_metric} "
            "is within the floor and within the allowed drop of its holdout value.",
            f"Quality of the {product.name} champion on its live predictions whose label "
            f"({product.label}) is known; to lake/monitoring/model_quality.",
            "model quality on recent labels",
            [INFERENCE_LOG, champion, label_table],
            QUALITY_TABLE,
        ),
        lambda engine, model, monitoring: monitors.model_quality(
            engine, model, product, monitoring.settings, monitoring.reports, names["model_quality"]
        ),
    )

    @asset(
        name=names["online_comparison"],
        group_name="monitoring",
        kinds={"delta"},
        owners=OWNERS,
        deps=[INFERENCE_LOG, champion, label_table],
        metadata={"table": ONLINE_COMPARISON_TABLE},
        check_specs=[
            _spec(
                "challenger_not_worse_online",
                names["online_comparison"],
                "On live orders whose label is known, the challenger's ROC AUC is not "
                "significantly below the champion's (95% interval of the difference "
                "not entirely below zero).",
            )
        ],
        description="Champion vs challenger on the live traffic both scored (service rollout "
        "shadow or canary): agreement rate, score distributions and, once labels arrive, ROC AUC "
        "of each on the same orders with bootstrap intervals; to lake/monitoring/online_comparison."
        " The promotion gate counts this evidence (gate.min_online_requests).",
    )
    def online_comparison(
        context: AssetExecutionContext,
        lake: LakeResource,
        mlflow: MlflowResource,
        monitoring: MonitoringResource,
        alerts: AlertNotifier,
    ):
        client = mlflow.client()
        current, waiting = (
            alias_version(client, product.spec.model_name, alias) for alias in (CHAMPION_ALIAS, CHALLENGER)
        )
        outcome = compare_online(
            lake.engine(),
            product,
            int(current.version) if current else None,
            int(waiting.version) if waiting else None,
            monitoring.settings.min_labelled_rows,
        )
        context.log.info(outcome.note)
        yield from _report(
            context,
            "challenger_not_worse_online",
            outcome,
            alerts,
            "champion vs challenger on live traffic",
            product,
        )

    return [feature_drift, prediction_drift, model_quality, online_comparison]


def service_assets() -> list[Any]:
    """The scoring service's own assets, once for every product it serves: its inference log and
    its system health."""

    @asset(
        group_name="monitoring",
        kinds={"delta"},
        owners=OWNERS,
        deps=[INFERENCE_LOG],
        metadata={"table": HEALTH_TABLE},
        check_specs=[
            _spec(
                "serving_within_objectives",
                "system_health",
                "Recent p99 latency and the 5xx share of the scoring service meet "
                "monitoring.latency_p99_ms and monitoring.max_error_rate.",
            )
        ],
        description="Latency percentiles of recent traffic (inference log) and the service's "
        "error rate (its /metrics); to lake/monitoring/system_health.",
    )
    def system_health(
        context: AssetExecutionContext,
        lake: LakeResource,
        monitoring: MonitoringResource,
        alerts: AlertNotifier,
    ):
        outcome = monitors.system_health(lake.engine(), monitoring.settings)
        yield from _report(
            context, "serving_within_objectives", outcome, alerts, "serving latency / error objectives"
        )

    return [INFERENCE_LOG, system_health]


# checks whose failure is a signal for the sensors and alerts (drift, decay), not a broken run
MONITORING_CHECKS = {
    "no_dataset_drift",
    "no_prediction_drift",
    "quality_above_floor",
    "serving_within_objectives",
    "challenger_not_worse_online",
    STREAM_LAG_CHECK,
}


def batch_quality_asset(product: Product) -> Any:
    """The quality monitor of a batch-scored product: its champion's scores against the actuals."""
    metric, floor = product.quality_metric, product.spec.monitoring.quality_floor
    return champion_monitor(
        product,
        MonitorSpec(
            monitors.batch_quality_monitor(product),
            "quality_above_floor",
            f"On batch predictions whose actuals arrived, the {product.name} champion's {metric} is "
            f"within its floor ({floor}) and within {product.spec.monitoring.quality_max_drop} of "
            "its holdout value.",
            f"Quality of the {product.name} champion's batch predictions (gold/{product.name}_scores) "
            f"once their labels ({product.label}) are known, on {metric}; to "
            "lake/monitoring/model_quality. A failure triggers retraining.",
            f"{product.name} quality on its actuals",
            [AssetKey(f"{product.name}_batch_scores"), AssetKey(product.spec.label.table)],
            QUALITY_TABLE,
            group=product.name,
            kinds=frozenset({"delta"}),
            owners=tuple(product.spec.owners),
        ),
        lambda engine, model, monitoring: monitors.batch_quality(engine, model, product, monitoring.settings),
    )


def batch_drift_asset(product: Product) -> Any:
    """The drift monitor of a batch-scored product: the inputs it scored against its training data."""
    return champion_monitor(
        product,
        MonitorSpec(
            monitors.batch_drift_monitor(product),
            "no_dataset_drift",
            f"The inputs {product.name} scored in batch recently have not drifted from its champion's "
            f"training data (share of drifted columns below {product.spec.monitoring.drift_share}).",
            f"Evidently data drift of the inputs the {product.name} champion scored in batch (gold "
            "scores of the newest days) against its training data; to lake/monitoring/drift_metrics. "
            "A drift triggers retraining.",
            f"drift of {product.name}'s batch inputs",
            [AssetKey(f"{product.name}_batch_scores"), AssetKey(f"{product.name}_training_set")],
            DRIFT_TABLE,
            group=product.name,
            owners=tuple(product.spec.owners),
        ),
        lambda engine, model, monitoring: monitors.batch_feature_drift(
            engine, model, product, monitoring.settings, monitoring.reports
        ),
    )
