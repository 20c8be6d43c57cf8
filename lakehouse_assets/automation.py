"""Every job, schedule and sensor of the platform, and the declarative automation of assets.

They cross stages (a sensor on monitoring results launches training; maintenance covers every
layer), so they live here, above the stages, and the stages stay free of each other. Every
sensor keeps a cursor and gives each run a run key, so a restarted daemon or a re-evaluated
tick launches nothing twice. The decisions are plain functions in the stages, tested without
Dagster; the definitions here wire them to Dagster.
"""

import json
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import polars as pl
from dagster import (
    AssetKey,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    OpExecutionContext,
    RunFailureSensorContext,
    RunRequest,
    ScheduleDefinition,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    build_last_update_freshness_checks,
    build_sensor_for_freshness_checks,
    define_asset_job,
    job,
    op,
    run_failure_sensor,
    sensor,
)
from dagster._core.definitions.unresolved_asset_job_definition import (  # what define_asset_job returns
    UnresolvedAssetJobDefinition,
)

from lakehouse_assets.bronze.assets import BRONZE_CDC_ASSETS, PAYMENTS_KEY, QUARANTINE_KEY
from lakehouse_assets.monitoring.results import (
    batch_drift_monitor,
    batch_quality_monitor,
    failed_monitor_evaluations,
    monitor_results,
    newest_label_time,
    online_prefix,
)
from lakehouse_assets.product_declarations import online_products
from lakehouse_assets.products.spec import Product
from lakehouse_assets.resources.lake import LakeResource
from lakehouse_assets.resources.monitoring import AlertNotifier
from lakehouse_assets.resources.sources import LandingZoneResource, SourceDatabaseResource
from lakehouse_assets.silver.maintenance import maintain_table, maintained_tables
from lakehouse_assets.sources.landing import PAYMENTS, is_ingested, scan_landing
from lakehouse_assets.sources.postgres import lsn_to_int
from lakehouse_assets.sources.schema import SOURCE_TABLES
from lakehouse_assets.tables import gold_table

# ---------------------------------------------------------------------------------- jobs
every_asset_job = define_asset_job(
    "every_asset_job",
    selection=AssetSelection.all(),
    description="Every asset and its checks, as `lakehouse demo` runs them.",
)
landing_ingest_job = define_asset_job(
    "landing_ingest_job",
    selection=AssetSelection.assets(PAYMENTS_KEY, QUARANTINE_KEY),
    description="Ingest landing-zone payment files into bronze (valid rows and quarantine).",
)
bronze_cdc_job = define_asset_job(
    "bronze_cdc_job",
    selection=AssetSelection.assets(*BRONZE_CDC_ASSETS),
    description="Capture new source changes into the bronze CDC tables.",
)
monitoring_job = define_asset_job(
    "monitoring_job",
    selection=AssetSelection.groups("monitoring") | AssetSelection.checks_for_assets(AssetKey("stream_lag")),
    description="Drift, model quality and system health of the champions; the stream's lag objective.",
)
notebook_reports_job = define_asset_job(
    "notebook_reports_job",
    selection=AssetSelection.groups("notebooks"),
    description="The notebooks that are assets (dagstermill).",
)


@op(
    description="OPTIMIZE (compaction / Z-order) and VACUUM the bronze and silver tables and "
    "the append-only logs, keeping time travel for the configured retention."
)
def maintain_lake_tables(context: OpExecutionContext, lake: LakeResource) -> None:
    engine = lake.engine()
    for table, zorder in maintained_tables(engine).items():
        stats = maintain_table(engine, table, zorder, lake.time_travel_retention_hours)
        context.log.info(f"{table}: {stats}")


@job(description="Compact, Z-order and VACUUM the lake's Delta tables.")
def lake_maintenance_job() -> None:
    maintain_lake_tables()


# ----------------------------------------------------------------------------- schedules
bronze_cdc_schedule = ScheduleDefinition(
    name="bronze_cdc_every_15_minutes",
    job=bronze_cdc_job,
    cron_schedule="*/15 * * * *",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Capture source changes every 15 minutes (start it in the UI for a live source).",
)
monitoring_schedule = ScheduleDefinition(
    name="hourly_monitoring",
    job=monitoring_job,
    cron_schedule="15 * * * *",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Every hour: drift, model quality and system health.",
)
lake_maintenance_schedule = ScheduleDefinition(
    name="lake_maintenance_weekly",
    job=lake_maintenance_job,
    cron_schedule="0 3 * * 0",
    default_status=DefaultScheduleStatus.RUNNING,
)

