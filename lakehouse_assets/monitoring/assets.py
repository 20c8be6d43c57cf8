"""Monitoring assets (group `monitoring`): drift, model quality and system health, each with an
asset check. A failing check alerts through the notifier; the retrain sensor reads the
monitoring tables they append to."""

from collections.abc import Callable
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

from lakehouse_assets.metadata import OWNERS
from lakehouse_assets.monitoring import monitors
from lakehouse_assets.monitoring.monitors import Champion, MonitorOutcome
from lakehouse_assets.monitoring.online import online_comparison as compare_online
from lakehouse_assets.products.spec import Product
from lakehouse_assets.registry.promotion import CHALLENGER, alias_version
from lakehouse_assets.registry.promotion import CHAMPION as CHAMPION_ALIAS
from lakehouse_assets.resources.lake import LakeResource
from lakehouse_assets.resources.mlflow import MlflowResource
from lakehouse_assets.resources.monitoring import AlertNotifier, MonitoringResource
from lakehouse_assets.tables import (
    DRIFT_TABLE,
    HEALTH_TABLE,
    INFERENCE_LOG_TABLE,
    ONLINE_COMPARISON_TABLE,
    QUALITY_TABLE,
)

INFERENCE_LOG = AssetSpec(
    "inference_log",
    group_name="serving",
    kinds={"delta", "fastapi"},
    owners=OWNERS,
    description="lake/serving/inference_log: every prediction of `lakehouse serve` (written by "
    "the service, not by Dagster).",
    metadata={"table": INFERENCE_LOG_TABLE},
)


def _report(
    context: AssetExecutionContext, check: str, outcome: MonitorOutcome, alerts: AlertNotifier, what: str
):
    """The materialization and the check result of one monitor run; a failure alerts."""
    metadata: dict[str, Any] = {
        "note": outcome.note or "-",
        "skipped": outcome.passed is None,
        "summary": MetadataValue.json(outcome.summary),
    }
    for source, path in outcome.reports.items():
        metadata[f"report_{source}"] = MetadataValue.path(str(path))
    yield MaterializeResult(metadata=metadata)
    if outcome.passed is False:
        alerts.send(
            f"{context.asset_key.to_user_string()}: {check} failed",
            f"{what}\n{outcome.summary}\nreports: {', '.join(map(str, outcome.reports.values()))}",
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


ONLINE_KINDS = ("feature_drift", "prediction_drift", "model_quality", "online_comparison")


def online_prefix(product: Product, default: Product | None) -> str:
    """What an online product's monitor names start with: nothing for the default product (its
    monitors keep the names they had before products: feature_drift, ...), else ``<product>_``."""
    return "" if default is not None and product.name == default.name else f"{product.name}_"


def monitoring_assets(product: Product, prefix: str = "") -> list[Any]:
    """The monitors of an online product's champion (drift, quality, online comparison), named
    ``<prefix><monitor>``."""
    names = {kind: f"{prefix}{kind}" for kind in ONLINE_KINDS}
    training_set = AssetKey(f"{product.name}_training_set")
    champion = AssetKey(f"{product.name}_champion")  # the model they watch
    label_table = AssetKey(product.spec.label.table)

    @asset(
        name=names["feature_drift"],
        group_name="monitoring",
        kinds={"evidently", "delta"},
        owners=OWNERS,
        deps=[INFERENCE_LOG, training_set, champion, label_table],
        metadata={"table": DRIFT_TABLE},
        check_specs=[
            _spec(
                "no_dataset_drift",
                names["feature_drift"],
                "The served features (and the newest gold orders) have not drifted "
                "from the champion's training data (Evidently, share of drifted "
                "columns below monitoring.drift_share).",
            )
        ],
        description="Evidently data drift of the traffic since the last check (inference log) and "
        "of the newest gold orders against the champion's training data; per-column scores to "
        "lake/monitoring/drift_metrics, HTML reports under $LAKEHOUSE_HOME/monitoring.",
    )
    def feature_drift(
        context: AssetExecutionContext,
        lake: LakeResource,
        mlflow: MlflowResource,
        monitoring: MonitoringResource,
        alerts: AlertNotifier,
    ):
        outcome = _with_champion(
            context,
            mlflow,
            product,
            lambda model: monitors.feature_drift(
                lake.engine(), model, product, monitoring.settings, monitoring.reports, names["feature_drift"]
            ),
        )
        yield from _report(
            context, "no_dataset_drift", outcome, alerts, "dataset drift of the model's inputs"
        )

    @asset(
        name=names["prediction_drift"],
        group_name="monitoring",
        kinds={"evidently", "delta"},
        owners=OWNERS,
        deps=[INFERENCE_LOG, training_set, champion],
        metadata={"table": DRIFT_TABLE},
        check_specs=[
            _spec(
                "no_prediction_drift",
                names["prediction_drift"],
                "The served return probabilities have not drifted from the "
                "champion's scores on its training data.",
            )
        ],
        description="Drift of the champion's output distribution (Evidently).",
    )
    def prediction_drift(
        context: AssetExecutionContext,
        lake: LakeResource,
        mlflow: MlflowResource,
        monitoring: MonitoringResource,
        alerts: AlertNotifier,
    ):
        outcome = _with_champion(
            context,
            mlflow,
            product,
            lambda model: monitors.prediction_drift(
                lake.engine(),
                model,
                product,
                monitoring.settings,
                monitoring.reports,
                names["prediction_drift"],
            ),
        )
        yield from _report(
            context, "no_prediction_drift", outcome, alerts, "drift of the model's predictions"
        )

    @asset(
        name=names["model_quality"],
        group_name="monitoring",
        kinds={"evidently", "delta"},
        owners=OWNERS,
        deps=[INFERENCE_LOG, champion, label_table],
        metadata={"table": QUALITY_TABLE},
        check_specs=[
            _spec(
                "quality_above_floor",
                names["model_quality"],
                "On labelled live predictions the champion's primary metric is at "
                "least the floor and within the allowed drop of its holdout value.",
            )
        ],
        description="Classification quality of the champion on its live predictions whose "
        "return label is known (30 days after the order); to lake/monitoring/model_quality.",
    )
    def model_quality(
        context: AssetExecutionContext,
        lake: LakeResource,
        mlflow: MlflowResource,
        monitoring: MonitoringResource,
        alerts: AlertNotifier,
    ):
        outcome = _with_champion(
            context,
            mlflow,
            product,
            lambda model: monitors.model_quality(
                lake.engine(), model, product, monitoring.settings, monitoring.reports, names["model_quality"]
            ),
        )
        yield from _report(context, "quality_above_floor", outcome, alerts, "model quality on recent labels")

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
            context, "challenger_not_worse_online", outcome, alerts, "champion vs challenger on live traffic"
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
}


