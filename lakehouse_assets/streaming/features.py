"""Real-time customer features, computed by the stream from silver/orders' change feed.

A row holds a customer's features *as of its time* ``feature_ts``: orders and spend in the last
hour and 24 hours, open orders (placed, not shipped) and minutes since the last order, computed
from the orders silver held at that moment. Each micro-batch writes a row for every customer
whose orders changed and for every customer one of whose orders left a window since the
previous batch (so a count falls back without a new order); the first batch writes every
customer. Rows go to the online store (stamped with ``feature_ts``) and then to the Delta
history ``features/customer_realtime_features``, which is the feature view's offline source: a
training set joined as of an event time gets exactly the value the online store held then.

Exactly once: the history's append carries the silver/orders version it covers as a Delta
transaction identifier, and a restart resumes from it (state rebuilt from silver as of that
version). A kill between the online push and the append only means the next start pushes the
same customers again, newer.

The state is the current orders (five columns), updated from the change feed each batch, so
every row equals ``customer_activity`` over silver/orders at the version it names (tested).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import polars as pl
from feast import FeatureStore

from lakehouse_assets.engine import AppTransaction, LakeEngine
from lakehouse_assets.erasure_registry import KEY as ERASED_KEY
from lakehouse_assets.erasure_registry import erased_keys
from lakehouse_assets.features.definitions import FeatureDefinitions
from lakehouse_assets.features.online_writer import write_online
from lakehouse_assets.features.pipeline import apply_definitions
from lakehouse_assets.tables import REALTIME_CUSTOMER_FEATURES_TABLE, SILVER_ORDERS_TABLE

log = logging.getLogger(__name__)

VIEW = "customer_realtime_features"
APP_ID = "lakehouse-stream:customer_realtime_features"  # cursor: the silver/orders version covered
KEY = "customer_id"
ORDER_COLUMNS = ["order_id", KEY, "order_ts", "amount", "status"]
WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24)}
OPEN_STATUS = "placed"
FEATURE_SCHEMA = pl.Schema(
    {
        KEY: pl.Int64(),
        "feature_ts": pl.Datetime("us"),
        **{f"orders_{w}": pl.Int64() for w in WINDOWS},
        **{f"spend_{w}": pl.Float64() for w in WINDOWS},
        "open_orders": pl.Int64(),
        "minutes_since_last_order": pl.Float64(),
        "silver_version": pl.Int64(),
    }
)


def customer_activity(
    orders: pl.DataFrame, customers: pl.Series, at: datetime, silver_version: int
) -> pl.DataFrame:
    """The features of ``customers`` as of ``at`` (naive UTC) from ``orders`` (ORDER_COLUMNS):
    orders after ``at`` are not known yet; a customer with no order has zeros."""
    known = orders.filter(pl.col(KEY).is_in(customers.implode()) & (pl.col("order_ts") <= at))
    in_window = {w: pl.col("order_ts") > at - span for w, span in WINDOWS.items()}
    activity = known.group_by(KEY).agg(
        *(cond.sum().alias(f"orders_{w}") for w, cond in in_window.items()),
        *(pl.col("amount").filter(cond).sum().alias(f"spend_{w}") for w, cond in in_window.items()),
        (pl.col("status") == OPEN_STATUS).sum().alias("open_orders"),
        pl.col("order_ts").max().alias("last_order_ts"),
    )
    counts = [c for c in FEATURE_SCHEMA.names() if c.startswith(("orders_", "spend_")) or c == "open_orders"]
    return (
        pl.DataFrame({KEY: customers.unique().sort()}, schema={KEY: pl.Int64()})
        .join(activity, on=KEY, how="left")
        .with_columns(
            pl.col(counts).fill_null(0),
            feature_ts=pl.lit(at, pl.Datetime("us")),
            minutes_since_last_order=(
                pl.lit(at, pl.Datetime("us")) - pl.col("last_order_ts")
            ).dt.total_microseconds()
            / 60e6,
            silver_version=pl.lit(silver_version, pl.Int64()),
        )
        .select(FEATURE_SCHEMA.names())
        .cast(FEATURE_SCHEMA)
    )


def apply_order_changes(orders: pl.DataFrame, changes: pl.DataFrame) -> pl.DataFrame:
    """``orders`` after silver/orders' change-feed rows (the newest image of each order wins;
    a delete removes it)."""
    newest = (
        changes.filter(pl.col("_change_type") != "update_preimage")
        .sort("_commit_version", maintain_order=True)
        .unique("order_id", keep="last", maintain_order=True)
    )
    kept = orders.filter(~pl.col("order_id").is_in(newest["order_id"].implode()))
    alive = newest.filter(pl.col("_change_type") != "delete").select(ORDER_COLUMNS).cast(orders.schema)
    return pl.concat([kept, alive])


class RealtimeFeatures:
    """The streamed feature view: ``update`` after each micro-batch's silver commit."""

    def __init__(self, engine: LakeEngine, push: Callable[[pl.DataFrame], None]):
        self.engine, self.push = engine, push
        self.cursor = engine.app_transaction_version(REALTIME_CUSTOMER_FEATURES_TABLE, APP_ID)
        self.last_at: datetime | None = None
        self.orders = pl.DataFrame()  # read whole at the first update
        if self.cursor is not None:
            self.orders = engine.read(SILVER_ORDERS_TABLE, version=self.cursor, columns=ORDER_COLUMNS)
            self.last_at = engine.read(REALTIME_CUSTOMER_FEATURES_TABLE, columns=["feature_ts"])[
                "feature_ts"
            ].max()  # type: ignore[assignment]

    def update(self, at: datetime) -> pl.DataFrame:
        """Catch up with silver/orders and write the rows due as of ``at`` (naive UTC): online
        first, then the Delta history with the cursor. Returns the rows written."""
        version = self.engine.version(SILVER_ORDERS_TABLE)
        if version is None:
            return pl.DataFrame(schema=FEATURE_SCHEMA)
        touched = pl.Series(KEY, [], pl.Int64())
        if self.cursor is None:
            self.orders = self.engine.read(SILVER_ORDERS_TABLE, version=version, columns=ORDER_COLUMNS)
        elif version > self.cursor:
            touched, deleted = self._catch_up(version)
            if deleted:  # an erasure deletes silver rows after recording the customers: none of theirs
                erased = erased_keys(self.engine)[ERASED_KEY]
                self.orders = self.orders.filter(~pl.col(KEY).is_in(erased))
                touched = touched.filter(~touched.is_in(erased))
        if self.last_at is None:  # the first batch: every customer
            due = self.orders[KEY]
        else:
            due = pl.concat([touched, self._left_a_window(self.last_at, at)])
        rows = (
            customer_activity(self.orders, due, at, version)
            if due.len()
            else pl.DataFrame(schema=FEATURE_SCHEMA)
        )
        if rows.height:
            self.push(rows)
            self.engine.append(
                REALTIME_CUSTOMER_FEATURES_TABLE, rows, transactions=[AppTransaction(APP_ID, version)]
            )
        self.cursor, self.last_at = version, at
        return rows

    def _catch_up(self, version: int) -> tuple[pl.Series, bool]:
        """Apply silver/orders' change feed (cursor, version] to the state; returns the
        customers it touched and whether it deleted orders. When the feed cannot be read (the
        change files of an erasure are purged after its retention), silver at ``version`` is
        read whole and every customer whose orders differ is touched."""
        try:
            changes, _ = self.engine.changes(SILVER_ORDERS_TABLE, self.cursor or 0, version)
        except Exception as error:  # noqa: BLE001 - any unreadable feed: the whole table says it
            log.warning("silver/orders change feed unreadable (%s): reading the table", error)
            current = self.engine.read(SILVER_ORDERS_TABLE, version=version, columns=ORDER_COLUMNS)
            differ = pl.concat(
                [
                    self.orders.join(current, on=ORDER_COLUMNS, how="anti", nulls_equal=True),
                    current.join(self.orders, on=ORDER_COLUMNS, how="anti", nulls_equal=True),
                ]
            )
            deleted = self.orders.height > 0 and bool(
                self.orders.join(current, on="order_id", how="anti").height
            )
            self.orders = current
            return differ[KEY].cast(pl.Int64), deleted
        self.orders = apply_order_changes(self.orders, changes)
        return changes[KEY].cast(pl.Int64), bool((changes["_change_type"] == "delete").any())

    def _left_a_window(self, since: datetime, at: datetime) -> pl.Series:
        """Customers with an order whose window end passed in (since, at]."""
        passed = pl.any_horizontal(
            pl.col("order_ts").is_between(since - span, at - span, closed="right")
            for span in WINDOWS.values()
        )
        return self.orders.filter(passed)[KEY].cast(pl.Int64)


def online_push(store: FeatureStore, definitions: FeatureDefinitions) -> Callable[[pl.DataFrame], None]:
    """Rows -> the Feast online store, stamped with their ``feature_ts``. The definitions are
    applied first, every start (idempotent): a fresh lake has no view yet, and an apply killed
    after the registry was written but before the online tables were created leaves a registered
    view with no table to write to."""
    apply_definitions(store, definitions)
    view = store.get_feature_view(VIEW)
    return lambda rows: write_online(store, view, rows, "feature_ts")
