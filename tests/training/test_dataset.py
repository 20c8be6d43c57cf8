from datetime import timedelta

import polars as pl
import pytest

from lakehouse_assets.product_declarations import DeclarationError
from lakehouse_assets.training.dataset import mature_rows, model_input, time_split
from lakehouse_assets.training.synthetic import synthetic_training_set
from tests.products import product, variant

RISK = product()
LABEL, TIME = RISK.label, RISK.time


def test_time_split_trains_on_older_orders_and_holds_out_the_newest_mature_ones():
    frame = synthetic_training_set()
    split = time_split(frame, RISK)
    newest = frame[TIME].max()
    assert split.train[TIME].max() < split.cutoff <= split.holdout[TIME].min()
    assert split.holdout[TIME].max() <= newest - timedelta(days=30)  # labels all matured
    mature = mature_rows(frame, RISK)
    assert split.train.height + split.holdout.height == mature.height
    assert split.holdout.height == pytest.approx(0.2 * mature.height, abs=2)
    assert set(split.train["order_id"]).isdisjoint(split.holdout["order_id"])


def test_unknown_labels_are_never_training_rows():
    frame = synthetic_training_set().with_columns(
        pl.when(pl.col("order_id") % 5 == 0).then(None).otherwise(pl.col(LABEL)).alias(LABEL)
    )
    split = time_split(frame, RISK)
    assert split.train[LABEL].null_count() == split.holdout[LABEL].null_count() == 0


def test_bad_input_is_named():
    frame = synthetic_training_set()
    with pytest.raises(DeclarationError, match=r"split\.holdout_fraction"):
        variant(split={"holdout_fraction": 1.5})
    with pytest.raises(ValueError, match="too few"):
        time_split(frame.head(10), variant(label={"window_days": 0}))
    with pytest.raises(ValueError, match=r"\['segment'\]"):
        model_input(frame.drop("segment"), RISK)
    numbers = model_input(frame, RISK)
    assert list(numbers.columns) == RISK.features
    assert all(numbers[c].dtype == "float64" for c in numbers.columns if c != "segment")
