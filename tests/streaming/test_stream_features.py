"""The streamed feature view: every row the stream writes equals the features recomputed from
silver/orders at the version it names, the online store holds each customer's newest row (the
same value offline for the same time), windows fall back without a new order, and a restart
neither loses nor repeats a row."""

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.features.pipeline import online_offline_skew
from lakehouse_assets.features.store import feature_store
from lakehouse_assets.sources.cdc import ChangeLog
from lakehouse_assets.streaming.features import (
    APP_ID,
    ORDER_COLUMNS,
    VIEW,
    RealtimeFeatures,
    customer_activity,
    online_push,
)
from lakehouse_assets.streaming.runner import StreamRunner
from lakehouse_assets.tables import (
    ERASURES_TABLE,
    REALTIME_CUSTOMER_FEATURES_TABLE,
    SILVER_ORDERS_TABLE,
    STREAM_LAG_TABLE,
)


def test_activity_counts_windows_open_orders_and_the_last_order():
    at = datetime(2026, 12, 2, 12, 0)
    orders = pl.DataFrame(
        {
            "order_id": [1, 2, 3, 4, 5],
            "customer_id": [7, 7, 7, 8, 7],
            "order_ts": [
                at - timedelta(minutes=10),
                at - timedelta(hours=3),
                at - timedelta(days=3),
                at - timedelta(minutes=1),
                at + timedelta(minutes=1),  # not known at `at`
            ],
            "amount": [10.0, 20.0, 40.0, 5.0, 80.0],
            "status": ["placed", "shipped", "placed", "delivered", "placed"],
        }
    )
    rows = customer_activity(orders, pl.Series([7, 8, 9]), at, silver_version=3)
    by_id = {r["customer_id"]: r for r in rows.iter_rows(named=True)}
    assert (by_id[7]["orders_1h"], by_id[7]["orders_24h"]) == (1, 2)
    assert (by_id[7]["spend_1h"], by_id[7]["spend_24h"]) == (10.0, 30.0)
    assert by_id[7]["open_orders"] == 2 and by_id[7]["minutes_since_last_order"] == pytest.approx(10.0)
    assert by_id[8]["open_orders"] == 0 and by_id[8]["minutes_since_last_order"] == pytest.approx(1.0)
    assert by_id[9]["orders_24h"] == 0 and by_id[9]["minutes_since_last_order"] is None  # no order
    assert set(rows["feature_ts"].to_list()) == {at} and set(rows["silver_version"]) == {3}


def reference(engine: DeltaEngine, rows: pl.DataFrame) -> pl.DataFrame:
    """The rows recomputed from silver/orders read whole at each row's version."""
    parts = []
    for (version, at), group in rows.group_by("silver_version", "feature_ts"):
        orders = engine.read(SILVER_ORDERS_TABLE, version=version, columns=ORDER_COLUMNS)
        parts.append(customer_activity(orders, group["customer_id"], at, version))
    return pl.concat(parts).sort("feature_ts", "customer_id")


def test_streamed_features_equal_silver_recomputed_and_online_equals_offline(simulated, settings):
    engine = DeltaEngine(settings.lake_root)
    store, definitions = feature_store(settings)
    features = RealtimeFeatures(engine, online_push(store, definitions))
    runner = StreamRunner(engine, ChangeLog(settings.source_db), features=features)
    first = runner.tick()
    customers = engine.read(SILVER_ORDERS_TABLE, columns=["customer_id"])["customer_id"].n_unique()
    assert first.feature_rows == customers  # the first batch writes every customer
    simulated.live(rate=300, seconds=2)
    live = runner.tick()
    assert 0 < live.feature_rows < customers  # then only the customers whose orders changed
    assert live.online_lags and max(live.online_lags) < 60
    lag = engine.read(STREAM_LAG_TABLE).sort("computed_at")
    assert lag["feature_rows"].to_list() == [first.feature_rows, live.feature_rows]
    assert lag["online_lag_p99_seconds"][-1] >= lag["lag_p99_seconds"][-1]  # online comes after silver

    history = engine.read(REALTIME_CUSTOMER_FEATURES_TABLE).sort("feature_ts", "customer_id")
    assert history.height == first.feature_rows + live.feature_rows
    assert history.equals(reference(engine, history))
    assert engine.app_transaction_version(REALTIME_CUSTOMER_FEATURES_TABLE, APP_ID) == engine.version(
        SILVER_ORDERS_TABLE
    )
    skew = online_offline_skew(store, engine, VIEW, sample=50)
    assert skew["entities"] == 50 and skew["mismatches"] == {}
    # the live customers' newest row is the one online
    newest = history.filter(pl.col("feature_ts") == history["feature_ts"].max())
    online = store.get_online_features(
        features=[f"{VIEW}:orders_1h", f"{VIEW}:open_orders"],
        entity_rows=[{"customer_id": i} for i in newest["customer_id"]],
    ).to_dict()
    assert online["orders_1h"] == newest["orders_1h"].to_list()
    assert online["open_orders"] == newest["open_orders"].to_list()
    assert sum(online["orders_1h"]) > 0


