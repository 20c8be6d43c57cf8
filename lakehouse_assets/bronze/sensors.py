"""Jobs, the landing-zone sensor and the CDC schedule of the bronze layer."""


import json

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    sensor,
)

from lakehouse_assets.bronze.assets import BRONZE_CDC_ASSETS, PAYMENTS_KEY, QUARANTINE_KEY
from lakehouse_assets.resources import LakeResource, LandingZoneResource
from lakehouse_assets.sources.landing import PAYMENTS, is_ingested, list_landing_files

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

bronze_cdc_schedule = ScheduleDefinition(
    name="bronze_cdc_every_15_minutes",
    job=bronze_cdc_job,
    cron_schedule="*/15 * * * *",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Capture source changes every 15 minutes (start it in the UI for a live source).",
)


@sensor(
    job=landing_ingest_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="One run per new or changed payments file in the landing folder. The cursor holds "
    "each file's size and modification time; files already in bronze are only recorded.",
)
def landing_payments_sensor(
    context: SensorEvaluationContext, landing_zone: LandingZoneResource, lake: LakeResource
):
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    requests = []
    engine = lake.engine()
    for file in list_landing_files(landing_zone.folder, PAYMENTS):
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
    if not requests:
        return SensorResult(skip_reason=SkipReason("no new landing files"),
                            cursor=json.dumps(seen, sort_keys=True))
    return SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))
