"""The code location: collects the stage modules, the declared data products and the
resources. Nothing else."""

from dagster import AssetKey, Definitions, JobDefinition

from lakehouse_assets.automation import build_automation, every_asset_job
from lakehouse_assets.bronze.assets import (
    BRONZE_CDC_ASSETS,
    PAYMENTS_LANDING,
    SHOP_SOURCE,
    ingest_payments_files,
)
from lakehouse_assets.bronze.checks import BRONZE_CDC_CHECKS
from lakehouse_assets.components import product_assets
from lakehouse_assets.features.assets import feature_registry, online_features
from lakehouse_assets.gold.assets import gold_dbt_models
from lakehouse_assets.governance.assets import customer_erasure_asset
from lakehouse_assets.monitoring.assets import monitoring_assets, service_assets
from lakehouse_assets.monitoring.results import online_prefix
from lakehouse_assets.notebooks.assets import NOTEBOOK_ASSETS
from lakehouse_assets.product_declarations import default_product, load_products, online_products
from lakehouse_assets.queries.assets import build_query_assets
from lakehouse_assets.resources.sources import build_resources
from lakehouse_assets.settings import LakehouseSettings, get_settings
from lakehouse_assets.silver.assets import SILVER_ASSETS
from lakehouse_assets.streaming.assets import REALTIME_FEATURES, STREAM_LAG, stream_lag_check

PIPELINE_ASSETS = [
    SHOP_SOURCE,
    PAYMENTS_LANDING,
    *BRONZE_CDC_ASSETS,
    ingest_payments_files,
    *SILVER_ASSETS,
    gold_dbt_models,
    feature_registry,
    online_features,
    *NOTEBOOK_ASSETS,
]


def build_definitions(settings: LakehouseSettings | None = None) -> Definitions:
    """The code location's definitions, with every data product declared for ``settings``
    (default: the environment) and resources built from them."""
    settings = settings or get_settings()
    products = load_products(settings)
    online = online_products(products)
    default = default_product(products, settings.serving.default_product)
    per_product = [product_assets(p) for p in products]
    pipeline = [
        *PIPELINE_ASSETS,
        *(a for d in per_product for a in (d.assets or [])),
        customer_erasure_asset([AssetKey(f"{p.name}_training_set") for p in products]),
        *(a for p in online for a in monitoring_assets(p, online_prefix(p, default))),
        *(service_assets() if online else []),
        STREAM_LAG,
        REALTIME_FEATURES,
    ]
    automation = build_automation(products, default)
    platform = Definitions(
        assets=[*pipeline, *build_query_assets(pipeline)],
        asset_checks=[
            *BRONZE_CDC_CHECKS,
            *automation.checks,
            stream_lag_check(settings.stream.lag_objective_seconds),
        ],
        jobs=automation.jobs,
        schedules=automation.schedules,
        sensors=automation.sensors,
        resources=build_resources(settings),
    )
    products_only = [
        Definitions(asset_checks=d.asset_checks, jobs=d.jobs, schedules=d.schedules) for d in per_product
    ]
    return Definitions.merge(platform, *products_only)


def all_assets_job() -> JobDefinition:
    """``every_asset_job`` from the current settings: the target `lakehouse demo` runs by name
    (reconstructable), as dagstermill rebuilds the job in a notebook's kernel."""
    return build_definitions().resolve_job_def(every_asset_job.name)


defs = build_definitions()