def test_a_count_falls_back_when_its_order_leaves_the_window(simulated, settings):
    engine = DeltaEngine(settings.lake_root)
    pushed: list[pl.DataFrame] = []
    features = RealtimeFeatures(engine, pushed.append)
    runner = StreamRunner(engine, ChangeLog(settings.source_db), features=features)
    simulated.live(rate=100, seconds=1)
    runner.tick()
    recent = features.orders.filter(
        pl.col("order_ts") > datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
    )
    assert recent.height
    # an hour later, with no new change: those customers get a row with the hour window emptied
    later = features.last_at + timedelta(hours=1, minutes=1)  # type: ignore[operator]
    rows = features.update(later)
    assert set(recent["customer_id"]) <= set(rows["customer_id"])
    assert rows["orders_1h"].sum() == 0 and rows["orders_24h"].sum() >= recent.height
    assert pushed[-1].equals(rows)


def test_a_restart_resumes_from_the_committed_version(simulated, settings):
    engine = DeltaEngine(settings.lake_root)
    changes = ChangeLog(settings.source_db)
    StreamRunner(engine, changes, features=RealtimeFeatures(engine, lambda rows: None)).tick()
    written = engine.read(REALTIME_CUSTOMER_FEATURES_TABLE).height
    simulated.live(rate=200, seconds=1)
    # a new process: the state comes back from silver at the committed version
    restarted = RealtimeFeatures(engine, lambda rows: None)
    assert restarted.cursor == engine.version(SILVER_ORDERS_TABLE)
    tick = StreamRunner(engine, changes, features=restarted).tick()
    history = engine.read(REALTIME_CUSTOMER_FEATURES_TABLE)
    assert history.height == written + tick.feature_rows and 0 < tick.feature_rows < written
    assert history.sort("feature_ts", "customer_id").equals(reference(engine, history))


def test_erased_customers_get_no_new_row_even_when_the_change_feed_is_purged(simulated, settings, caplog):
    """An erasure records the customers, then deletes their rows: the stream writes nothing
    for them (the erasure cleans what was written before). When the deletion's change files are
    purged before the stream reads them, silver is read whole instead."""
    engine = DeltaEngine(settings.lake_root)
    features = RealtimeFeatures(engine, lambda rows: None)
    StreamRunner(engine, ChangeLog(settings.source_db), features=features).tick()
    first, second = features.orders["customer_id"].unique().sort().head(2).to_list()
    for customer, purged in ((first, False), (second, True)):
        engine.append(ERASURES_TABLE, pl.DataFrame({"customer_id": [customer]}))
        engine.delete(SILVER_ORDERS_TABLE, "customer_id", [customer], commit_metadata={"erasure": True})
        if purged:
            assert engine.remove_change_files(SILVER_ORDERS_TABLE, "erasure")
        rows = features.update(features.last_at + timedelta(seconds=1))  # type: ignore[operator]
        assert customer not in rows["customer_id"].to_list()
        assert customer not in features.orders["customer_id"].to_list()
        assert ("change feed unreadable" in caplog.text) is purged
    current = engine.read(SILVER_ORDERS_TABLE, columns=ORDER_COLUMNS).sort("order_id")
    assert features.orders.sort("order_id").equals(current)


def test_a_start_repairs_an_apply_killed_before_the_online_table_was_created(simulated, settings):
    """Feast writes its registry before the online tables: a stream killed in between left a
    registered view with no table, and the next start used to fail writing to it."""
    import sqlite3

    store, definitions = feature_store(settings)
    online_push(store, definitions)
    table = f"{store.project}_{VIEW}"
    with sqlite3.connect(settings.feast_dir / "online_store.db") as db:
        db.execute(f'DROP TABLE "{table}"')
    store, definitions = feature_store(settings)  # a new process
    assert store.get_feature_view(VIEW)  # still registered
    engine = DeltaEngine(settings.lake_root)
    features = RealtimeFeatures(engine, online_push(store, definitions))
    tick = StreamRunner(engine, ChangeLog(settings.source_db), features=features).tick()
    assert tick.feature_rows > 0
    skew = online_offline_skew(store, engine, VIEW, sample=20)
    assert skew["entities"] == 20 and skew["mismatches"] == {}
