"""Jobs, schedules and sensors that close the loop: the daily pipeline, monitoring, retraining
when drift or quality fails, model quality when labels arrive, capture when the source changes,
and an alert for every failed run. Every sensor keeps a cursor and gives each run a run key, so
a restarted daemon or a re-evaluated tick launches nothing twice."""

from datetime import datetime

import polars as pl
from dagster import (
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    ScheduleDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    run_failure_sensor,
    sensor,
)

from lakehouse_assets.bronze.sensors import bronze_cdc_job
from lakehouse_assets.monitoring.tables import DRIFT_TABLE, QUALITY_TABLE
from lakehouse_assets.resources import LakeResource, SourceDatabaseResource
from lakehouse_assets.resources.monitoring import AlertNotifier
from lakehouse_assets.sources.postgres import lsn_to_int
from lakehouse_assets.sources.schema import SOURCE_TABLES

FEATURE_OUTPUTS = AssetSelection.assets(AssetKey("training_set"), AssetKey("online_features"))

daily_pipeline_job = define_asset_job(
    "daily_pipeline_job",
    selection=FEATURE_OUTPUTS.upstream().materializable()
    | AssetSelection.assets(AssetKey("customer_erasure")),
    description="Source changes and landing files into bronze, silver, gold (dbt) and the "
    "features (online store, training set); then the GDPR erasure of deleted customers.")
monitoring_job = define_asset_job(
    "monitoring_job", selection=AssetSelection.groups("monitoring"),
    description="Drift, model quality and system health of the champion.")
model_quality_job = define_asset_job(
    "model_quality_job", selection=AssetSelection.assets(AssetKey("model_quality")),
    description="Model quality on the labels that arrived.")
retrain_job = define_asset_job(
    "retrain_job",
    selection=AssetSelection.assets(AssetKey("training_set")) | AssetSelection.groups("ml"),
    description="Rebuild the training set from fresh data, train a challenger, evaluate it "
    "against the champion and promote it only if the gate passes.")

daily_pipeline_schedule = ScheduleDefinition(
    name="daily_pipeline", job=daily_pipeline_job, cron_schedule="0 2 * * *",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Every day at 02:00: ingest to gold to features (start it in the UI).")
monitoring_schedule = ScheduleDefinition(
    name="hourly_monitoring", job=monitoring_job, cron_schedule="15 * * * *",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Every hour: drift, model quality and system health.")


def failed_monitor_evaluations(frame: pl.DataFrame, after: datetime | None) -> list[str]:
    """Times of monitor evaluations after ``after`` that failed (drift or quality)."""
    if after is not None:
        frame = frame.filter(pl.col("computed_at") > after)
    return sorted({str(t) for t in frame.filter(~pl.col("ok"))["computed_at"].to_list()})


def monitor_results(lake: LakeResource) -> pl.DataFrame:
    """Every drift and quality evaluation: when, which monitor, whether it passed."""
    engine, parts = lake.engine(), []
    if engine.version(DRIFT_TABLE) is not None:
        parts.append(engine.read(DRIFT_TABLE, columns=["computed_at", "monitor", "dataset_drift"])
                     .select("computed_at", "monitor", ok=~pl.col("dataset_drift")))
    if engine.version(QUALITY_TABLE) is not None:
        parts.append(engine.read(QUALITY_TABLE, columns=["computed_at", "monitor", "passed"])
                     .select("computed_at", "monitor", ok=pl.col("passed")))
    if not parts:
        return pl.DataFrame(schema={"computed_at": pl.Datetime("us"), "monitor": pl.String,
                                    "ok": pl.Boolean})
    return pl.concat(parts)


@sensor(job=retrain_job, minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING,
        description="Drift detected or model quality below the floor -> one retraining run "
        "(fresh training set, challenger, evaluation, gated promotion) per failed evaluation.")
def retrain_on_degradation(context: SensorEvaluationContext, lake: LakeResource):
    after = datetime.fromisoformat(context.cursor) if context.cursor else None
    results = monitor_results(lake)
    failed = failed_monitor_evaluations(results, after)
    newest = results["computed_at"].max()
    cursor = str(newest) if newest is not None else context.cursor
    if not failed:
        return SensorResult(skip_reason=SkipReason("no failed drift or quality evaluation"),
                            cursor=cursor)
    # one retraining covers every failure seen in this tick
    return SensorResult(run_requests=[RunRequest(run_key=f"retrain:{failed[-1]}",
                                                 tags={"trigger": "monitoring",
                                                       "failed_evaluation": failed[-1]})],
                        cursor=cursor)


@sensor(job=model_quality_job, minimum_interval_seconds=300,
        default_status=DefaultSensorStatus.RUNNING,
        description="New return labels in gold (label_known_at moved) -> model quality.")
def label_arrival_sensor(context: SensorEvaluationContext, lake: LakeResource):
    engine = lake.engine()
    if engine.version("gold/fct_orders") is None:
        return SkipReason("no gold orders yet")
    labels = engine.read("gold/fct_orders", columns=["label_known_at"])["label_known_at"]
    newest = None if labels.max() is None else str(labels.max())
    if newest is None or newest == context.cursor:
        return SensorResult(skip_reason=SkipReason("no new labels"), cursor=context.cursor)
    return SensorResult(run_requests=[RunRequest(run_key=f"labels:{newest}")], cursor=newest)


@sensor(job=bronze_cdc_job, minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.STOPPED,
        description="New changes in the source's change log -> capture into bronze (start it "
        "for a live source; the simulator writes in bursts).")
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


@run_failure_sensor(default_status=DefaultSensorStatus.RUNNING,
                    description="Every failed run -> an alert through the notifier.")
def run_failure_alert(context: RunFailureSensorContext, alerts: AlertNotifier):
    run = context.dagster_run
    alerts.send(f"run {run.run_id[:8]} of {run.job_name} failed",
                context.failure_event.message or "no message")


JOBS = [daily_pipeline_job, monitoring_job, model_quality_job, retrain_job]
SCHEDULES = [daily_pipeline_schedule, monitoring_schedule]
SENSORS = [retrain_on_degradation, label_arrival_sensor, source_changes_sensor,
           run_failure_alert]
