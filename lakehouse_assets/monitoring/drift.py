"""Data drift with Evidently, on samples.

Evidently picks its test per column from the reference size: above 1,000 rows a distance
(normed Wasserstein for numbers, Jensen-Shannon for categories and numbers with few values,
threshold 0.1), below it a p-value test. Both distances are properties of the two
distributions, which a uniform random sample estimates with an error that shrinks with the square
root of its size (tests/monitoring/test_drift.py: at 5,000 rows per side, within 0.04 + 10% of the
full-data score), so the monitor runs Evidently's own DataDriftPreset on at most
``sample_rows`` rows of each side (seeded, without replacement): the same tests and thresholds,
and a 1-million-row window is checked in seconds. Verdicts can only differ for columns whose
distance is within the sampling error of the threshold (benchmarks/bench_drift.py measures the
agreement with a full run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl
from evidently import DataDefinition, Dataset, Report
from evidently.core.report import Snapshot
from evidently.presets import DataDriftPreset

DEFAULT_SAMPLE_ROWS = 30_000


@dataclass(frozen=True)
class ColumnDrift:
    """Drift of one column between reference and current: the test, its score and the verdict."""

    column: str
    method: str
    threshold: float
    score: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    """Drift of a whole window: every column and whether the share of drifted ones is dataset drift."""

    columns: list[ColumnDrift]
    drift_share: float  # the share of drifted columns at which the dataset counts as drifted
    reference_rows: int
    current_rows: int
    sampled_rows: int  # rows per side Evidently saw
    snapshot: Snapshot

    @property
    def drifted_share(self) -> float:
        return sum(c.drifted for c in self.columns) / max(len(self.columns), 1)

    @property
    def dataset_drift(self) -> bool:
        return bool(self.columns) and self.drifted_share >= self.drift_share

    def summary(self) -> dict[str, Any]:
        return {
            "dataset_drift": self.dataset_drift,
            "drifted_share": self.drifted_share,
            "drifted_columns": [c.column for c in self.columns if c.drifted],
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "sampled_rows": self.sampled_rows,
        }


def sample(frame: pl.DataFrame, rows: int | None, seed: int) -> pl.DataFrame:
    """At most ``rows`` rows, uniformly at random (all of them when ``rows`` is None)."""
    if rows is None or frame.height <= rows:
        return frame
    return frame.sample(n=rows, seed=seed)


def _is_drifted(method: str, score: float, threshold: float) -> bool:
    """Evidently's rule: a p-value below the threshold, or a distance at or above it."""
    return score <= threshold if "p_value" in method else score >= threshold


def data_drift(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    numeric: list[str],
    categorical: list[str],
    sample_rows: int | None = DEFAULT_SAMPLE_ROWS,
    seed: int = 0,
    drift_share: float = 0.5,
) -> DriftResult:
    """Per-column drift of ``current`` against ``reference`` (Evidently DataDriftPreset) on
    samples of at most ``sample_rows`` rows per side; ``sample_rows=None``: every row."""
    columns = [*numeric, *categorical]
    for name, frame in (("reference", reference), ("current", current)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} data lacks drift columns {missing}")
        if frame.height == 0:
            raise ValueError(f"{name} data is empty: nothing to compare")
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    sides = []
    for frame in (current, reference):
        part = sample(frame.select(columns), sample_rows, seed).with_columns(
            pl.col(numeric).cast(pl.Float64), pl.col(categorical).cast(pl.String)
        )
        sides.append(Dataset.from_pandas(part.to_pandas(), data_definition=definition))
    snapshot = Report([DataDriftPreset(drift_share=drift_share)]).run(*sides)
    results = []
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift"):
            score = float(metric["value"])
            results.append(
                ColumnDrift(
                    config["column"],
                    config["method"],
                    float(config["threshold"]),
                    score,
                    _is_drifted(config["method"], score, float(config["threshold"])),
                )
            )
    rows = min(sample_rows or max(reference.height, current.height), max(reference.height, current.height))
    return DriftResult(results, drift_share, reference.height, current.height, rows, snapshot)
