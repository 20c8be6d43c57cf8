"""GDPR erasure over a simulated shop: customers deleted in the source are gone from every lake
table, silver quarantine, dbt's DuckDB tables and the online store; rows arriving later are
erased on the next run; after the VACUUM window no earlier version holds them either."""

import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from dagster import DagsterInstance
from deltalake import DeltaTable

from lakehouse_assets.definitions import build_definitions
from lakehouse_assets.features.online_writer import entities_present
from lakehouse_assets.features.store import feature_store
from lakehouse_assets.governance.erasure import erasure_change_files, purge
from lakehouse_assets.tables import ERASURES_TABLE
from tests.lake_compare import delta_tables


def deleted_in_source(source_db: Path) -> tuple[list[int], list[int]]:
    """Customers deleted in the source and every order they ever had, from its change log."""
    with closing(sqlite3.connect(source_db)) as conn:
        customers = [
            r[0] for r in conn.execute("SELECT DISTINCT customer_id FROM _cdc_customers WHERE _op = 'delete'")
        ]
        orders = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT order_id FROM _cdc_orders WHERE customer_id IN "
                f"({','.join(map(str, customers or [-1]))})"
            )
        ]
    return customers, orders


def readable_rows(lake_root: str, ids: list[int], orders: list[int]) -> dict[str, int]:
    """Rows of the customers (or, where a table has no customer id, of their orders) in every
    table of the lake, read directly with delta-rs."""
    found = {}
    for table in delta_tables(lake_root):
        names = DeltaTable(f"{lake_root}/{table}").schema().to_arrow().names
        column, values = (
            ("customer_id", ids)
            if "customer_id" in names
            else ("order_id", orders)
            if "order_id" in names
            else (None, [])
        )
        if column and not table.startswith("governance/"):
            frame = pl.DataFrame(
                pl.from_arrow(DeltaTable(f"{lake_root}/{table}").to_pyarrow_table(columns=[column]))
            )
            found[table] = frame.filter(pl.col(column).is_in(values)).height
    return found


def daily_pipeline(settings, instance):
    result = (
        build_definitions(settings)
        .resolve_job_def("daily_pipeline_job")
        .execute_in_process(instance=instance, raise_on_error=False)
    )
    assert result.success, [e.event_specific_data.error.to_string() for e in result.get_step_failure_events()]
    (check,) = [
        c for c in result.get_asset_check_evaluations() if c.check_name == "erased_customers_unreadable"
    ]
    return result, check


def test_a_customer_deleted_in_the_source_leaves_no_readable_row(simulated, settings, engine):
    erased, orders = deleted_in_source(settings.source_db)
    assert erased and orders, "the simulation deletes some customers (GDPR erasures)"
    instance = DagsterInstance.ephemeral()
    _, check = daily_pipeline(settings, instance)
    assert check.passed, check.metadata

    # They were captured (bronze's first version holds their rows), and are gone now.
    first = engine.read("bronze/customers", version=1)
    assert first.filter(pl.col("customer_id").is_in(erased)).height > 0
    remaining = readable_rows(settings.lake_root, erased, orders)
    assert {
        "bronze/customers",
        "silver/customers",
        "bronze/orders",
        "gold/fct_orders",
        "gold/customer_daily_features",
        "bronze/order_items",
        "silver/returns",
    } <= set(remaining)
    assert sum(remaining.values()) == 0, remaining
    customers = engine.read("silver/customers")["customer_id"].unique().sort().to_list()
    kept = [i for i in customers if i not in erased][:5]
    store, _ = feature_store(settings)
    assert entities_present(store, "customer_daily_features", erased) == 0
    assert entities_present(store, "customer_daily_features", kept) == len(kept)
    with duckdb.connect(str(settings.gold_dir / "gold.duckdb"), read_only=True) as conn:
        versions = conn.execute(
            "SELECT COUNT(*) FROM staging.stg_customer_versions WHERE customer_id "
            "IN (SELECT UNNEST(?::BIGINT[]))",
            [erased],
        ).fetchone()[0]
    assert versions == 0
    assert sorted(engine.read(ERASURES_TABLE)["customer_id"].to_list()) == sorted(erased)

    # The service logged a prediction for an erased customer (and one for a kept customer).
    engine.append(
        "serving/inference_log",
        pl.DataFrame({"request_id": ["erased", "kept"], "customer_id": [erased[0], kept[0]]}),
    )
    # A new order of an erased customer reaches the source: captured, then erased again.
    with closing(sqlite3.connect(settings.source_db)) as conn, conn:
        conn.execute(
            "INSERT INTO orders (order_id, customer_id, status, order_ts, amount, "
            "discount, updated_at) VALUES (999999, ?, 'placed', '2026-03-01 10:00:00', "
            "10.0, 0.0, '2026-03-01 10:00:00')",
            (erased[0],),
        )
    result, check = daily_pipeline(settings, instance)
    assert check.passed, check.metadata
    erasure = result.asset_materializations_for_node("customer_erasure")[0]
    assert erasure.metadata["rows_deleted"].value.get("bronze/orders") == 1
    assert engine.read("serving/inference_log")["request_id"].to_list() == ["kept"]
    assert sum(readable_rows(settings.lake_root, erased, [*orders, 999999]).values()) == 0

    # Until the VACUUM window has passed, old versions and the deletes' change files hold the
    # rows; after it, both are gone.
    assert erasure_change_files(engine, "bronze/customers")
    later = datetime.now(UTC) + timedelta(hours=settings.time_travel_retention_hours + 1)
    assert purge(engine, 0, now=datetime.now(UTC)) == []  # not due yet
    assert purge(engine, 0, now=later)
    assert erasure_change_files(engine, "bronze/customers") == []
    with pytest.raises(Exception, match="(?i)not found|no such file|does not exist"):
        engine.read("bronze/customers", version=1)
    assert engine.read(ERASURES_TABLE)["purged_at"].null_count() == 0
