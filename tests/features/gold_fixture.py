"""Synthetic gold marts in a feature view's schema, for feature-store tests."""

from datetime import datetime, timedelta

import polars as pl
from feast.types import Float64, Int64, String

T0 = datetime(2026, 3, 1)
SAMPLE = {Int64: lambda e, d: e * 10 + d, Float64: lambda e, d: e + d / 4, String: lambda e, d: f"s{e % 3}"}


def gold_rows(view, key: str, entities: int, days: int) -> pl.DataFrame:
    """One row per entity and day (feature_ts = T0 + day), values computed from (entity, day)."""
    rows = [
        {
            key: e,
            "feature_ts": T0 + timedelta(days=d),
            **{f.name: SAMPLE[f.dtype](e, d) for f in view.features},
        }
        for e in range(1, entities + 1)
        for d in range(days)
    ]
    return pl.DataFrame(rows)


def write_gold_features(lake_root: str, definitions, entities: int = 30, days: int = 4) -> None:
    """Both gold feature marts (customers and products) as Delta tables under the lake."""
    from deltalake import write_deltalake

    for view, key in (
        (definitions.customer_features, "customer_id"),
        (definitions.product_features, "product_id"),
    ):
        write_deltalake(f"{lake_root}/gold/{view.name}", gold_rows(view, key, entities, days).to_arrow())
