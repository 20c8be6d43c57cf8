"""The training set: labels only where known, late labels picked up, and an exact rebuild from
the recorded Delta versions (time travel)."""

from datetime import timedelta

import ibis
import polars as pl
from deltalake import write_deltalake

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.features.delta_offline_store import memtable_views
from lakehouse_assets.features.pipeline import build_training_set, in_one_schema, write_training_set
from lakehouse_assets.features.store import feature_store
from tests.features.gold_fixture import T0, gold_rows, write_return_risk_inputs
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


def test_chunks_are_streamed_in_the_schema_of_their_concatenation():
    chunks = [
        pl.DataFrame({"n": [1, 2], "s": [None, None]}),
        pl.DataFrame({"n": [None, 4.5], "s": ["x", None]}),
    ]
    streamed = pl.DataFrame(pl.from_arrow(in_one_schema(iter(chunks)).read_all()))
    assert streamed.equals(pl.concat(chunks, how="vertical_relaxed"))
    assert streamed.schema == pl.Schema({"n": pl.Float64, "s": pl.String})


def test_a_training_set_joined_in_chunks_writes_the_table_of_a_whole_join(settings):
    write_return_risk_inputs(settings, orders=200, customers=4, products=5, days=3)
    lake = settings.lake_root
    # The last orders' customer has no feature rows: only the last chunk holds NULL features.
    unknown = pl.read_delta(f"{lake}/gold/fct_orders").with_columns(
        customer_id=pl.when(pl.col("order_id") >= 190).then(999).otherwise(pl.col("customer_id"))
    )
    write_deltalake(f"{lake}/gold/fct_orders", unknown.to_arrow(), mode="overwrite")
    store, definitions = feature_store(settings)
    engine = DeltaEngine(lake)
    table, versions, labelled = write_training_set(store, engine, definitions, RISK)
    held = memtable_views(ibis.get_backend())
    progress: list[str] = []
    _, chunked_versions, chunked_labelled = write_training_set(
        store, engine, definitions, RISK, max_rows=50, log=progress.append
    )
    assert labelled == chunked_labelled == 181 and chunked_versions == versions
    assert len(progress) == 4 and progress[-1].endswith("181 of 181 rows (4/4)")
    # Each of the 8 retrievals registered its frames with ibis; none is held after it.
    assert memtable_views(ibis.get_backend()) == held
    newest = engine.version(table)
    whole, chunked = (engine.read(table, version=v).sort("order_id") for v in (newest - 1, newest))
    assert chunked.schema == whole.schema and chunked.equals(whole)  # a Delta table has no row order
    assert whole.filter(pl.col("customer_id") == 999)["orders_90d"].null_count() > 0
    assert whole.schema["orders_90d"] == pl.Float64  # as pandas makes an integer with NULLs
