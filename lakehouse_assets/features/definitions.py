"""Feast definitions: entities, feature views over the gold Delta marts, an on-demand feature view
and the versioned feature services declared in services.yaml. Built by a function (paths come from
the settings), so applying them never imports or runs anything else."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]
from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    RequestSource,
    ValueType,
)
from feast.data_format import DeltaFormat
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String

from lakehouse_assets.tables import REALTIME_CUSTOMER_FEATURES_TABLE

OWNER = "team:data-platform"


@dataclass(frozen=True)
class FeatureDefinitions:
    """The platform's Feast objects: entities, feature views over the gold tables, the on-demand view and
    the feature services."""

    customer: Entity
    product: Entity
    customer_features: FeatureView
    product_features: FeatureView
    customer_realtime_features: FeatureView  # pushed by `lakehouse stream`
    order_request_features: object  # OnDemandFeatureView
    services: tuple[FeatureService, ...]  # declared in services.yaml

    def all(self) -> list:
        return [
            self.customer,
            self.product,
            self.customer_features,
            self.product_features,
            self.customer_realtime_features,
            self.order_request_features,
            *self.services,
        ]


def _delta_source(name: str, path: str, what: str = "gold Delta mart") -> FileSource:
    return FileSource(
        name=name,
        path=path,
        timestamp_field="feature_ts",
        file_format=DeltaFormat(),
        owner=OWNER,
        description=f"{what} at {path}",
    )


SERVICES_FILE = Path(__file__).with_name("services.yaml")


def feature_services(path: Path, views: dict[str, Any]) -> list[FeatureService]:
    """The feature services declared in ``path`` over ``views`` (an unknown view or feature is a
    ValueError naming the service)."""
    services = []
    for declared in (yaml.safe_load(path.read_text()) or {}).get("services", []):
        name = declared["name"]
        projections = []
        for entry in declared["views"]:
            view_name, features = (
                (entry, None) if isinstance(entry, str) else (entry["view"], entry["features"])
            )
            if view_name not in views:
                raise ValueError(
                    f"{path}: service {name}: no feature view {view_name!r} (views: {sorted(views)})"
                )
            view = views[view_name]
            unknown = sorted(set(features or []) - {f.name for f in view.features})
            if unknown:
                raise ValueError(f"{path}: service {name}: {view_name} has no features {unknown}")
            projections.append(view[features] if features else view)
        services.append(
            FeatureService(
                name=name,
                features=projections,
                owner=declared.get("owner", OWNER),
                description=declared.get("description", ""),
                tags={str(k): str(v) for k, v in (declared.get("tags") or {}).items()},
            )
        )
    return services


def build_definitions(lake_root: str) -> FeatureDefinitions:
    """The Feast definitions with their batch sources in the lake at ``lake_root``."""
    customer = Entity(
        name="customer",
        join_keys=["customer_id"],
        value_type=ValueType.INT64,
        owner=OWNER,
        description="A shop customer.",
    )
    product = Entity(
        name="product",
        join_keys=["product_id"],
        value_type=ValueType.INT64,
        owner=OWNER,
        description="A catalogue product.",
    )
    customer_features = FeatureView(
        name="customer_daily_features",
        entities=[customer],
        ttl=timedelta(days=2),  # a daily row; older than two days means the customer went away
        schema=[
            Field(name="orders_7d", dtype=Int64),
            Field(name="orders_30d", dtype=Int64),
            Field(name="orders_90d", dtype=Int64),
            Field(name="spend_30d", dtype=Float64),
            Field(name="spend_90d", dtype=Float64),
            Field(name="returns_90d", dtype=Int64),
            Field(name="avg_discount_90d", dtype=Float64),
            Field(name="days_since_last_order", dtype=Int64),
            Field(name="tenure_days", dtype=Int64),
            Field(name="segment", dtype=String),
        ],
        source=_delta_source("customer_daily_features_source", f"{lake_root}/gold/customer_daily_features"),
        owner=OWNER,
        description="Customer activity as of the end of each day (gold.customer_daily_features).",
        tags={"layer": "gold"},
    )
    product_features = FeatureView(
        name="product_daily_features",
        entities=[product],
        ttl=timedelta(days=2),
        schema=[
            Field(name="units_sold_90d", dtype=Int64),
            Field(name="return_rate_90d", dtype=Float64),
            Field(name="category_return_rate_90d", dtype=Float64),
            Field(name="price", dtype=Float64),
            Field(name="price_band", dtype=String),
            Field(name="category", dtype=String),
        ],
        source=_delta_source("product_daily_features_source", f"{lake_root}/gold/product_daily_features"),
        owner=OWNER,
        description="Product sales and returns as of the end of each day.",
        tags={"layer": "gold"},
    )
    customer_realtime_features = FeatureView(
        name="customer_realtime_features",
        entities=[customer],
        ttl=timedelta(days=30),
        schema=[
            Field(name="orders_1h", dtype=Int64),
            Field(name="orders_24h", dtype=Int64),
            Field(name="spend_1h", dtype=Float64),
            Field(name="spend_24h", dtype=Float64),
            Field(name="open_orders", dtype=Int64),
            Field(name="minutes_since_last_order", dtype=Float64),
        ],
        source=_delta_source(
            "customer_realtime_features_source",
            f"{lake_root}/{REALTIME_CUSTOMER_FEATURES_TABLE}",
            "history of the streamed features",
        ),
        owner=OWNER,
        description="A customer's orders and spend in the last hour and 24 hours, open (placed, "
        "not shipped) orders and minutes since the last order, as of each row's time: computed "
        "by `lakehouse stream` from the change stream and pushed online within seconds of a "
        "source commit; every pushed row is kept in Delta for point-in-time training sets.",
        tags={"layer": "streaming"},
    )
    order_request = RequestSource(
        name="order_request",
        schema=[Field(name="amount", dtype=Float64), Field(name="discount", dtype=Float64)],
        description="What the client knows at checkout.",
    )

    @on_demand_feature_view(
        sources=[customer_features, order_request],
        schema=[
            Field(name="amount_vs_avg_basket", dtype=Float64),
            Field(name="discount_share", dtype=Float64),
        ],
        mode="python",  # plain dicts of lists: no pandas round trip on the serving path
        owner=OWNER,
        description="Request-time features: basket amount relative to the customer's 90-day "
        "average basket, and the discount share.",
    )
    def order_request_features(inputs: dict[str, list]) -> dict[str, list]:
        ratios = []
        for amount, spend, orders in zip(
            inputs["amount"], inputs["spend_90d"], inputs["orders_90d"], strict=True
        ):
            average = spend / orders if spend is not None and orders else None
            ratios.append(amount / average if amount is not None and average else None)
        discounts = [None if d is None else float(d) for d in inputs["discount"]]
        return {"amount_vs_avg_basket": ratios, "discount_share": discounts}

    views = {
        v.name: v
        for v in (customer_features, product_features, customer_realtime_features, order_request_features)
    }
    services = tuple(feature_services(SERVICES_FILE, views))
    return FeatureDefinitions(
        customer,
        product,
        customer_features,
        product_features,
        customer_realtime_features,
        order_request_features,
        services,
    )
