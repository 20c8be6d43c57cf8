"""What the stream tells the outside: runless materializations of the tables it wrote (Dagster
shows them fresh, with their Delta version and lag) and Prometheus metrics on 127.0.0.1."""

from __future__ import annotations

import logging
from typing import Any

from dagster import AssetKey, AssetMaterialization, DagsterInstance, MetadataValue
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from lakehouse_assets.metadata import bronze_asset_key, silver_asset_key
from lakehouse_assets.sources.cdc import bronze_table_name
from lakehouse_assets.streaming.runner import StreamRunner, Tick

log = logging.getLogger(__name__)


def report_to_dagster(instance: DagsterInstance, runner: StreamRunner, tick: Tick) -> int:
    """One runless materialization per table the tick wrote; returns how many were reported."""
    row = tick.lag_row()
    common: dict[str, Any] = {
        "writer": "lakehouse stream",
        "batch_id": tick.batch_id,
        "lag_p99_seconds": MetadataValue.float(float(row["lag_p99_seconds"])),  # type: ignore[arg-type]
    }
    events: list[tuple[AssetKey, str, int]] = []
    for source in runner.tables:
        if source.name in tick.captured:
            events.append(
                (bronze_asset_key(source.name), bronze_table_name(source), tick.captured[source.name])
            )
    for spec in runner.specs:
        if spec.table in tick.applied:
            events.append((silver_asset_key(spec.name), spec.table, tick.applied[spec.table]))
    for key, table, changes in events:
        instance.report_runless_asset_event(
            AssetMaterialization(
                asset_key=key,
                metadata={
                    **common,
                    "table": table,
                    "delta_version": runner.engine.version(table) or 0,
                    "changes": changes,
                },
            )
        )
    return len(events)


class StreamMetrics:
    """The stream's Prometheus metrics (a registry of its own), served on ``host:port``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.changes = Counter(
            "lakehouse_stream_changes", "source changes streamed to bronze", registry=self.registry
        )
        self.ticks = Counter("lakehouse_stream_batches", "micro-batches run", registry=self.registry)
        self.lag = Gauge(
            "lakehouse_stream_lag_seconds",
            "source commit -> silver commit of the last micro-batch that moved data",
            ["quantile"],
            registry=self.registry,
        )
        self.tick_seconds = Gauge(
            "lakehouse_stream_batch_seconds", "duration of the last micro-batch", registry=self.registry
        )

    def observe(self, tick: Tick) -> None:
        self.ticks.inc()
        self.tick_seconds.set(tick.seconds)
        if tick.changes:
            self.changes.inc(tick.changes)
            row = tick.lag_row()
            for quantile, column in (("0.5", "lag_p50_seconds"), ("0.99", "lag_p99_seconds")):
                self.lag.labels(quantile).set(float(row[column]))  # type: ignore[arg-type]

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
        log.info("stream metrics on http://%s:%s/metrics", host, port)
