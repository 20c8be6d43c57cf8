"""Drift on samples agrees with Evidently on every row, and bad input is named."""

import numpy as np
import polars as pl
import pytest

from lakehouse_assets.monitoring.drift import _is_drifted, data_drift


def frames(rows: int, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    reference = pl.DataFrame(
        {
            "steady": rng.normal(0, 1, rows),
            "shifted": rng.normal(0, 1, rows),
            "scaled": rng.gamma(2, 10, rows),
            "segment": rng.choice(["a", "b", "c"], rows),
            "mix": rng.choice(["x", "y"], rows, p=[0.8, 0.2]),
        }
    )
    current = pl.DataFrame(
        {
            "steady": rng.normal(0, 1, rows),
            "shifted": rng.normal(0.4, 1, rows),
            "scaled": rng.gamma(2, 10, rows) * 1.5,
            "segment": rng.choice(["a", "b", "c"], rows),
            "mix": rng.choice(["x", "y"], rows, p=[0.4, 0.6]),
        }
    )
    return reference, current


def test_sampled_verdicts_equal_a_full_run_on_injected_drift():
    reference, current = frames(60_000)
    numeric, categorical = ["steady", "shifted", "scaled"], ["segment", "mix"]
    sampled = data_drift(reference, current, numeric, categorical, sample_rows=5_000)
    full = data_drift(reference, current, numeric, categorical, sample_rows=None)
    assert sampled.sampled_rows == 5_000 and full.sampled_rows == 60_000
    assert (
        {c.column: c.drifted for c in sampled.columns}
        == {c.column: c.drifted for c in full.columns}
        == {"steady": False, "shifted": True, "scaled": True, "segment": False, "mix": True}
    )
    for a, b in zip(sampled.columns, full.columns, strict=True):
        assert a.method == b.method and abs(a.score - b.score) < 0.04 + 0.1 * b.score
    assert full.dataset_drift and full.drifted_share == 0.6  # 3 of 5 >= drift share 0.5
    assert {c.method for c in full.columns} == {"Wasserstein distance (normed)", "Jensen-Shannon distance"}


def test_small_samples_use_p_values_and_their_rule():
    reference, current = frames(400)
    result = data_drift(reference, current, ["shifted"], [], sample_rows=None)
    (column,) = result.columns
    assert "p_value" in column.method and column.drifted == (column.score <= column.threshold)
    assert _is_drifted("K-S p_value", 0.01, 0.05) and not _is_drifted("K-S p_value", 0.5, 0.05)
    assert _is_drifted("Jensen-Shannon distance", 0.2, 0.1)


def test_bad_input_is_named():
    reference, current = frames(100)
    with pytest.raises(ValueError, match=r"current data lacks drift columns \['steady'\]"):
        data_drift(reference, current.drop("steady"), ["steady"], [])
    with pytest.raises(ValueError, match="reference data lacks"):
        data_drift(reference.drop("steady"), current, ["steady"], [])
    with pytest.raises(ValueError, match="current data is empty"):
        data_drift(reference, current.head(0), ["steady"], [])