# The notebook reports declare when they are due (AutomationCondition.on_cron on the asset:
# after Monday 06:00, once their inputs have updated since, so a report never repeats stale
# data); this sensor evaluates that condition (start it in the UI).
notebook_reports_automation = AutomationConditionSensorDefinition(
    "notebook_reports_automation",
    target=AssetSelection.groups("notebooks"),
    default_status=DefaultSensorStatus.STOPPED,
    description="Materializes the notebook reports when their automation condition says so.",
)

# ------------------------------------------------------------------------------- sensors


@sensor(
    job=landing_ingest_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="One run per new or changed payments file in the landing folder. The cursor "
    "holds each file's size and modification time; files already in bronze are only "
    "recorded; entries that are not regular files inside the folder are skipped.",
)
def landing_payments_sensor(
    context: SensorEvaluationContext, landing_zone: LandingZoneResource, lake: LakeResource
):
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    requests = []
    engine = lake.engine()
    files, skipped = scan_landing(landing_zone.folder, PAYMENTS)
    for entry in skipped:
        if seen.get(entry.relpath) != "skipped":  # said once per entry
            context.log.warning(f"landing entry {entry.relpath} skipped: {entry.reason}")
            seen[entry.relpath] = "skipped"
    for file in files:
        stamp = f"{file.size}:{file.mtime_ns}"
        if seen.get(file.relpath) == stamp:
            continue
        seen[file.relpath] = stamp
        if is_ingested(engine, PAYMENTS, landing_zone.folder, file.path):
            continue  # e.g. ingested by a bulk run, or touched without a content change
        requests.append(
            RunRequest(
                run_key=file.run_key,
                run_config={"ops": {"ingest_payments_files": {"config": {"files": [file.relpath]}}}},
                tags={"landing_file": file.relpath},
            )
        )
    cursor = json.dumps(seen, sort_keys=True)
    if not requests:
        return SensorResult(skip_reason=SkipReason("no new landing files"), cursor=cursor)
    return SensorResult(run_requests=requests, cursor=cursor)


@sensor(
    job=bronze_cdc_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="New changes in the source's change log -> capture into bronze (start it "
    "for a live source; the simulator writes in bursts).",
)
def source_changes_sensor(context: SensorEvaluationContext, source_db: SourceDatabaseResource):
    postgres = source_db.postgres()
    if postgres is not None:  # the write-ahead log's position moved
        newest = lsn_to_int(postgres.current_lsn())
    else:
        log = source_db.change_log()
        newest = max(log.max_seq(table) for table in SOURCE_TABLES)
    if str(newest) == (context.cursor or "0"):
        return SensorResult(skip_reason=SkipReason("no new source changes"), cursor=str(newest))
    return SensorResult(run_requests=[RunRequest(run_key=f"source:{newest}")], cursor=str(newest))


@run_failure_sensor(
    default_status=DefaultSensorStatus.RUNNING,
    description="Every failed run -> an alert through the notifier.",
)
def run_failure_alert(context: RunFailureSensorContext, alerts: AlertNotifier):
    run = context.dagster_run
    alerts.send(
        f"run {run.run_id[:8]} of {run.job_name} failed", context.failure_event.message or "no message"
    )


# ----------------------------------------------------------------- per data product


def daily_pipeline_job(products: list[Product]) -> UnresolvedAssetJobDefinition:
    """Source changes and landing files to gold, the online store and every product's
    training set; then the GDPR erasure."""
    outputs = AssetSelection.assets(AssetKey("online_features"), *(training_set_key(p) for p in products))
    return define_asset_job(
        "daily_pipeline_job",
        selection=outputs.upstream().materializable() | AssetSelection.assets(AssetKey("customer_erasure")),
        description="Source changes and landing files into bronze, silver, gold (dbt) and the "
        "features (online store, every data product's training set); then the GDPR erasure of "
        "deleted customers.",
    )


# the monitors of the online product (drift of its traffic, quality of its live predictions)
ONLINE_MONITORS = ("feature_drift", "prediction_drift", "model_quality")


def training_set_key(product: Product) -> AssetKey:
    """The asset key of a product's training set."""
    return AssetKey(f"{product.name}_training_set")


def retrain_on_degradation(product: Product, monitors: Collection[str] = ONLINE_MONITORS) -> SensorDefinition:
    """Failed evaluations of ``product``'s ``monitors`` (drift, quality) -> one run of its
    retrain job."""

    @sensor(
        name=f"{product.name}_retrain_on_degradation",
        job_name=f"{product.name}_retrain_job",
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING
        if product.spec.monitoring.retrain_on_failure
        else DefaultSensorStatus.STOPPED,
        description=f"Drift detected or {product.name} quality below the floor -> one retraining run "
        "(fresh training set, challenger, evaluation, gated promotion) per failed evaluation.",
    )
    def retrain(context: SensorEvaluationContext, lake: LakeResource):
        after = datetime.fromisoformat(context.cursor) if context.cursor else None
        results = monitor_results(lake.engine()).filter(pl.col("monitor").is_in(list(monitors)))
        failed = failed_monitor_evaluations(results, after)
        newest = results["computed_at"].max()
        cursor = str(newest) if newest is not None else context.cursor
        if not failed:
            return SensorResult(
                skip_reason=SkipReason("no failed drift or quality evaluation"), cursor=cursor
            )
        # one retraining covers every failure seen in this tick
        return SensorResult(
            run_requests=[
                RunRequest(
                    run_key=f"retrain:{failed[-1]}",
                    tags={"trigger": "monitoring", "failed_evaluation": failed[-1]},
                )
            ],
            cursor=cursor,
        )

    return retrain


