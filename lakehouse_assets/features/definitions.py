"""Feast definitions: entities, feature views over the gold Delta marts, an on-demand feature view
and the versioned feature service of the return-risk model. Built by a function (paths come from
the settings), so applying them never imports or runs anything else."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

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

OWNER = "team:data-platform"


@dataclass(frozen=True)
class FeatureDefinitions:
    """The platform's Feast objects: entities, feature views over the gold tables, the on-demand view and
    the feature services."""

    customer: Entity
    product: Entity
    customer_features: FeatureView
    product_features: FeatureView
    order_request_features: object  # OnDemandFeatureView
    return_risk_service: FeatureService
    return_risk_v2: FeatureService

    def all(self) -> list:
        return [
            self.customer,
            self.product,
            self.customer_features,
            self.product_features,
            self.order_request_features,
            self.return_risk_service,
            self.return_risk_v2,
        ]


def _delta_source(name: str, path: str) -> FileSource:
    return FileSource(
        name=name,
        path=path,
        timestamp_field="feature_ts",
        file_format=DeltaFormat(),
        owner=OWNER,
        description=f"gold Delta mart at {path}",
    )


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

    return_risk_service = FeatureService(
        name="return_risk_v1",
        features=[customer_features, order_request_features],
        owner=OWNER,
        description="Features of the return-risk model, version 1.",
        tags={"model": "return_risk", "version": "1"},
    )
    return_risk_v2 = FeatureService(
        name="return_risk_v2",
        features=[
            customer_features,
            order_request_features,
            product_features[["return_rate_90d", "category_return_rate_90d"]],
        ],
        owner=OWNER,
        description="Features of the return-risk model, version 2: version 1 per order, plus "
        "product features per order line, aggregated over the basket "
        "(lakehouse_assets.features.basket).",
        tags={"model": "return_risk", "version": "2"},
    )
    return FeatureDefinitions(
        customer,
        product,
        customer_features,
        product_features,
        order_request_features,
        return_risk_service,
        return_risk_v2,
    )
