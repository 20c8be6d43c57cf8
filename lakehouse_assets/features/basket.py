"""Basket features: the product features of an order's lines, aggregated per order. One polars
function makes them for the training set (offline values as of the order time) and in the
scoring service (online values), so the two cannot drift apart."""

from __future__ import annotations

import polars as pl

# product features read per order line (the product projection of the return_risk_v2 service)
LINE_FEATURES = ["return_rate_90d", "category_return_rate_90d"]
BASKET_FEATURES = ["basket_lines", "basket_units", *(f"basket_max_{name}" for name in LINE_FEATURES)]


def basket_features(lines: pl.DataFrame, key: str = "order_id") -> pl.DataFrame:
    """``lines``: one row per order line with ``key``, ``quantity`` and the LINE_FEATURES.
    Returns one row per order (in first-seen order) with the BASKET_FEATURES; a rate is NULL
    when no product of the basket has one."""
    missing = [c for c in (key, "quantity", *LINE_FEATURES) if c not in lines.columns]
    if missing:
        raise ValueError(f"order lines lack columns {missing}")
    return lines.group_by(key, maintain_order=True).agg(
        pl.len().cast(pl.Float64).alias("basket_lines"),
        pl.col("quantity").sum().cast(pl.Float64).alias("basket_units"),
        *(pl.col(name).cast(pl.Float64).max().alias(f"basket_max_{name}") for name in LINE_FEATURES),
    )


def empty_basket() -> dict[str, float | None]:
    """The basket features of an order without lines (none left in the source)."""
    return {
        "basket_lines": 0.0,
        "basket_units": 0.0,
        **{f"basket_max_{name}": None for name in LINE_FEATURES},
    }