def batch_quality_asset(product: Product) -> Any:
    """The quality monitor of a batch-scored product: its champion's scores against the actuals."""
    check = "quality_above_floor"
    metric = product.quality_metric
    floor = product.spec.monitoring.quality_floor

    @asset(
        name=monitors.batch_quality_monitor(product),
        group_name=product.name,
        kinds={"delta"},
        owners=list(product.spec.owners),
        deps=[AssetKey(f"{product.name}_batch_scores"), AssetKey(product.spec.label.table)],
        metadata={"table": QUALITY_TABLE},
        check_specs=[
            AssetCheckSpec(
                check,
                asset=monitors.batch_quality_monitor(product),
                description=f"On batch predictions whose actuals arrived, the {product.name} champion's "
                f"{metric} is within its floor ({floor}) and within "
                f"{product.spec.monitoring.quality_max_drop} of its holdout value.",
            )
        ],
        description=f"Quality of the {product.name} champion's batch predictions "
        f"(gold/{product.name}_scores) once their labels ({product.label}) are known, on {metric}; "
        "to lake/monitoring/model_quality. A failure triggers retraining.",
    )
    def quality(
        context: AssetExecutionContext,
        lake: LakeResource,
        mlflow: MlflowResource,
        monitoring: MonitoringResource,
        alerts: AlertNotifier,
    ):
        outcome = _with_champion(
            context,
            mlflow,
            product,
            lambda model: monitors.batch_quality(lake.engine(), model, product, monitoring.settings),
        )
        yield from _report(context, check, outcome, alerts, f"{product.name} quality on its actuals")

    return quality


def batch_drift_asset(product: Product) -> Any:
    """The drift monitor of a batch-scored product: the inputs it scored against its training data."""
    check, name = "no_dataset_drift", monitors.batch_drift_monitor(product)

    @asset(
        name=name,
        group_name=product.name,
        kinds={"evidently", "delta"},
        owners=list(product.spec.owners),
        deps=[AssetKey(f"{product.name}_batch_scores"), AssetKey(f"{product.name}_training_set")],
        metadata={"table": DRIFT_TABLE},
        check_specs=[
            AssetCheckSpec(
                check,
                asset=name,
                description=f"The inputs {product.name} scored in batch recently have not drifted from "
                "its champion's training data (share of drifted columns below "
                f"{product.spec.monitoring.drift_share}).",
            )
        ],
        description=f"Evidently data drift of the inputs the {product.name} champion scored in batch "
        "(gold scores of the newest days) against its training data; to lake/monitoring/drift_metrics. "
        "A drift triggers retraining.",
    )
    def drift(
        context: AssetExecutionContext,
        lake: LakeResource,
        mlflow: MlflowResource,
        monitoring: MonitoringResource,
        alerts: AlertNotifier,
    ):
        engine = lake.engine()
        outcome = _with_champion(
            context,
            mlflow,
            product,
            lambda model: monitors.batch_feature_drift(
                engine, model, product, monitoring.settings, monitoring.reports
            ),
        )
        yield from _report(context, check, outcome, alerts, f"drift of {product.name}'s batch inputs")

    return drift
