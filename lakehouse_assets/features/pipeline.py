"""Plain functions behind the feature assets: apply, materialize, build the training set, and
compare online with offline values (training/serving skew)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl
from feast import FeatureStore

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.features.basket import LINE_FEATURES, basket_features, empty_basket
from lakehouse_assets.features.definitions import FeatureDefinitions
from lakehouse_assets.features.delta_offline_store import pinned_versions
from lakehouse_assets.features.online_writer import materialize_view
from lakehouse_assets.tables import (
    CUSTOMER_FEATURES_TABLE,
    FCT_ORDERS_TABLE,
    PRODUCT_FEATURES_TABLE,
    SILVER_ORDER_ITEMS_TABLE,
)

LABEL = "returned_within_30d"
GOLD_TABLES = {
    "customer_daily_features": CUSTOMER_FEATURES_TABLE,
    "product_daily_features": PRODUCT_FEATURES_TABLE,
}


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def describe(store: FeatureStore) -> dict[str, Any]:
    """Feature discovery: every view's features, types, owner, description, TTL and the newest
    materialized time; and the services."""
    views: dict[str, dict[str, Any]] = {}
    for view in store.list_feature_views():
        intervals = view.materialization_intervals
        views[view.name] = {
            "features": {f.name: str(f.dtype) for f in view.features},
            "entities": list(view.entities),
            "owner": view.owner,
            "description": view.description,
            "ttl": str(view.ttl),
            "materialized_until": str(intervals[-1][1]) if intervals else None,
        }
    for odfv in store.list_on_demand_feature_views():
        views[odfv.name] = {
            "features": {f.name: str(f.dtype) for f in odfv.features},
            "owner": odfv.owner,
            "description": odfv.description,
            "on_demand": True,
        }
    services = {
        s.name: {
            "views": [p.name for p in s.feature_view_projections],
            "owner": s.owner,
            "description": s.description,
        }
        for s in store.list_feature_services()
    }
    return {"feature_views": views, "feature_services": services}


def apply_definitions(store: FeatureStore, definitions: FeatureDefinitions) -> dict[str, Any]:
    """Register the definitions in the store's registry; returns the catalogue of what is registered."""
    store.apply(definitions.all())
    return describe(store)


@dataclass
class OnlineMaterialization:
    """One feature view written to the online store: the window, whether it was a backfill, the entities."""

    view: str
    start: datetime
    end: datetime
    backfill: bool
    entities: int


def materialize_online(
    store: FeatureStore, engine: LakeEngine, definitions: FeatureDefinitions
) -> list[OnlineMaterialization]:
    """Materialize each view up to its newest gold row, from where the last run ended. The first
    run backfills the whole history: Feast's first incremental run would start at now - TTL and
    load nothing older."""
    results = []
    for view in (definitions.customer_features, definitions.product_features):
        table = GOLD_TABLES[view.name]
        if not engine.exists(table):
            continue
        registered = store.get_feature_view(view.name)
        names = [registered.entity_columns[0].name, "feature_ts", *(f.name for f in view.features)]
        frame = engine.read(table, columns=names)
        if frame.height == 0:
            continue
        newest = _utc(frame["feature_ts"].max())  # type: ignore[arg-type]
        intervals = registered.materialization_intervals
        backfill = not intervals
        start = _utc(frame["feature_ts"].min()) if backfill else intervals[-1][1]  # type: ignore[arg-type]
        entities = materialize_view(store, view, frame, start, newest)
        results.append(OnlineMaterialization(view.name, start, newest, backfill, entities))
    return results


