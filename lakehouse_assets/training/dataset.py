"""The return-risk training data: which columns are features, and the time-based split."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
import polars as pl

from lakehouse_assets.features.basket import BASKET_FEATURES

LABEL = "returned_within_30d"
TIME = "order_ts"
NUMERIC_FEATURES = [
    "amount",
    "discount",
    "orders_7d",
    "orders_30d",
    "orders_90d",
    "spend_30d",
    "spend_90d",
    "returns_90d",
    "avg_discount_90d",
    "days_since_last_order",
    "tenure_days",
    "amount_vs_avg_basket",
    "discount_share",
    *BASKET_FEATURES,
]
CATEGORICAL_FEATURES = ["segment"]
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES


def model_input(frame: pl.DataFrame, features: list[str] | None = None) -> pd.DataFrame:
    """The model's input columns in a fixed order and types: numbers as float64 (so a missing
    value is NaN at serving time too), categories as strings. ``features``: a model's own
    columns (a model trained on an earlier feature list), by default FEATURES."""
    features = FEATURES if features is None else features
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise ValueError(f"model input lacks feature columns {missing}")
    return frame.select(
        pl.col(c).cast(pl.String if c in CATEGORICAL_FEATURES else pl.Float64) for c in features
    ).to_pandas()


class NotEnoughData(ValueError):
    """Too few matured labels to train or evaluate on yet (normal early on: labels take the
    label window to be known)."""


@dataclass(frozen=True)
class TimeSplit:
    """Train on older orders, validate on the newest ones: never a random split across time."""

    train: pl.DataFrame
    holdout: pl.DataFrame
    cutoff: datetime

    def window(self) -> dict[str, str]:
        return {
            "train_from": str(self.train[TIME].min()),
            "train_to": str(self.train[TIME].max()),
            "holdout_from": str(self.holdout[TIME].min()),
            "holdout_to": str(self.holdout[TIME].max()),
        }


def mature_orders(frame: pl.DataFrame, label_window_days: int) -> pl.DataFrame:
    """Labelled orders whose label window has closed before the newest order. A younger order
    has a known label only if it was already returned: keeping those would over-represent
    returns in the newest (holdout) orders."""
    matured = pl.col(TIME) <= pl.col(TIME).max() - timedelta(days=label_window_days)
    return frame.filter(pl.col(LABEL).is_not_null() & matured)


def time_split(frame: pl.DataFrame, holdout_fraction: float, label_window_days: int) -> TimeSplit:
    """Mature orders at or after the cutoff (the newest ``holdout_fraction`` of them) are held
    out; all orders of one timestamp fall on the same side."""
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    labelled = mature_orders(frame, label_window_days).sort(TIME, "order_id")
    if labelled.height < 20:
        raise NotEnoughData(
            f"only {labelled.height} labelled orders older than the "
            f"{label_window_days}-day label window: too few to train on"
        )
    cutoff = labelled[TIME][int(labelled.height * (1 - holdout_fraction))]
    train, holdout = labelled.filter(pl.col(TIME) < cutoff), labelled.filter(pl.col(TIME) >= cutoff)
    for name, part in (("train", train), ("holdout", holdout)):
        if part[LABEL].n_unique() < 2:
            raise NotEnoughData(f"the {name} split (cutoff {cutoff}) has only one label value")
    return TimeSplit(train, holdout, cutoff)
