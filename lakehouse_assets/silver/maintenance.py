"""Table maintenance: compaction / Z-order and VACUUM of the bronze, silver, serving and
monitoring tables, weekly."""

from dagster import DefaultScheduleStatus, OpExecutionContext, ScheduleDefinition, job, op

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.monitoring.tables import DRIFT_TABLE, HEALTH_TABLE, QUALITY_TABLE
from lakehouse_assets.resources import LakeResource
from lakehouse_assets.serving.inference_log import INFERENCE_LOG_TABLE
from lakehouse_assets.silver.apply_changes import QUARANTINE_TABLE
from lakehouse_assets.silver.specs import SILVER_SPECS
from lakehouse_assets.sources.cdc import bronze_table_name
from lakehouse_assets.sources.landing import PAYMENTS
from lakehouse_assets.sources.landing import QUARANTINE_TABLE as LANDING_QUARANTINE
from lakehouse_assets.sources.schema import SOURCE_TABLES


def maintained_tables() -> dict[str, list[str]]:
    """Every table the pipeline writes, with its Z-order columns (empty: plain compaction)."""
    tables: dict[str, list[str]] = {bronze_table_name(t): [] for t in SOURCE_TABLES}
    tables |= {PAYMENTS.table: [], LANDING_QUARANTINE: [], QUARANTINE_TABLE: []}
    tables |= {spec.table: list(spec.zorder_by) for spec in SILVER_SPECS}
    # appended to in small commits all day long: compaction matters most here
    tables |= {INFERENCE_LOG_TABLE: ["served_at"], DRIFT_TABLE: [], QUALITY_TABLE: [],
               HEALTH_TABLE: []}
    return tables


def maintain_table(
    engine: LakeEngine, table: str, zorder_by: list[str], retention_hours: int
) -> dict[str, int]:
    """Compact (or Z-order), then VACUUM files older than the time-travel retention."""
    optimized = engine.optimize(table, zorder_by or None)
    removed = engine.vacuum(table, retention_hours)
    return {"files_added": int(optimized.get("numFilesAdded", 0)),
            "files_removed": int(optimized.get("numFilesRemoved", 0)),
            "files_vacuumed": len(removed)}


@op(description="OPTIMIZE (compaction / Z-order) and VACUUM every lake table, keeping time "
    "travel for the configured retention.")
def maintain_lake_tables(context: OpExecutionContext, lake: LakeResource) -> None:
    engine = lake.engine()
    for table, zorder in maintained_tables().items():
        if not engine.exists(table):
            continue
        stats = maintain_table(engine, table, zorder, lake.time_travel_retention_hours)
        context.log.info(f"{table}: {stats}")


@job(description="Compact, Z-order and VACUUM the lake's Delta tables.")
def lake_maintenance_job() -> None:
    maintain_lake_tables()


lake_maintenance_schedule = ScheduleDefinition(
    name="lake_maintenance_weekly",
    job=lake_maintenance_job,
    cron_schedule="0 3 * * 0",
    default_status=DefaultScheduleStatus.RUNNING,
)
