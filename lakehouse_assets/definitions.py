"""The Dagster code location: collects the stage modules and the resources. Nothing else."""

from dagster import AssetSelection, Definitions, JobDefinition, define_asset_job

from lakehouse_assets.bronze.assets import (
    BRONZE_CDC_ASSETS,
    PAYMENTS_LANDING,
    SHOP_SOURCE,
    ingest_payments_files,
)
from lakehouse_assets.bronze.checks import BRONZE_CDC_CHECKS
from lakehouse_assets.bronze.sensors import (
    bronze_cdc_job,
    bronze_cdc_schedule,
    landing_ingest_job,
    landing_payments_sensor,
)
from lakehouse_assets.features.assets import feature_registry, online_features, training_set
from lakehouse_assets.gold.assets import gold_dbt_models
from lakehouse_assets.governance.assets import customer_erasure
from lakehouse_assets.monitoring.assets import MONITORING_ASSETS
from lakehouse_assets.monitoring.automation import JOBS, SCHEDULES, SENSORS
from lakehouse_assets.monitoring.freshness import FRESHNESS_CHECKS, freshness_sensor
from lakehouse_assets.notebooks.assets import (
    NOTEBOOK_ASSETS,
    notebook_reports_job,
    notebook_reports_schedule,
)
from lakehouse_assets.queries.assets import build_query_assets
from lakehouse_assets.resources import build_resources
from lakehouse_assets.settings import LakehouseSettings, get_settings
from lakehouse_assets.silver.assets import SILVER_ASSETS
from lakehouse_assets.silver.maintenance import lake_maintenance_job, lake_maintenance_schedule
from lakehouse_assets.training.assets import ML_ASSETS, ML_CHECKS

PIPELINE_ASSETS = [SHOP_SOURCE, PAYMENTS_LANDING, *BRONZE_CDC_ASSETS, ingest_payments_files,
                   *SILVER_ASSETS, gold_dbt_models, feature_registry, online_features,
                   training_set, *ML_ASSETS, *MONITORING_ASSETS, customer_erasure,
                   *NOTEBOOK_ASSETS]
QUERY_ASSETS = build_query_assets(PIPELINE_ASSETS)
every_asset_job = define_asset_job(
    "every_asset_job", selection=AssetSelection.all(),
    description="Every asset and its checks, as `lakehouse demo` runs them.")


def build_definitions(settings: LakehouseSettings | None = None) -> Definitions:
    return Definitions(
        assets=[*PIPELINE_ASSETS, *QUERY_ASSETS],
        asset_checks=[*BRONZE_CDC_CHECKS, *ML_CHECKS, *FRESHNESS_CHECKS],
        jobs=[every_asset_job, bronze_cdc_job, landing_ingest_job, lake_maintenance_job,
              notebook_reports_job, *JOBS],
        schedules=[bronze_cdc_schedule, lake_maintenance_schedule, notebook_reports_schedule,
                   *SCHEDULES],
        sensors=[landing_payments_sensor, *SENSORS, freshness_sensor],
        resources=build_resources(settings or get_settings()),
    )


def all_assets_job() -> JobDefinition:
    """``every_asset_job`` from the current settings: the target `lakehouse demo` runs by name
    (reconstructable), as dagstermill rebuilds the job in a notebook's kernel."""
    return build_definitions().resolve_job_def(every_asset_job.name)


defs = build_definitions()
