"""The lake API for notebooks: names, reads, time travel, history, SQL, and errors that say what
was wrong. A small lake is written here with the engine; the pipeline's own tables are read on
the session demo (every one of them)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import polars as pl
import pytest
from deltalake import DeltaTable

from lakehouse_assets import lake
from lakehouse_assets.engine import DeltaEngine
from tests.lake_compare import delta_tables


@pytest.fixture
def small_lake(settings, engine: DeltaEngine) -> dict[str, datetime]:
    """silver/orders at three versions, with a pause between commits (for as_of)."""
    moments = {}
    engine.append("silver/orders", pl.DataFrame({"order_id": [1, 2], "amount": [10.0, 20.0]}))
    moments["after_v0"] = datetime.now(UTC)
    time.sleep(0.05)
    engine.append("silver/orders", pl.DataFrame({"order_id": [3], "amount": [30.0]}))
    moments["after_v1"] = datetime.now(UTC)
    time.sleep(0.05)
    engine.overwrite("silver/orders", pl.DataFrame({"order_id": [9], "amount": [90.0]}))
    engine.append("gold/orders", pl.DataFrame({"order_id": [1]}))
    engine.append("gold/fct_orders", pl.DataFrame({"order_id": [1, 2, 3], "amount": [5.0, 6.0, 7.0]}))
    return moments


def test_read_resolves_names_and_returns_polars_or_pandas(small_lake):
    assert lake.read("silver/orders")["order_id"].to_list() == [9]
    assert lake.read("silver.orders")["order_id"].to_list() == [9]
    assert lake.read("fct_orders").height == 3  # one table has that name
    frame = lake.read("gold/fct_orders", columns=["amount"], as_pandas=True)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["amount"]
    assert frame["amount"].sum() == 18.0


def test_time_travel_by_version_and_by_time_gives_that_versions_rows(small_lake):
    assert sorted(lake.read("silver/orders", version=0)["order_id"]) == [1, 2]
    assert sorted(lake.read("silver/orders", version=1)["order_id"]) == [1, 2, 3]
    assert sorted(lake.read("silver/orders", as_of=small_lake["after_v0"])["order_id"]) == [1, 2]
    naive_utc = small_lake["after_v1"].replace(tzinfo=None).isoformat()
    assert sorted(lake.read("silver/orders", as_of=naive_utc)["order_id"]) == [1, 2, 3]
    assert lake.read("silver/orders", as_of=datetime.now(UTC))["order_id"].to_list() == [9]


def test_history_lists_every_commit_newest_first(small_lake):
    history = lake.history("silver/orders")
    assert history["version"].to_list() == [2, 1, 0]
    assert history["committed_at"].is_sorted(descending=True)
    assert "WRITE" in history["operation"].to_list() or "CREATE TABLE" in history["operation"].to_list()


def test_tables_lists_rows_and_versions(small_lake):
    tables = lake.tables()
    rows = dict(zip(tables["table"], tables["rows"], strict=True))
    assert rows == {"gold/fct_orders": 3, "gold/orders": 1, "silver/orders": 1}
    assert lake.tables(layer="gold")["table"].to_list() == ["gold/fct_orders", "gold/orders"]


def test_sql_runs_over_the_lake_with_parameters(small_lake):
    result = lake.sql(
        "select count(*) as n, sum(amount) as total from gold.fct_orders where amount > $floor", floor=5.5
    )
    assert result.row(0, named=True) == {"n": 2, "total": 13.0}
    with pytest.raises(ValueError, match=r"\['celing'\] are not used"):
        lake.sql("select * from gold.fct_orders where amount > $floor", floor=1, celing=2)


def test_bad_names_and_versions_get_errors_that_say_what_was_wrong(small_lake):
    with pytest.raises(lake.LakeNameError, match="did you mean silver/orders"):
        lake.read("silver/order")
    with pytest.raises(lake.LakeNameError, match="ambiguous: gold/orders, silver/orders"):
        lake.read("orders")
    with pytest.raises(lake.TimeTravelError, match="versions 0 to 2; 7 does not exist"):
        lake.read("silver/orders", version=7)
    with pytest.raises(lake.TimeTravelError, match="did not exist at"):
        lake.read("silver/orders", as_of=datetime.now(UTC) - timedelta(days=1))
    with pytest.raises(ValueError, match="either version= or as_of="):
        lake.read("silver/orders", version=0, as_of=datetime.now(UTC))


def test_a_vacuumed_version_is_reported_not_misread(small_lake, engine):
    DeltaTable(engine.table_path("silver/orders")).vacuum(
        retention_hours=0, enforce_retention_duration=False, dry_run=False, full=True
    )
    assert lake.read("silver/orders")["order_id"].to_list() == [9]
    with pytest.raises(lake.TimeTravelError, match="no longer readable.*VACUUM"):
        lake.read("silver/orders", version=0)


def test_an_empty_lake_says_to_run_the_pipeline(settings):
    with pytest.raises(lake.LakeNameError, match="is empty.*lakehouse demo"):
        lake.read("silver/orders")


@pytest.mark.integration
def test_the_lake_api_reads_every_table_the_pipeline_wrote(demo_home, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_HOME", str(demo_home.home))
    root = str(demo_home.home / "lake")
    written = delta_tables(root)
    assert {
        "bronze/orders",
        "silver/orders",
        "gold/fct_orders",
        "features/return_risk_training_set",
        "serving/inference_log",
        "ml/alias_history",
    } <= set(written)
    assert lake.tables()["table"].to_list() == written
    for table in written:
        frame = lake.read(table)
        expected = DeltaTable(f"{root}/{table}").to_pyarrow_table()
        assert frame.height == expected.num_rows, table
        assert frame.columns == expected.column_names, table
    # time travel on a table the pipeline changed after writing it (erasure, merges)
    history = lake.history("silver/orders")
    assert history.height >= 2
    earlier = history.row(1, named=True)
    by_version = lake.read("silver/orders", version=earlier["version"])
    assert (
        by_version.height
        == DeltaTable(f"{root}/silver/orders", version=earlier["version"]).to_pyarrow_table().num_rows
    )
    assert by_version.sort("order_id").equals(
        lake.read("silver/orders", as_of=earlier["committed_at"]).sort("order_id")
    )
    # the training set the pipeline trains on, also as it was at an earlier version
    data = lake.training_data()
    assert data.version == DeltaTable(f"{root}/features/return_risk_training_set").version()
    assert set(data.source_versions) >= {"gold/fct_orders", "silver/order_items"}
    first = lake.training_data(version=0)
    assert (
        first.frame.height
        == DeltaTable(f"{root}/features/return_risk_training_set", version=0).to_pyarrow_table().num_rows
    )
    assert set(first.source_versions) == set(data.source_versions)
