"""apply-changes on a Spark driver that may not collect a table: ``spark.driver.maxResultSize``
is far below the bronze batch and the heap is small, so a path that brought the table (or a
batch) to the driver as Arrow/polars would fail the job. Broadcast joins pass through the driver
too, bounded by ``spark.sql.autoBroadcastJoinThreshold`` (10 MB by default) whatever the table
size: here the threshold sits below the result limit. Its own process: one SparkContext per
process, and these limits are fixed when the context starts.

    python -m tests.engine.driver_limited_apply LAKE SPEC...
"""

import json
import sys

from lakehouse_assets.resources.connections import build_engine
from lakehouse_assets.settings import LakehouseSettings
from lakehouse_assets.silver.apply_changes import apply_changes
from tests.engine.test_spark_driver_memory import DRIVER_MEMORY, MAX_RESULT_SIZE, SPECS

if __name__ == "__main__":
    lake, names = sys.argv[1], sys.argv[2:]
    config = LakehouseSettings(
        engine="spark", spark_master="local[2]", spark_driver_memory=DRIVER_MEMORY
    ).spark_config()
    limits = {"spark.driver.maxResultSize": MAX_RESULT_SIZE, "spark.sql.autoBroadcastJoinThreshold": "256k"}
    engine = build_engine(lake, "spark", {**config, **limits})
    report = {}
    for name in names:
        result = apply_changes(engine, SPECS[name], batch_id="limited")
        report[name] = {"applied": result.events_applied, "read": result.events_read}
    try:  # the limit holds: collecting the bronze table to the driver fails
        engine.read(SPECS[names[0]].source)
        report["full_read"] = "succeeded"
    except Exception as exc:  # noqa: BLE001 - the job error Spark raises is what we report
        report["full_read"] = "maxResultSize" if "maxResultSize" in str(exc) else repr(exc)[:500]
    print("REPORT " + json.dumps(report))
