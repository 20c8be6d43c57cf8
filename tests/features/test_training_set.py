"""The training set: labels only where known, late labels picked up, and an exact rebuild from
the recorded Delta versions (time travel)."""

from datetime import timedelta

import polars as pl
from deltalake import write_deltalake

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.features.pipeline import build_training_set
from lakehouse_assets.features.store import feature_store
from tests.features.gold_fixture import T0, gold_rows
from tests.products import product

RISK = product()


def orders(labels: list[bool | None]) -> pl.DataFrame:
    n = len(labels)
    return pl.DataFrame(
        {
            "order_id": list(range(1, n + 1)),
            "customer_id": [1 + i % 3 for i in range(n)],
            "order_ts": [T0 + timedelta(days=1, hours=i) for i in range(n)],
            "amount": [20.0 + i for i in range(n)],
            "discount": [0.1] * n,
            "returned_within_30d": labels,
            "label_known_at": [None if lab is None else T0 + timedelta(days=20) for lab in labels],
        },
        schema_overrides={"returned_within_30d": pl.Boolean},
    )


def order_items(orders: int) -> pl.DataFrame:
    """Order i: one unit of product i % 3 + 1 and two of product 3."""
    return pl.DataFrame(
        {
            "order_item_id": list(range(1, 2 * orders + 1)),
            "order_id": [i for i in range(1, orders + 1) for _ in range(2)],
            "product_id": [p for i in range(1, orders + 1) for p in (i % 3 + 1, 3)],
            "quantity": [1, 2] * orders,
        }
    )


def test_late_labels_and_exact_rebuild_from_recorded_versions(settings):
    store, definitions = feature_store(settings)
    lake = settings.lake_root
    customers = gold_rows(definitions.customer_features, "customer_id", entities=3, days=3)
    write_deltalake(f"{lake}/gold/customer_daily_features", customers.to_arrow())
    write_deltalake(
        f"{lake}/gold/product_daily_features",
        gold_rows(definitions.product_features, "product_id", 3, 3).to_arrow(),
    )
    write_deltalake(f"{lake}/gold/fct_orders", orders([True, None, False, None]).to_arrow())
    write_deltalake(f"{lake}/silver/order_items", order_items(4).to_arrow())
    store.apply(definitions.all())
    engine = DeltaEngine(lake)

    first, versions = build_training_set(store, engine, definitions, RISK)
    assert first["order_id"].to_list() == [1, 3]  # unknown labels are not guessed
    # Order 1 (customer 1, day 1 at 00:00) sees the day-1 row: orders_90d = 1 * 10 + 1.
    assert first.filter(pl.col("order_id") == 1)["orders_90d"].item() == 11
    # Its basket (products 2 and 3) as of day 1: rates 2 + 1/4 and 3 + 1/4, units 1 + 2.
    basket = (
        first.filter(pl.col("order_id") == 1)
        .select(
            "basket_lines",
            "basket_units",
            "basket_max_return_rate_90d",
            "basket_max_category_return_rate_90d",
        )
        .row(0)
    )
    assert basket == (2.0, 3.0, 3.25, 3.25)
    assert set(versions) == {
        "gold/fct_orders",
        "silver/order_items",
        "gold/customer_daily_features",
        "gold/product_daily_features",
    }

    # A label arrives late and a feature row is recomputed: the next build sees both.
    write_deltalake(f"{lake}/gold/fct_orders", orders([True, True, False, None]).to_arrow(), mode="overwrite")
    recomputed = customers.with_columns(
        pl.when(pl.col("customer_id") == 1)
        .then(pl.col("orders_90d") + 1000)
        .otherwise(pl.col("orders_90d"))
        .alias("orders_90d")
    )
    write_deltalake(f"{lake}/gold/customer_daily_features", recomputed.to_arrow(), mode="overwrite")
    # ... and an order's lines change in the source (its product 3 line is cancelled)
    write_deltalake(
        f"{lake}/silver/order_items",
        order_items(4).filter((pl.col("order_id") != 1) | (pl.col("product_id") != 3)).to_arrow(),
        mode="overwrite",
    )
    second, newer = build_training_set(store, engine, definitions, RISK)
    assert second["order_id"].to_list() == [1, 2, 3]
    assert second.filter(pl.col("order_id") == 2)["returned_within_30d"].to_list() == [True]
    assert second.filter(pl.col("order_id") == 1)["orders_90d"].item() == 11 + 1000
    assert second.filter(pl.col("order_id") == 1)["basket_max_return_rate_90d"].item() == 2.25
    assert newer["gold/fct_orders"] > versions["gold/fct_orders"]

    # The first training set comes back exactly from the versions it recorded.
    rebuilt, same = build_training_set(store, engine, definitions, RISK, versions=versions)
    assert same == versions
    assert rebuilt.equals(first)
