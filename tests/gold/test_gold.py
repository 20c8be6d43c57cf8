from datetime import date, datetime

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.gold.assets import gold_dbt_models
from lakehouse_assets.resources.sources import build_resources

TS = pl.Datetime("us")


def ts(text):
    return datetime.fromisoformat(text)


def write_silver_fixture(engine):
    """A hand-made silver layer small enough to compute every gold value by hand."""
    engine.append(
        "silver/customers",
        pl.DataFrame(
            {
                "customer_id": [1],
                "name": ["Ada Meyer"],
                "email": ["a@x"],
                "city": ["Berlin"],
                "country": ["DE"],
                "segment": ["regular"],
                "created_at": [ts("2025-12-01 00:00:00")],
                "updated_at": [ts("2025-12-01 00:00:00")],
                "valid_from": [ts("2025-12-01 00:00:00")],
                "valid_to": pl.Series([None], dtype=TS),
                "is_current": [True],
                "_seq": [1],
                "_last_seq": [1],
                "_end_seq": pl.Series([None], dtype=pl.Int64),
            }
        ),
    )
    engine.append(
        "silver/products",
        pl.DataFrame(
            {
                "product_id": [1, 2, 3],
                "name": ["shirt", "book", "socks"],
                "category": ["apparel", "books", "apparel"],
                "price": [50.0, 10.0, 40.0],
                "created_at": [ts("2025-01-01 00:00:00")] * 3,
                "updated_at": [ts("2025-01-01 00:00:00")] * 3,
                "_seq": [1, 2, 5],
                "_commit_ts": [ts("2025-01-01 00:00:00")] * 3,
            }
        ),
    )
    order_ts = [ts("2026-01-01 10:00:00"), ts("2026-01-03 12:00:00"), ts("2026-02-20 09:00:00")]
    engine.append(
        "silver/orders",
        pl.DataFrame(
            {
                "order_id": [1, 2, 3],
                "customer_id": [1, 1, 1],
                "status": ["returned", "delivered", "placed"],
                "order_ts": order_ts,
                "amount": [100.0, 10.0, 50.0],
                "discount": [0.0, 0.1, 0.0],
                "updated_at": order_ts,
                "_seq": [1, 2, 3],
                "_commit_ts": order_ts,
            }
        ),
    )
    engine.append(
        "silver/order_items",
        pl.DataFrame(
            {
                "order_item_id": [1, 2, 3],
                "order_id": [1, 2, 3],
                "product_id": [1, 2, 1],
                "quantity": [2, 1, 1],
                "unit_price": [50.0, 10.0, 50.0],
                "discount": [0.0, 0.1, 0.0],
                "_seq": [1, 2, 3],
                "_commit_ts": order_ts,
            }
        ),
    )
    engine.append(
        "silver/returns",
        pl.DataFrame(
            {
                "return_id": [1],
                "order_id": [1],
                "reason": ["wrong_size"],
                "return_ts": [ts("2026-01-10 08:00:00")],
                "refund_amount": [100.0],
                "_seq": [4],
                "_commit_ts": [ts("2026-01-10 08:00:00")],
            }
        ),
    )


@pytest.fixture
def gold_from_fixture(settings):
    engine = DeltaEngine(settings.lake_root)
    write_silver_fixture(engine)
    result = materialize(
        [gold_dbt_models], resources=build_resources(settings), instance=DagsterInstance.ephemeral()
    )
    assert result.success
    return engine, result


def test_dbt_build_on_a_hand_made_silver_fixture(gold_from_fixture):
    """One dbt build (it takes seconds), two kinds of assertions."""
    engine, result = gold_from_fixture
    assert_build_and_checks(engine, result)
    assert_hand_computed_values(engine)


def assert_build_and_checks(engine, result):
    checks = result.get_asset_check_evaluations()
    assert len(checks) >= 20 and all(c.passed for c in checks)
    assert any(c.asset_key == AssetKey("fct_orders") and "unique" in c.check_name for c in checks)
    mats = {
        m.asset_key
        for m in result.get_asset_materialization_events()
        for m in [m.event_specific_data.materialization]
    }
    assert {
        AssetKey("fct_orders"),
        AssetKey("customer_daily_features"),
        AssetKey("product_daily_features"),
        AssetKey("stg_orders"),
    } <= mats
    # The marts are real Delta tables in the lake (readable by delta-rs, hence by Spark).
    assert engine.history("gold/fct_orders")[0]["operation"] in ("WRITE", "CREATE OR REPLACE TABLE")


def assert_hand_computed_values(engine):
    orders = engine.read("gold/fct_orders").sort("order_id")
    assert orders.select(
        "order_id", "n_items", "main_category", "returned_within_30d", "label_known_at"
    ).rows() == [
        (1, 2, "apparel", True, ts("2026-01-10 08:00:00")),  # returned after 9 days
        (2, 1, "books", False, ts("2026-02-02 12:00:00")),  # 30 days passed, no return
        (3, 1, "apparel", None, None),  # 30 days not passed yet
    ]
    customer = engine.read("gold/customer_daily_features").filter(pl.col("customer_id") == 1)
    by_day = {row["feature_date"]: row for row in customer.iter_rows(named=True)}
    assert min(by_day) == date(2026, 1, 1) and max(by_day) == date(2026, 2, 20)
    jan9, jan10 = by_day[date(2026, 1, 9)], by_day[date(2026, 1, 10)]
    assert (jan10["orders_7d"], jan10["orders_30d"], jan10["spend_30d"]) == (0, 2, 110.0)
    assert (jan9["returns_30d"], jan10["returns_30d"]) == (0, 1)  # known from its day on
    assert jan10["days_since_last_order"] == 7
    assert jan10["avg_discount_90d"] == pytest.approx(0.05)
    assert jan10["feature_ts"] == ts("2026-01-11 00:00:00")
    assert by_day[date(2026, 1, 2)]["days_since_last_order"] == 1
    products = engine.read("gold/product_daily_features").filter(pl.col("product_id") == 1)
    rate = dict(products.select("feature_date", "return_rate_90d").iter_rows())
    assert rate[date(2026, 1, 9)] == 0.0 and rate[date(2026, 1, 10)] == 1.0
    assert rate[date(2026, 2, 20)] == pytest.approx(2 / 3)
    assert products["price_band"].unique().to_list() == ["mid"]
    # Socks never sold: no rate of their own, but their category's (the shirts') rate.
    socks = engine.read("gold/product_daily_features").filter(
        (pl.col("product_id") == 3) & (pl.col("feature_date") == date(2026, 1, 10))
    )
    assert socks.select("return_rate_90d", "category_return_rate_90d").row(0) == (None, 1.0)
