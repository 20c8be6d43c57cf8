"""Nothing collected to the driver: apply-changes and the training set on Spark complete with a
driver that cannot take a table (see ``driver_limited_apply``), and write the same tables as the
embedded engine."""

import json
import shutil
import subprocess
import sys

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.features.pipeline import build_training_set
from lakehouse_assets.features.store import feature_store
from lakehouse_assets.runtime import ensure_dirs
from lakehouse_assets.settings import LakehouseSettings
from lakehouse_assets.silver.apply_changes import ApplyChangesSpec, Expectation, apply_changes
from lakehouse_assets.sources.cdc import BRONZE_TABLE_CONFIG
from lakehouse_assets.tables import training_set_table
from tests.features.gold_fixture import write_return_risk_inputs
from tests.features.test_spark_training_set import comparable
from tests.products import product

pytestmark = pytest.mark.spark

EVENTS = 400_000
KEYS = 100_000
ORDERS, CUSTOMERS, PRODUCTS, DAYS = 300_000, 2_000, 300, 30
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


def test_apply_changes_and_the_training_set_complete_on_a_driver_that_cannot_hold_a_table(tmp_path):
    settings = LakehouseSettings(home=tmp_path / "home")
    ensure_dirs(settings)
    events = bronze_events(EVENTS).to_arrow()
    limited = DeltaEngine(settings.lake_root)
    limited.ensure_table("bronze/limited", events.schema, configuration=BRONZE_TABLE_CONFIG)
    limited.append("bronze/limited", events)
    write_return_risk_inputs(settings, ORDERS, CUSTOMERS, PRODUCTS, DAYS)
    shutil.copytree(settings.lake_root, tmp_path / "embedded")
    embedded = DeltaEngine(str(tmp_path / "embedded"))
    child = subprocess.run(
        [sys.executable, "-m", "tests.engine.driver_limited_apply", str(tmp_path / "home")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-3000:]
    report = json.loads(child.stdout.split("REPORT ", 1)[1])
    # the limit would catch a collect of either input
    assert report["bronze/limited"] == report["gold/fct_orders"] == "maxResultSize", report
    store, definitions = feature_store(settings)
    training, _ = build_training_set(store, DeltaEngine(settings.lake_root), definitions, product())
    assert report["training_set"] == {"labelled": training.height, "rows": training.height}
    written = DeltaEngine(settings.lake_root).read(training_set_table("return_risk"))
    assert_frame_equal(comparable(written).sort("order_id"), comparable(training).sort("order_id"))
    spark_lake = limited
    for name, spec in SPECS.items():
        expected = apply_changes(embedded, spec, batch_id="embedded")
        assert report[name] == {"applied": expected.events_applied, "read": expected.events_read}
        order = [*spec.keys, "_seq"]
        assert spark_lake.read(spec.table).sort(order).equals(embedded.read(spec.table).sort(order)), name
