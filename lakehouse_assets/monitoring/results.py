"""The outcomes of the monitors (drift and quality evaluations) as the retrain sensor reads
them: kept apart from the monitors, so readers do not import Evidently."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.tables import DRIFT_TABLE, QUALITY_TABLE


def failed_monitor_evaluations(frame: pl.DataFrame, after: datetime | None) -> list[str]:
    """Times of monitor evaluations after ``after`` that failed (drift or quality)."""
    if after is not None:
        frame = frame.filter(pl.col("computed_at") > after)
    return sorted({str(t) for t in frame.filter(~pl.col("ok"))["computed_at"].to_list()})


def monitor_results(engine: LakeEngine) -> pl.DataFrame:
    """Every drift and quality evaluation: when, which monitor, whether it passed."""
    parts = []
    if engine.version(DRIFT_TABLE) is not None:
        parts.append(
            engine.read(DRIFT_TABLE, columns=["computed_at", "monitor", "dataset_drift"]).select(
                "computed_at", "monitor", ok=~pl.col("dataset_drift")
            )
        )
    if engine.version(QUALITY_TABLE) is not None:
        parts.append(
            engine.read(QUALITY_TABLE, columns=["computed_at", "monitor", "passed"]).select(
                "computed_at", "monitor", ok=pl.col("passed")
            )
        )
    if not parts:
        return pl.DataFrame(schema={"computed_at": pl.Datetime("us"), "monitor": pl.String, "ok": pl.Boolean})
    return pl.concat(parts)


def newest_label_time(engine: LakeEngine, table: str) -> str | None:
    """When the newest label of ``table`` became known (its ``label_known_at``), as text."""
    if engine.version(table) is None:
        return None
    newest = engine.read(table, columns=["label_known_at"])["label_known_at"].max()
    return None if newest is None else str(newest)
