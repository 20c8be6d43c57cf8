"""The bronze -> silver -> gold pipeline (CDC capture, landing files, silver, dbt gold),
materialized once on a home: in-process for the embedded engine, and as its own process on a
Spark cluster (one SparkContext per process: the test process has its local one).

    python -m tests.pipeline_run HOME SPARK_MASTER SPARK_CONF_JSON
"""

import json
import sys

from dagster import DagsterInstance, materialize

from lakehouse_assets.bronze.assets import BRONZE_CDC_ASSETS, ingest_payments_files
from lakehouse_assets.gold.assets import gold_dbt_models
from lakehouse_assets.resources.sources import build_resources
from lakehouse_assets.settings import LakehouseSettings
from lakehouse_assets.silver.assets import SILVER_ASSETS

PIPELINE = [*BRONZE_CDC_ASSETS, ingest_payments_files, *SILVER_ASSETS, gold_dbt_models]


def run_pipeline(settings: LakehouseSettings) -> None:
    """Materialize the pipeline; every asset and every check must succeed."""
    result = materialize(PIPELINE, resources=build_resources(settings), instance=DagsterInstance.ephemeral())
    assert result.success, settings.engine
    failed = [c.check_name for c in result.get_asset_check_evaluations() if not c.passed]
    assert not failed, f"{settings.engine}: failed checks {failed}"


if __name__ == "__main__":
    home, master, conf = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    run_pipeline(
        LakehouseSettings(
            home=home, engine="spark", spark_master=master, spark_driver_memory="1g", spark_conf=conf
        )
    )
    print(f"pipeline done on {master}")
