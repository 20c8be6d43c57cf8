"""The stream in the Dagster definitions: its lag time series as an asset `lakehouse stream`
writes, and the freshness objective as a check on it."""

from __future__ import annotations

from typing import Any

import polars as pl
from dagster import AssetCheckResult, AssetCheckSpec, AssetSpec, MetadataValue, multi_asset_check

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.metadata import OWNERS, silver_asset_key
from lakehouse_assets.resources.lake import LakeResource
from lakehouse_assets.streaming.features import VIEW
from lakehouse_assets.tables import REALTIME_CUSTOMER_FEATURES_TABLE, STREAM_LAG_TABLE

STREAM_LAG = AssetSpec(
    "stream_lag",
    group_name="streaming",
    kinds={"delta"},
    owners=OWNERS,
    description="lake/monitoring/stream_lag: the lag of every micro-batch of `lakehouse stream` "
    "(source commit -> silver commit, and -> online feature store; p50/p99/max); written by the "
    "stream, not by Dagster.",
    metadata={"table": STREAM_LAG_TABLE},
)
REALTIME_FEATURES = AssetSpec(
    VIEW,
    group_name="streaming",
    kinds={"delta", "feast"},
    owners=OWNERS,
    deps=[silver_asset_key("orders")],
    description=f"lake/{REALTIME_CUSTOMER_FEATURES_TABLE}: the feature view {VIEW} (orders and spend "
    "in the last hour / 24 hours, open orders, minutes since the last order), computed by "
    "`lakehouse stream` from silver/orders' change feed and pushed to the online store; every "
    "pushed row is kept here, the view's offline source for point-in-time training sets.",
    metadata={"table": REALTIME_CUSTOMER_FEATURES_TABLE},
)
CHECK = "stream_lag_within_objective"


def lag_verdict(engine: LakeEngine, objective_seconds: float, batches: int = 10) -> dict[str, Any]:
    """Whether the newest ``batches`` micro-batches met the objective at their 99th percentile;
    ``passed`` is None before the stream moved anything."""
    if engine.version(STREAM_LAG_TABLE) is None:
        return {"passed": None, "note": "no streamed micro-batch yet"}
    recent = engine.read(STREAM_LAG_TABLE).sort("computed_at").tail(batches)
    lags = [c for c in ("lag_p99_seconds", "online_lag_p99_seconds") if c in recent.columns]
    recent = recent.with_columns(p99=pl.max_horizontal(lags))  # the later of silver and online
    worst = float(recent["p99"].max())  # type: ignore[arg-type]
    late = recent.filter(pl.col("p99") > objective_seconds).height
    return {
        "passed": late == 0,
        "note": f"{late} of the newest {recent.height} micro-batches over {objective_seconds:g}s at p99 "
        f"(worst {worst:.2f}s)",
        "worst_p99_seconds": worst,
        "newest_batch_at": str(recent["computed_at"].max()),
    }


def stream_lag_check(objective_seconds: float) -> Any:
    """The freshness objective of the stream: the newest micro-batches' p99 lag within it."""

    @multi_asset_check(
        specs=[
            AssetCheckSpec(
                CHECK,
                asset=STREAM_LAG.key,
                description=f"The newest micro-batches of `lakehouse stream` reached silver and the "
                f"online features within {objective_seconds:g}s of their source commit at the 99th "
                "percentile (stream.lag_objective_seconds).",
            )
        ],
    )
    def stream_lag_within_objective(lake: LakeResource):
        verdict = lag_verdict(lake.engine(), objective_seconds)
        yield AssetCheckResult(
            check_name=CHECK,
            asset_key=STREAM_LAG.key,
            passed=verdict["passed"] is not False,
            description=verdict["note"],
            metadata={"verdict": MetadataValue.json(verdict)},
        )

    return stream_lag_within_objective
