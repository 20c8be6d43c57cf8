"""Synthetic gold marts in a feature view's schema, for feature-store tests."""

from datetime import datetime

import polars as pl
from feast.types import Float64, Int64, String

T0 = datetime(2026, 3, 1)


def gold_rows(view, key: str, entities: int, days: int) -> pl.DataFrame:
    """One row per entity and day (feature_ts = T0 + day), values computed from (entity, day)."""
    grid = pl.DataFrame({key: pl.int_range(1, entities + 1, eager=True)}).join(
        pl.DataFrame({"_day": pl.int_range(0, days, eager=True)}), how="cross"
    )
    e, d = pl.col(key), pl.col("_day")
    values = {Int64: e * 10 + d, Float64: e + d / 4, String: pl.format("s{}", e % 3)}
    return grid.select(
        key,
        (pl.lit(T0) + pl.duration(days=d)).alias("feature_ts"),
        *[values[f.dtype].alias(f.name) for f in view.features],
    )


def write_gold_features(lake_root: str, definitions, entities: int = 30, days: int = 4) -> None:
    """Both gold feature marts (customers and products) as Delta tables under the lake."""
    from deltalake import write_deltalake

    for view, key in (
        (definitions.customer_features, "customer_id"),
        (definitions.product_features, "product_id"),
    ):
        write_deltalake(f"{lake_root}/gold/{view.name}", gold_rows(view, key, entities, days).to_arrow())


def write_return_risk_inputs(settings, orders: int, customers: int, products: int, days: int) -> None:
    """The return-risk product's inputs: ``orders`` labelled orders of ``customers`` customers
    over ``days`` days (one in 11 labels unknown), two lines each, the customers' and products'
    daily feature rows; then the feature definitions applied."""
    from deltalake import write_deltalake

    from lakehouse_assets.features.store import feature_store

    store, definitions = feature_store(settings)
    lake = settings.lake_root
    for view, key, entities in (
        (definitions.customer_features, "customer_id", customers),
        (definitions.product_features, "product_id", products),
    ):
        write_deltalake(f"{lake}/gold/{view.name}", gold_rows(view, key, entities, days).to_arrow())
    order = pl.int_range(0, orders, eager=True)
    fct_orders = pl.DataFrame({"order_id": order}).with_columns(
        customer_id=1 + pl.col("order_id") % customers,
        order_ts=pl.lit(T0) + pl.duration(minutes=pl.col("order_id") * days * 1440 // orders),
        amount=20.0 + pl.col("order_id") % 300,
        discount=pl.lit(0.1),
        returned_within_30d=pl.when(pl.col("order_id") % 11 == 0)
        .then(None)
        .otherwise(pl.col("order_id") % 3 == 0),
        label_known_at=pl.lit(T0) + pl.duration(days=days + 30),
    )
    write_deltalake(f"{lake}/gold/fct_orders", fct_orders.to_arrow())
    del fct_orders
    items = pl.DataFrame({"order_id": pl.concat([order, order])}).with_columns(
        order_item_id=pl.int_range(0, 2 * orders),
        product_id=1 + (pl.col("order_id") * 7 + pl.int_range(0, 2 * orders) // orders) % products,
        quantity=1 + pl.col("order_id") % 3,
    )
    write_deltalake(f"{lake}/silver/order_items", items.to_arrow())
    store.apply(definitions.all())
