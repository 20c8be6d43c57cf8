"""Every lake table's name, in one place: ``<layer>/<name>`` under the lake root.

Modules import the names from here instead of from each other, so a reader of a table (a
sensor, maintenance, the catalog, erasure) does not load the module that writes it. Names of
tables that a declaration adds (a source table, a silver spec, a dbt mart) are built by the
functions below from that declaration's name.
"""

from __future__ import annotations

# Bronze: one table of change events per source table, one per landing dataset.
LANDING_QUARANTINE_TABLE = "bronze/landing_quarantine"

# Silver: the quarantine of rejected change events and the expectation results of each run.
SILVER_QUARANTINE_TABLE = "silver/quarantine"
EXPECTATION_RESULTS_TABLE = "silver/expectation_results"
SILVER_ORDERS_TABLE = "silver/orders"
SILVER_ORDER_ITEMS_TABLE = "silver/order_items"
SILVER_CUSTOMERS_TABLE = "silver/customers"
SILVER_PRODUCTS_TABLE = "silver/products"
SILVER_RETURNS_TABLE = "silver/returns"

# Gold: the dbt marts the platform reads (dbt writes every mart as gold/<model>).
FCT_ORDERS_TABLE = "gold/fct_orders"
CUSTOMER_FEATURES_TABLE = "gold/customer_daily_features"
PRODUCT_FEATURES_TABLE = "gold/product_daily_features"

# Features, models, serving and monitoring.
REALTIME_CUSTOMER_FEATURES_TABLE = "features/customer_realtime_features"  # written by `lakehouse stream`
ALIAS_HISTORY_TABLE = "ml/alias_history"
EVALUATIONS_TABLE = "ml/model_evaluations"
INFERENCE_LOG_TABLE = "serving/inference_log"
DRIFT_TABLE = "monitoring/drift_metrics"
QUALITY_TABLE = "monitoring/model_quality"
HEALTH_TABLE = "monitoring/system_health"
STREAM_LAG_TABLE = "monitoring/stream_lag"  # `lakehouse stream`: lag of each micro-batch
ONLINE_COMPARISON_TABLE = "monitoring/online_comparison"

# Governance, saved queries and notebook reports.
ERASURES_TABLE = "governance/erasures"
ERASED_ORDERS_TABLE = "governance/erased_orders"
ALERT_EVENTS_TABLE = "queries/alert_events"
RETURN_DRIVERS_TABLE = "reports/return_drivers"


def bronze_table(name: str) -> str:
    """The bronze table of a source table's change events or of a landing dataset's rows."""
    return f"bronze/{name}"


def silver_table(name: str) -> str:
    """The silver table an apply-changes spec maintains."""
    return f"silver/{name}"


def tombstones_table(name: str) -> str:
    """The deleted keys of a silver table (so a late update cannot resurrect a deleted row)."""
    return f"silver/_tombstones/{name}"


def training_set_table(product: str) -> str:
    """A data product's point-in-time training set."""
    return f"features/{product}_training_set"


def scores_table(product: str) -> str:
    """A data product's batch scores (one row per scored entity and time)."""
    return f"gold/{product}_scores"


def gold_table(model: str) -> str:
    """The Delta table dbt writes for a mart."""
    return f"gold/{model}"


# Appended to in small commits all day long: compaction matters most for these.
APPEND_LOG_TABLES: dict[str, list[str]] = {
    INFERENCE_LOG_TABLE: ["served_at"],
    DRIFT_TABLE: [],
    QUALITY_TABLE: [],
    HEALTH_TABLE: [],
    STREAM_LAG_TABLE: [],
}
