"""The Dagster code location: collects the stage modules and the resources. Nothing else."""

from dagster import Definitions, JobDefinition

from lakehouse_assets.automation import (
    FRESHNESS_CHECKS,
    JOBS,
    SCHEDULES,
    SENSORS,
    every_asset_job,
)
from lakehouse_assets.bronze.assets import (
    BRONZE_CDC_ASSETS,
    PAYMENTS_LANDING,
    SHOP_SOURCE,
    ingest_payments_files,
)
from lakehouse_assets.bronze.checks import BRONZE_CDC_CHECKS
from lakehouse_assets.features.assets import feature_registry, online_features, training_set
from lakehouse_assets.gold.assets import gold_dbt_models
from lakehouse_assets.governance.assets import customer_erasure
from lakehouse_assets.monitoring.assets import MONITORING_ASSETS
from lakehouse_assets.notebooks.assets import NOTEBOOK_ASSETS
from lakehouse_assets.queries.assets import build_query_assets
from lakehouse_assets.resources.sources import build_resources
from lakehouse_assets.settings import LakehouseSettings, get_settings
from lakehouse_assets.silver.assets import SILVER_ASSETS
from lakehouse_assets.training.assets import ML_ASSETS, ML_CHECKS

PIPELINE_ASSETS = [
    SHOP_SOURCE,
    PAYMENTS_LANDING,
    *BRONZE_CDC_ASSETS,
    ingest_payments_files,
    *SILVER_ASSETS,
    gold_dbt_models,
    feature_registry,
    online_features,
    training_set,
    *ML_ASSETS,
    *MONITORING_ASSETS,
    customer_erasure,
    *NOTEBOOK_ASSETS,
]
QUERY_ASSETS = build_query_assets(PIPELINE_ASSETS)


def build_definitions(settings: LakehouseSettings | None = None) -> Definitions:
    """The code location's definitions with resources built from ``settings`` (default: the environment)."""
    return Definitions(
        assets=[*PIPELINE_ASSETS, *QUERY_ASSETS],
        asset_checks=[*BRONZE_CDC_CHECKS, *ML_CHECKS, *FRESHNESS_CHECKS],
        jobs=JOBS,
        schedules=SCHEDULES,
        sensors=SENSORS,
        resources=build_resources(settings or get_settings()),
    )


def all_assets_job() -> JobDefinition:
    """``every_asset_job`` from the current settings: the target `lakehouse demo` runs by name
    (reconstructable), as dagstermill rebuilds the job in a notebook's kernel."""
    return build_definitions().resolve_job_def(every_asset_job.name)


defs = build_definitions()