def label_arrival_sensor(product: Product, job: UnresolvedAssetJobDefinition) -> SensorDefinition:
    """New labels in ``product``'s gold label table -> ``job`` (its model quality)."""
    table = gold_table(product.spec.label.table)
    known_at = product.spec.label.known_at

    @sensor(
        name=f"{product.name}_label_arrival",
        job=job,
        minimum_interval_seconds=300,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"New {product.name} labels in gold {product.spec.label.table} ({known_at} moved) "
        "-> model quality.",
    )
    def labels_arrived(context: SensorEvaluationContext, lake: LakeResource):
        engine = lake.engine()
        if engine.version(table) is None:
            return SkipReason(f"no {table} yet")
        newest = newest_label_time(engine, table, known_at)
        if newest is None or newest == context.cursor:
            return SensorResult(skip_reason=SkipReason("no new labels"), cursor=context.cursor)
        return SensorResult(run_requests=[RunRequest(run_key=f"labels:{newest}")], cursor=newest)

    return labels_arrived


@dataclass
class Automation:
    """The jobs, schedules, sensors and freshness checks of the platform for its products."""

    jobs: list[Any]
    schedules: list[ScheduleDefinition]
    sensors: list[Any]
    checks: list[Any]


def build_automation(products: list[Product], default: Product | None) -> Automation:
    """Everything above with the products' training sets; each product's own quality job,
    label-arrival and retrain sensors (``default``: the online product whose monitors keep
    their first names)."""
    daily = daily_pipeline_job(products)
    jobs: list[Any] = [
        every_asset_job,
        landing_ingest_job,
        bronze_cdc_job,
        daily,
        monitoring_job,
        notebook_reports_job,
        lake_maintenance_job,
    ]
    sensors: list[Any] = [
        landing_payments_sensor,
        source_changes_sensor,
        run_failure_alert,
        notebook_reports_automation,
    ]
    online = {p.name for p in online_products(products)}
    for product in products:
        watched, quality = [], []  # the product's monitors; those judged on labels
        if product.name in online:
            prefix = online_prefix(product, default)
            watched += [f"{prefix}{kind}" for kind in ONLINE_MONITORS]
            quality.append(f"{prefix}model_quality")
            job_name = f"{prefix}model_quality_job"
        if product.spec.serving.batch is not None:
            watched += [batch_quality_monitor(product), batch_drift_monitor(product)]
            quality.append(batch_quality_monitor(product))
            job_name = job_name if product.name in online else f"{product.name}_batch_quality_job"
        if not watched:
            continue
        checked = define_asset_job(
            job_name,
            selection=AssetSelection.assets(*(AssetKey(q) for q in quality)),
            description=f"Quality of {product.name}'s predictions on the labels that arrived.",
        )
        jobs.append(checked)
        sensors += [retrain_on_degradation(product, watched), label_arrival_sensor(product, checked)]
    fresh = [
        AssetKey(n)
        for n in ("fct_orders", "customer_daily_features", "product_daily_features", "online_features")
    ]
    fresh += [training_set_key(p) for p in products]
    with warnings.catch_warnings():  # superseded by FreshnessPolicy, which the UI shows as health,
        warnings.simplefilter("ignore")  # not as checks; the checks are what the sensors and CLI read
        # The gold marts and the feature outputs must have been updated within a day (plus slack
        # for the 02:00 run); a sensor evaluates the checks.
        checks = build_last_update_freshness_checks(assets=fresh, lower_bound_delta=timedelta(hours=26))
        sensors.append(build_sensor_for_freshness_checks(freshness_checks=checks, name="pipeline_freshness"))
    schedules = [
        bronze_cdc_schedule,
        ScheduleDefinition(
            name="daily_pipeline",
            job=daily,
            cron_schedule="0 2 * * *",
            default_status=DefaultScheduleStatus.STOPPED,
            description="Every day at 02:00: ingest to gold to features (start it in the UI).",
        ),
        monitoring_schedule,
        lake_maintenance_schedule,
    ]
    return Automation(jobs, schedules, sensors, list(checks))
