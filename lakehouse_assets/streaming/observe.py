"""What the stream tells the outside: runless materializations of the tables it wrote (Dagster
shows them fresh, with their Delta version and lag) and Prometheus metrics on 127.0.0.1."""

from __future__ import annotations

import logging
import time

from dagster import AssetKey, AssetMaterialization, DagsterInstance, MetadataValue
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from lakehouse_assets.metadata import bronze_asset_key, silver_asset_key
from lakehouse_assets.sources.cdc import bronze_table_name
from lakehouse_assets.streaming.features import VIEW
from lakehouse_assets.streaming.runner import StreamRunner, Tick
from lakehouse_assets.tables import REALTIME_CUSTOMER_FEATURES_TABLE

log = logging.getLogger(__name__)


class DagsterReporter:
    """Runless materializations of the tables the stream wrote, at most one per table every
    ``every_seconds`` (the changes of the batches between are summed): Dagster shows the tables
    fresh without an event-log write per micro-batch. ``flush`` reports what is pending."""

    def __init__(self, instance: DagsterInstance, runner: StreamRunner, every_seconds: float = 10.0):
        self.instance, self.runner, self.every_seconds = instance, runner, every_seconds
        self.pending: dict[str, int] = {}  # lake table -> changes since the last report
        self.last_tick: Tick | None = None
        self.reported_at = time.monotonic()
        self.keys = {bronze_table_name(t): bronze_asset_key(t.name) for t in runner.tables}
        self.keys |= {s.table: silver_asset_key(s.name) for s in runner.specs}
        self.keys[REALTIME_CUSTOMER_FEATURES_TABLE] = AssetKey(VIEW)

    def observe(self, tick: Tick) -> int:
        """Count the tick's writes; report when the interval has passed. Returns events written."""
        if not tick.changes and not tick.feature_rows:
            return 0
        for source in self.runner.tables:
            if source.name in tick.captured:
                table = bronze_table_name(source)
                self.pending[table] = self.pending.get(table, 0) + tick.captured[source.name]
        for table, events in tick.applied.items():
            self.pending[table] = self.pending.get(table, 0) + events
        if tick.feature_rows:
            table = REALTIME_CUSTOMER_FEATURES_TABLE
            self.pending[table] = self.pending.get(table, 0) + tick.feature_rows
        self.last_tick = tick
        if time.monotonic() - self.reported_at < self.every_seconds:
            return 0
        return self.flush()

    def flush(self) -> int:
        if not self.pending or self.last_tick is None:
            return 0
        row = self.last_tick.lag_row()
        for table, changes in self.pending.items():
            self.instance.report_runless_asset_event(
                AssetMaterialization(
                    asset_key=self.keys[table],
                    metadata={
                        "writer": "lakehouse stream",
                        "batch_id": self.last_tick.batch_id,
                        "lag_p99_seconds": MetadataValue.float(float(row["lag_p99_seconds"])),  # type: ignore[arg-type]
                        "table": table,
                        "delta_version": self.runner.engine.version(table) or 0,
                        "changes": changes,
                    },
                )
            )
        reported, self.pending = len(self.pending), {}
        self.reported_at = time.monotonic()
        return reported


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
        self.online_lag = Gauge(
            "lakehouse_stream_online_lag_seconds",
            "source commit -> online feature store of the last micro-batch that moved a feature",
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
            for label, q in (("0.5", 50), ("0.99", 99)):
                self.lag.labels(label).set(row[f"lag_p{q}_seconds"])  # type: ignore[arg-type]
                if (online := row[f"online_lag_p{q}_seconds"]) is not None:
                    self.online_lag.labels(label).set(online)  # type: ignore[arg-type]

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
        log.info("stream metrics on http://%s:%s/metrics", host, port)
