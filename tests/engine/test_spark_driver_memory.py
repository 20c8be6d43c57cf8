"""Nothing collected to the driver: apply-changes on Spark completes with a driver that cannot
take a table (see ``driver_limited_apply``), and writes the same silver tables as the embedded
engine."""

import json
import shutil
import subprocess
import sys

import polars as pl
import pytest

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.silver.apply_changes import ApplyChangesSpec, Expectation, apply_changes
from lakehouse_assets.sources.cdc import BRONZE_TABLE_CONFIG

pytestmark = pytest.mark.spark

EVENTS = 400_000
KEYS = 100_000
DRIVER_MEMORY = "512m"
MAX_RESULT_SIZE = "1m"  # the bronze batch is ~20x this, serialized
CHECKED = (Expectation("b_known", "b IS NOT NULL", "drop"),)
COLUMNS = ("k", "a", "b")
SPECS = {
    "scd1": ApplyChangesSpec(
        "limited1", "bronze/limited", keys=("k",), columns=COLUMNS, expectations=CHECKED
    ),
    "scd2": ApplyChangesSpec(
        "limited2",
        "bronze/limited",
        keys=("k",),
        columns=COLUMNS,
        scd_type=2,
        track_history_columns=("a",),
        expectations=CHECKED,
    ),
}


def bronze_events(n: int) -> pl.DataFrame:
    """Change events over KEYS keys: shuffled, 5% duplicated, 10% deletes, a few rows to drop."""
    seq = pl.int_range(0, n, eager=True)
    frame = pl.DataFrame({"_seq": seq}).with_columns(
        _op=pl.when(pl.col("_seq") % 10 == 0).then(pl.lit("delete")).otherwise(pl.lit("update")),
        _commit_ts=pl.datetime(2026, 1, 1) + pl.duration(seconds=pl.col("_seq")),
        k=(pl.col("_seq") * 7919) % KEYS,
        a=pl.col("_seq") % 3,
        b=pl.when(pl.col("_seq") % 997 == 0)
        .then(None)
        .otherwise(pl.format("customer-{}-segment-{}", pl.col("_seq") % 1000, pl.col("_seq") % 7)),
    )
    frame = pl.concat([frame, frame.sample(fraction=0.05, seed=1)])
    return frame.sample(fraction=1.0, shuffle=True, seed=2)


def test_apply_changes_completes_on_a_driver_that_cannot_hold_the_batch(tmp_path):
    embedded = DeltaEngine(str(tmp_path / "embedded"))
    events = bronze_events(EVENTS).to_arrow()
    embedded.ensure_table("bronze/limited", events.schema, configuration=BRONZE_TABLE_CONFIG)
    embedded.append("bronze/limited", events)
    shutil.copytree(tmp_path / "embedded", tmp_path / "spark")
    child = subprocess.run(
        [sys.executable, "-m", "tests.engine.driver_limited_apply", str(tmp_path / "spark"), *SPECS],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-3000:]
    report = json.loads(child.stdout.split("REPORT ", 1)[1])
    assert report["full_read"] == "maxResultSize", report  # the limit would catch a collect
    spark_lake = DeltaEngine(str(tmp_path / "spark"))
    for name, spec in SPECS.items():
        expected = apply_changes(embedded, spec, batch_id="embedded")
        assert report[name] == {"applied": expected.events_applied, "read": expected.events_read}
        order = [*spec.keys, "_seq"]
        assert spark_lake.read(spec.table).sort(order).equals(embedded.read(spec.table).sort(order)), name
