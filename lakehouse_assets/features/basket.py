"""Basket features: the features of a scored row's child rows (an order's lines), aggregated per
row (features.lines of a product declaration). One polars function makes them for the training
set (offline values as of the row's time) and in the scoring service (online values), so the
two cannot drift apart."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl


def basket_names(features: Sequence[str]) -> list[str]:
    """The aggregated columns of child rows carrying ``features``."""
    return ["basket_lines", "basket_units", *(f"basket_max_{name}" for name in features)]


def basket_features(
    lines: pl.DataFrame, features: Sequence[str], key: str = "order_id", weight: str = "quantity"
) -> pl.DataFrame:
    """``lines``: one child row per line with ``key``, ``weight`` and the ``features``. Returns
    one row per ``key`` (in first-seen order): the line count, the summed weight and each
    feature's maximum (NULL when no line has one)."""
    missing = [c for c in (key, weight, *features) if c not in lines.columns]
    if missing:
        raise ValueError(f"lines lack columns {missing}")
    return lines.group_by(key, maintain_order=True).agg(
        pl.len().cast(pl.Float64).alias("basket_lines"),
        pl.col(weight).sum().cast(pl.Float64).alias("basket_units"),
        *(pl.col(name).cast(pl.Float64).max().alias(f"basket_max_{name}") for name in features),
    )


def empty_basket(features: Sequence[str]) -> dict[str, float | None]:
    """The basket features of a row without lines (none left in the source)."""
    return {"basket_lines": 0.0, "basket_units": 0.0, **{f"basket_max_{name}": None for name in features}}
