"""Online feature lookup for serving: a product's row features (entity features plus the
request-time, on-demand ones), for one request or a batch."""

from __future__ import annotations

from typing import Any

from feast import FeatureStore


class OnlineFeatureLookup:
    """Each call is one online-store read of the feature references (`view:feature`)."""

    def __init__(self, store: FeatureStore, features: list[str]):
        self.store = store
        self.features = features

    def lookup(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``rows``: the join keys and request values of each request; returns each one's
        values by feature name (None where the store has nothing)."""
        columns = self.store.get_online_features(features=self.features, entity_rows=rows).to_dict()
        return [{name: values[i] for name, values in columns.items()} for i in range(len(rows))]
