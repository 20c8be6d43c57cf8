"""A product's training data: its model input columns, and the time-based split."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
import polars as pl

from lakehouse_assets.products.spec import Product


def typed_input(frame: pl.DataFrame, features: Sequence[str], categorical: Collection[str]) -> pd.DataFrame:
    """``features`` of ``frame`` in that order and typed as models take them: numbers as
    float64 (so a missing value is NaN at serving time too), ``categorical`` ones as strings."""
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise ValueError(f"model input lacks feature columns {missing}")
    return frame.select(
        pl.col(c).cast(pl.String if c in categorical else pl.Float64) for c in features
    ).to_pandas()


def model_input(frame: pl.DataFrame, product: Product, features: list[str] | None = None) -> pd.DataFrame:
    """The product's model input. ``features``: a model's own columns (a model trained on an
    earlier feature list), by default the product's."""
    return typed_input(frame, product.features if features is None else features, set(product.categorical))


class NotEnoughData(ValueError):
    """Too few matured labels to train or evaluate on yet (normal early on: labels take the
    label window to be known)."""


@dataclass(frozen=True)
class TimeSplit:
    """Train on older rows, validate on the newest ones: never a random split across time."""

    train: pl.DataFrame
    holdout: pl.DataFrame
    cutoff: datetime
    time: str

    def window(self) -> dict[str, str]:
        return {
            "train_from": str(self.train[self.time].min()),
            "train_to": str(self.train[self.time].max()),
            "holdout_from": str(self.holdout[self.time].min()),
            "holdout_to": str(self.holdout[self.time].max()),
        }


def mature_rows(frame: pl.DataFrame, product: Product) -> pl.DataFrame:
    """Labelled rows whose label window has closed before the newest row. A younger row may
    have a known label only for one outcome (an order already returned): keeping those would
    bias the newest (holdout) rows."""
    time, label = product.time, product.label
    matured = pl.col(time) <= pl.col(time).max() - timedelta(days=product.spec.label.window_days)
    return frame.filter(pl.col(label).is_not_null() & matured)


def time_split(frame: pl.DataFrame, product: Product) -> TimeSplit:
    """Mature rows at or after the cutoff (the newest ``split.holdout_fraction`` of them) are
    held out; all rows of one timestamp fall on the same side."""
    split, label, time = product.spec.split, product.label, product.time
    labelled = mature_rows(frame, product).sort(time, *product.keys)
    if labelled.height < split.min_rows:
        raise NotEnoughData(
            f"only {labelled.height} labelled rows of {product.name} older than the "
            f"{product.spec.label.window_days}-day label window: too few to train on"
        )
    cutoff = labelled[time][int(labelled.height * (1 - split.holdout_fraction))]
    train, holdout = labelled.filter(pl.col(time) < cutoff), labelled.filter(pl.col(time) >= cutoff)
    for name, part in (("train", train), ("holdout", holdout)):
        if part.height == 0 or part[label].n_unique() < 2:
            raise NotEnoughData(
                f"the {name} split of {product.name} (cutoff {cutoff}) has only one label value"
            )
    return TimeSplit(train, holdout, cutoff, time)
