"""Online feature lookup for serving: the customer features of the return-risk service plus the
request-time (on-demand) features, for one order or a batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from feast import FeatureService, FeatureStore


@dataclass
class OrderRequest:
    """What a checkout request tells about an order before its features are looked up."""

    customer_id: int
    amount: float
    discount: float


class OnlineFeatureLookup:
    """Resolves the feature service once; each call is one online-store read."""

    def __init__(self, store: FeatureStore, service_name: str = "return_risk_v1"):
        self.store = store
        self.service: FeatureService = store.get_feature_service(service_name)

    def lookup(self, orders: list[OrderRequest]) -> list[dict[str, Any]]:
        rows = [{"customer_id": o.customer_id, "amount": o.amount, "discount": o.discount} for o in orders]
        columns = self.store.get_online_features(features=self.service, entity_rows=rows).to_dict()
        return [{name: values[i] for name, values in columns.items()} for i in range(len(rows))]
