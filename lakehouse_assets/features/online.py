"""Online feature lookup for serving: a product's row features (entity features plus the
request-time, on-demand ones), for one order or a batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from feast import FeatureStore


@dataclass
class OrderRequest:
    """What a checkout request tells about an order before its features are looked up."""

    customer_id: int
    amount: float
    discount: float


class OnlineFeatureLookup:
    """Each call is one online-store read of the feature references (`view:feature`)."""

    def __init__(self, store: FeatureStore, features: list[str]):
        self.store = store
        self.features = features

    def lookup(self, orders: list[OrderRequest]) -> list[dict[str, Any]]:
        rows = [{"customer_id": o.customer_id, "amount": o.amount, "discount": o.discount} for o in orders]
        columns = self.store.get_online_features(features=self.features, entity_rows=rows).to_dict()
        return [{name: values[i] for name, values in columns.items()} for i in range(len(rows))]
