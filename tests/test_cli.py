"""The `lakehouse` command end to end on one demo home (session fixture): simulate, demo with
checkout traffic, features, saved queries, catalog and lineage."""

import json

import polars as pl

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.tables import CUSTOMER_FEATURES_TABLE
from tests.lake_compare import delta_tables


def test_simulate_then_demo_end_to_end(demo_home):
    assert demo_home.simulated.exit_code == 0, demo_home.simulated.output
    assert "simulated 40 day(s)" in demo_home.simulated.output
    demo = demo_home.demo
    assert demo.exit_code == 0, demo.output
    assert "succeeded" in demo.output and "FAILED" not in demo.output
    lake = demo_home.home / "lake"
    assert (lake / "bronze" / "orders" / "_delta_log").is_dir()
    # The run is recorded in the Dagster instance under the same home folder (seen by `ui`).
    assert (demo_home.home / "dagster" / "history").is_dir()
    assert (lake / "features" / "return_risk_training_set" / "_delta_log").is_dir()
    # Checkout traffic was scored by the champion and monitored.
    assert "checkout traffic: 0 scored" not in demo.output
    engine = DeltaEngine(str(lake))
    assert engine.row_count("serving/inference_log") >= 50
    assert engine.exists("monitoring/system_health")

    listing = demo_home.cli("features")
    assert listing.exit_code == 0, listing.output
    assert "customer_daily_features" in listing.output and "return_risk_v1" in listing.output


def test_the_demo_trains_serves_and_batch_scores_both_products(demo_home):
    listed = demo_home.cli("products", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {r["product"]: r for r in json.loads(listed.stdout)}
    assert rows["return_risk"]["champion"] and rows["return_risk"]["serving"] == "online"
    assert rows["demand_forecast"]["champion"] and rows["demand_forecast"]["serving"] == "batch"
    engine = DeltaEngine(str(demo_home.home / "lake"))
    scores = engine.read("gold/demand_forecast_scores")
    products = engine.read("gold/product_demand_daily")
    newest = products["forecast_ts"].max()
    assert scores.height == products.filter(pl.col("forecast_ts") == newest).height > 0
    forecast = demo_home.cli("query", "business_demand_forecast")
    assert forecast.exit_code == 0 and "business_demand_forecast:" in forecast.output, forecast.output
    used = demo_home.cli("features", "--used-by", "units_last_7d")
    assert used.exit_code == 0 and "demand_forecast" in used.output and "return_risk" not in used.output
    by_view = demo_home.cli("features", "--used-by", "customer_daily_features")
    assert "return_risk" in by_view.output and "demand_forecast" not in by_view.output


def test_a_saved_query_runs_from_the_command_line(demo_home):
    result = demo_home.cli("query", "business_daily_orders", "--param", "days=3")
    assert result.exit_code == 0, result.output
    assert "business_daily_orders: 3 row(s)" in result.output
    wrong = demo_home.cli("query", "business_daily_orders", "--param", "days=soon")
    assert wrong.exit_code != 0 and "'days' expects int" in wrong.output
    unknown = demo_home.cli("query", "nope")
    assert unknown.exit_code != 0 and "no saved query 'nope'" in unknown.output


def test_the_catalog_lists_every_lake_table_with_owner_schema_and_lineage(demo_home):
    result = demo_home.cli("catalog", "--json")
    assert result.exit_code == 0, result.output
    entries = {e["table"]: e for e in json.loads(result.output)}
    assert set(delta_tables(demo_home.home / "lake")) <= set(entries)
    for table in delta_tables(demo_home.home / "lake"):
        entry = entries[table]
        assert entry["assets"], f"{table} is written by no declared asset"
        assert entry["owners"] and entry["description"] and entry["columns"], table
        assert entry["delta_version"] is not None and entry["last_update"], table
    customers = entries["silver/customers"]
    assert set(customers["pii_columns"]) == {"name", "email", "city"}
    assert customers["upstream"] == ["bronze_customers"]
    assert "stg_customer_versions" in customers["downstream"]
    assert all(c["description"] for c in customers["columns"])
    assert entries["gold/customer_daily_features"]["pii_columns"] == ["city"]
    assert entries["gold/fct_orders"]["rows"] == DeltaEngine(str(demo_home.home / "lake")).row_count(
        "gold/fct_orders"
    )
    one = demo_home.cli("catalog", "silver/customers")
    assert one.exit_code == 0 and "Customer's e-mail address" in one.output


def test_lineage_of_a_served_prediction_names_its_source_rows(demo_home):
    engine = DeltaEngine(str(demo_home.home / "lake"))
    log = engine.read("serving/inference_log").filter(pl.col("orders_90d") > 0)
    served = log.sort("served_at").row(-1, named=True)  # a customer with orders to trace
    result = demo_home.cli("lineage", served["request_id"], "--json")
    assert result.exit_code == 0, result.output
    lineage = json.loads(result.output)
    assert lineage["model_version"] == served["model_version"] and lineage["model_run_id"]
    assert lineage["training_set"]["table"].endswith("features/return_risk_training_set")
    assert "gold/fct_orders" in lineage["training_set"]["source_delta_versions"]
    assert "customer_daily_features" in lineage["feature_views"]
    (customer,) = lineage["feature_rows"][CUSTOMER_FEATURES_TABLE]
    assert customer["customer_id"] == served["customer_id"]
    # The silver orders behind the served 90-day features are exactly as many as they counted,
    # and add up to the spend they summed.
    orders = pl.DataFrame(lineage["source_rows"]["silver/orders"])
    assert orders.height == customer["orders_90d"] == served["orders_90d"] > 0
    assert set(orders["customer_id"]) == {served["customer_id"]}
    assert abs(orders["amount"].sum() - customer["spend_90d"]) < 0.01
    # Every one of those orders has its change events in bronze.
    events = pl.DataFrame(lineage["change_events"]["bronze/orders"])
    assert set(events["order_id"]) == set(orders["order_id"])
    customer_events = lineage["change_events"]["bronze/customers"]
    assert customer_events and customer_events[0]["_op"] == "insert"
    products = {p["product_id"] for p in lineage["source_rows"]["silver/products"]}
    assert products == set(lineage["product_ids"])
    missing = demo_home.cli("lineage", "no-such-request")
    assert missing.exit_code != 0 and "no prediction with request id" in missing.output