def order_features(
    store: FeatureStore, definitions: FeatureDefinitions, orders: pl.DataFrame, lines: pl.DataFrame
) -> pl.DataFrame:
    """The return_risk_v2 features of ``orders`` (order_id, customer_id, order_ts, amount,
    discount, any other columns kept) as of each order's time, from the offline store: customer
    and request-time features per order, product features of its ``lines`` (order_id,
    product_id, quantity) aggregated over the basket."""
    product_refs = [f"{definitions.product_features.name}:{f}" for f in LINE_FEATURES]
    features = store.get_historical_features(
        entity_df=orders.rename({"order_ts": "event_timestamp"}).to_pandas(),
        features=definitions.return_risk_service,
    ).to_df()
    line_features = store.get_historical_features(
        entity_df=lines.join(orders.select("order_id", "order_ts"), on="order_id")
        .rename({"order_ts": "event_timestamp"})
        .to_pandas(),
        features=product_refs,
    ).to_df()
    baskets = basket_features(pl.from_pandas(line_features).select("order_id", "quantity", *LINE_FEATURES))
    result = (
        pl.from_pandas(features)
        .with_columns(pl.col("event_timestamp").dt.replace_time_zone(None))
        .rename({"event_timestamp": "order_ts"})
        .join(baskets, on="order_id", how="left")
    )
    return result.with_columns(  # orders without lines (gone from the source)
        pl.col(c).fill_null(v) for c, v in empty_basket().items() if v is not None
    ).sort("order_id")


def build_training_set(
    store: FeatureStore,
    engine: LakeEngine,
    definitions: FeatureDefinitions,
    versions: dict[str, int] | None = None,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Point-in-time features (return_risk_v2) for every order whose label is known, joined as
    of the order time: the customer and request-time features per order, the product features
    per order line aggregated over the basket. Returns the Delta versions of every table read
    too; given those versions, it rebuilds the same training set from the tables as they were
    then (time travel)."""
    tables = (FCT_ORDERS_TABLE, SILVER_ORDER_ITEMS_TABLE, *GOLD_TABLES.values())
    versions = versions or {t: v for t in tables if (v := engine.version(t)) is not None}
    sources = {
        GOLD_TABLES[v.name]: v.batch_source.path  # type: ignore[union-attr]
        for v in (definitions.customer_features, definitions.product_features)
    }
    orders = engine.read(
        FCT_ORDERS_TABLE,
        version=versions[FCT_ORDERS_TABLE],
        columns=[
            "order_id",
            "customer_id",
            "order_ts",
            "amount",
            "discount",
            LABEL,
            "label_known_at",
        ],
    ).filter(pl.col(LABEL).is_not_null())
    lines = engine.read(
        SILVER_ORDER_ITEMS_TABLE,
        version=versions[SILVER_ORDER_ITEMS_TABLE],
        columns=["order_id", "product_id", "quantity"],
    )
    with pinned_versions({sources[t]: v for t, v in versions.items() if t in sources}):
        result = order_features(store, definitions, orders, lines)
    if result.height != orders.height:
        raise AssertionError(f"training set has {result.height} rows for {orders.height} orders")
    return result, versions


def online_offline_skew(
    store: FeatureStore, engine: LakeEngine, definitions: FeatureDefinitions, sample: int = 25
) -> dict[str, Any]:
    """Online values vs offline values recomputed at the newest materialized time, for a sample
    of customers. Returns the mismatches (empty when online serving matches training)."""
    view = definitions.customer_features
    table = GOLD_TABLES[view.name]
    frame = engine.read(table, columns=["customer_id", "feature_ts"])
    newest = frame["feature_ts"].max()
    ids = frame.filter(pl.col("feature_ts") == newest)["customer_id"].unique().sort().head(sample).to_list()
    names = [f.name for f in view.features]
    refs = [f"{view.name}:{n}" for n in names]
    online = pl.DataFrame(
        store.get_online_features(features=refs, entity_rows=[{"customer_id": i} for i in ids]).to_dict()
    )
    offline = pl.from_pandas(
        store.get_historical_features(
            entity_df=pl.DataFrame({"customer_id": ids, "event_timestamp": [newest] * len(ids)}).to_pandas(),
            features=refs,
        ).to_df()
    )
    joined = online.join(offline, on="customer_id", suffix="_offline")
    mismatches = {}
    for name in names:
        a, b = joined[name], joined[f"{name}_offline"]
        if a.dtype.is_numeric() and b.dtype.is_numeric():
            differ = ~((a.cast(pl.Float64) - b.cast(pl.Float64)).abs() < 1e-9)
            differ = differ.fill_null(a.is_null() != b.is_null())
        else:
            differ = a.cast(pl.String).ne_missing(b.cast(pl.String))
        if differ.any():
            mismatches[name] = int(differ.sum())
    return {"entities": len(ids), "at": str(newest), "mismatches": mismatches}
