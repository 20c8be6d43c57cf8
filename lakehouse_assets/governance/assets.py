"""Governance assets: GDPR erasure of customers deleted in the source, and its proof."""

from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)
from feast.errors import FeastObjectNotFoundException

from lakehouse_assets.conflicts import retry_on_conflict
from lakehouse_assets.features.online_writer import delete_entities, entities_present
from lakehouse_assets.governance.erasure import erase_customers, purge, remaining_rows
from lakehouse_assets.metadata import OWNERS, table_metadata
from lakehouse_assets.resources.feast import FeastResource
from lakehouse_assets.resources.lake import LakeResource
from lakehouse_assets.silver.assets import SILVER_ASSETS
from lakehouse_assets.tables import ERASED_ORDERS_TABLE, ERASURES_TABLE

CUSTOMER_VIEWS = ("customer_daily_features", "customer_realtime_features")  # keyed by customer
GOLD_DB = "gold.duckdb"  # dbt-duckdb's database in the gold folder (profiles.yml)


def _erase(context: AssetExecutionContext, lake: LakeResource, feast: FeastResource):
    engine = lake.engine()
    store = feast.store()
    gold_db = Path(lake.gold_dir) / GOLD_DB

    def online(action):
        def run(ids: list[int]) -> int:
            total = 0
            for view in CUSTOMER_VIEWS:
                with suppress(FeastObjectNotFoundException):  # never registered: nothing online
                    total += action(store, view, ids)
            return total

        return run

    result = retry_on_conflict(
        context,
        lambda: erase_customers(
            engine,
            retention_hours=lake.time_travel_retention_hours,
            gold_db=gold_db,
            online_delete=online(delete_entities),
            log=context.log.info,
        ),
    )
    purged = purge(engine, lake.time_travel_retention_hours)
    remaining = remaining_rows(engine, result.customers, result.orders, gold_db, online(entities_present))
    context.log.info(
        f"{len(result.customers)} erased customer(s), {len(result.new_requests)} "
        f"new; rows deleted: {result.rows_deleted or 'none'}"
    )
    yield MaterializeResult(
        metadata={
            **table_metadata(engine, ERASURES_TABLE, preview_rows=0),  # ids are not shown
            "erased_customers": len(result.customers),
            "erased_orders": len(result.orders),
            "new_requests": len(result.new_requests),
            "rows_deleted": MetadataValue.json(result.rows_deleted),
            "vacuumed_tables": MetadataValue.json(purged),
        }
    )
    yield AssetCheckResult(
        check_name="erased_customers_unreadable",
        passed=not any(remaining.values()),
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "customers_checked": len(result.customers),
            "readable_rows": MetadataValue.json({k: v for k, v in remaining.items() if v}),
            "places_checked": len(remaining),
        },
    )


def customer_erasure_asset(training_sets: Sequence[AssetKey]) -> AssetsDefinition:
    """The erasure asset, downstream of every table it erases from (the data products'
    training sets included, so a rebuilt set is erased in the same run)."""
    return asset(
        name="customer_erasure",
        group_name="governance",
        kinds={"delta", "feast", "duckdb"},
        owners=OWNERS,
        deps=[
            *(a.key for a in SILVER_ASSETS),
            AssetKey("fct_orders"),
            *(AssetKey(view) for view in CUSTOMER_VIEWS),
            AssetKey("online_features"),
            *training_sets,
            AssetKey("inference_log"),
        ],
        metadata={
            "table": ERASURES_TABLE,
            "also_writes": MetadataValue.json(
                {
                    ERASED_ORDERS_TABLE: "Orders of erased customers: rows keyed by these order ids (lines, "
                    "returns, payments) are erased too."
                }
            ),
        },
        check_specs=[
            AssetCheckSpec(
                "erased_customers_unreadable",
                asset="customer_erasure",
                blocking=True,
                description="No row of an erased customer is readable at the current version of any "
                "Delta table with a customer id, silver quarantine, dbt's DuckDB tables or the online "
                "store (each read afresh, not taken from the erasure's own counts).",
            )
        ],
        description="GDPR erasure: every customer deleted in the source is removed from every lake "
        "table with a customer_id (bronze's change log included), silver quarantine, dbt's DuckDB "
        "tables and the online store; ids are kept in governance/erasures so later rows are erased "
        "too. After the VACUUM window (lake time_travel_retention_hours) the tables are vacuumed and "
        "the deletes' change files removed, so no earlier version holds the rows either.",
    )(_erase)
