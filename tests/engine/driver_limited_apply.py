"""apply-changes and the training set on a Spark driver that may not collect a table:
``spark.driver.maxResultSize`` is far below the bronze batch and the label table, and the heap
is small, so a path that brought a table (or a batch) to the driver as Arrow/polars would fail
the job. Broadcast joins pass through the driver too, bounded by
``spark.sql.autoBroadcastJoinThreshold`` (10 MB by default) whatever the table size: here the
threshold sits below the result limit. Its own process: one SparkContext per process, and these
limits are fixed when the context starts.

    python -m tests.engine.driver_limited_apply HOME
"""

import json
import sys

from lakehouse_assets.features.pipeline import write_training_set
from lakehouse_assets.features.store import feature_store
from lakehouse_assets.resources.connections import build_engine
from lakehouse_assets.settings import LakehouseSettings
from lakehouse_assets.silver.apply_changes import apply_changes
from tests.engine.test_spark_driver_memory import DRIVER_MEMORY, MAX_RESULT_SIZE, SPECS
from tests.products import product

if __name__ == "__main__":
    settings = LakehouseSettings(
        home=sys.argv[1], engine="spark", spark_master="local[2]", spark_driver_memory=DRIVER_MEMORY
    )
    limits = {"spark.driver.maxResultSize": MAX_RESULT_SIZE, "spark.sql.autoBroadcastJoinThreshold": "256k"}
    engine = build_engine(settings.lake_root, "spark", {**settings.spark_config(), **limits})
    report: dict[str, object] = {}
    for name, spec in SPECS.items():
        result = apply_changes(engine, spec, batch_id="limited")
        report[name] = {"applied": result.events_applied, "read": result.events_read}
    store, definitions = feature_store(settings)
    table, _, labelled = write_training_set(store, engine, definitions, product())
    report["training_set"] = {"labelled": labelled, "rows": engine.row_count(table)}
    for table in (SPECS["scd1"].source, "gold/fct_orders"):  # the limit holds: a collect fails
        try:
            engine.read(table)
            report[table] = "collected"
        except Exception as exc:  # noqa: BLE001 - the job error Spark raises is what we report
            report[table] = "maxResultSize" if "maxResultSize" in str(exc) else repr(exc)[:500]
    print("REPORT " + json.dumps(report))
