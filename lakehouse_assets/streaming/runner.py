"""The continuous pipeline (`lakehouse stream`): micro-batches of the source's changes (SQLite
change tables, or PostgreSQL's replication stream) to bronze and on to silver, with the same
exactly-once functions the Dagster assets run.

Each tick captures the changes committed since bronze's cursor (at most ``max_batch_rows`` per
table and commit, so a burst is taken in bounded chunks, never buffered whole), then applies the
new bronze versions to silver. Both steps commit their progress with the data as Delta
transaction identifiers: a process killed at any point loses and duplicates nothing, and the
next start resumes from the committed cursors. SIGTERM (or SIGINT) ends the loop after the tick
in progress. Every tick that moved data appends its lag (source commit -> silver commit, per
change) to ``monitoring/stream_lag``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import polars as pl

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.silver.apply_changes import ApplyChangesSpec, apply_changes
from lakehouse_assets.silver.specs import SILVER_SPECS
from lakehouse_assets.sources.cdc import CaptureResult, ChangeLog, bronze_table_name, capture_to_bronze
from lakehouse_assets.sources.postgres import PostgresSource, SlotStream, capture_postgres_to_bronze
from lakehouse_assets.sources.schema import SOURCE_TABLES, SourceTable
from lakehouse_assets.streaming.features import RealtimeFeatures
from lakehouse_assets.tables import REALTIME_CUSTOMER_FEATURES_TABLE, STREAM_LAG_TABLE

log = logging.getLogger(__name__)
FEATURE_SOURCE = "orders"  # the source table whose changes move the streamed features

LAG_SCHEMA = pl.Schema(
    {
        "computed_at": pl.Datetime("us"),
        "batch_id": pl.String(),
        "changes": pl.Int64(),
        "lag_p50_seconds": pl.Float64(),
        "lag_p99_seconds": pl.Float64(),
        "lag_max_seconds": pl.Float64(),
        "tick_seconds": pl.Float64(),
        "feature_rows": pl.Int64(),  # customer rows pushed to the online store
        "online_lag_p50_seconds": pl.Float64(),  # source commit -> online store (orders' changes)
        "online_lag_p99_seconds": pl.Float64(),
    }
)


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


@dataclass
class Tick:
    """What one micro-batch moved, and how late its changes reached silver."""

    batch_id: str
    captured: dict[str, int] = field(default_factory=dict)  # source table -> changes
    applied: dict[str, int] = field(default_factory=dict)  # silver table -> events
    lags: list[float] = field(default_factory=list)  # seconds, one per captured change
    online_lags: list[float] = field(default_factory=list)  # seconds, per change that moved a feature
    feature_rows: int = 0
    seconds: float = 0.0

    @property
    def changes(self) -> int:
        return sum(self.captured.values())

    def lag_row(self) -> dict[str, object]:
        return {
            "computed_at": datetime.now(UTC).replace(tzinfo=None),
            "batch_id": self.batch_id,
            "changes": self.changes,
            "lag_p50_seconds": _percentile(self.lags, 50),
            "lag_p99_seconds": _percentile(self.lags, 99),
            "lag_max_seconds": max(self.lags, default=None),
            "tick_seconds": self.seconds,
            "feature_rows": self.feature_rows,
            "online_lag_p50_seconds": _percentile(self.online_lags, 50),
            "online_lag_p99_seconds": _percentile(self.online_lags, 99),
        }


# (engine, source table, batch id, rows per commit) -> the changes it committed to bronze
Capture = Callable[[LakeEngine, SourceTable, str, int], CaptureResult]


def sqlite_capture(changes: ChangeLog) -> Capture:
    """Capture from the SQLite source's change tables (trigger-based)."""
    return lambda engine, table, batch_id, rows: capture_to_bronze(
        engine, changes, table, batch_id=batch_id, chunk_rows=rows
    )


def postgres_capture(source: PostgresSource) -> Capture:
    """Capture from PostgreSQL's replication stream (one logical slot per table)."""
    streams = {t.name: SlotStream(source, t) for t in SOURCE_TABLES}
    return lambda engine, table, batch_id, rows: capture_postgres_to_bronze(
        engine, streams[table.name], batch_id=batch_id, max_rows=rows
    )


def _specs_of(tables: list[SourceTable]) -> list[ApplyChangesSpec]:
    sources = {bronze_table_name(t) for t in tables}
    return [s for s in SILVER_SPECS if s.source in sources]


class StreamRunner:
    """Source changes -> bronze -> silver, tick after tick, exactly once."""

    def __init__(
        self,
        engine: LakeEngine,
        source: ChangeLog | Capture,
        *,
        max_batch_rows: int = 10_000,
        tables: list[SourceTable] | None = None,
        compact_every_ticks: int = 600,
        features: RealtimeFeatures | None = None,
        apply_silver: bool = True,
    ):
        self.engine, self.max_batch_rows = engine, max_batch_rows
        self.capture = sqlite_capture(source) if isinstance(source, ChangeLog) else source
        self.compact_every_ticks = compact_every_ticks
        self.tables = list(tables or SOURCE_TABLES)
        # False: silver is applied elsewhere (Spark Structured Streaming, streaming/spark.py)
        self.specs = _specs_of(self.tables) if apply_silver else []
        self.features = features
        self.stop = threading.Event()
        self.ticks = 0

    def tick(self) -> Tick:
        """One micro-batch: capture what is new, apply it to silver, update the streamed
        features, record the lag."""
        started = time.perf_counter()
        tick = Tick(batch_id=f"stream-{datetime.now(UTC):%Y%m%dT%H%M%S%f}")
        commit_times: dict[str, np.ndarray] = {}
        for table in self.tables:
            result = self.capture(self.engine, table, tick.batch_id, self.max_batch_rows)
            if result.rows:
                tick.captured[table.name] = result.rows
                commit_times[table.name] = np.concatenate(result.commit_times)
        for spec in self.specs:
            applied = apply_changes(self.engine, spec, batch_id=tick.batch_id)
            if applied.events_read:
                tick.applied[spec.table] = applied.events_read
        if commit_times:
            tick.lags = list(time.time() - np.concatenate(list(commit_times.values())))
        if self.features is not None:
            tick.feature_rows = self.features.update(datetime.now(UTC).replace(tzinfo=None)).height
            if tick.feature_rows and FEATURE_SOURCE in commit_times and self.specs:  # silver is ours
                tick.online_lags = list(time.time() - commit_times[FEATURE_SOURCE])
        tick.seconds = time.perf_counter() - started
        if tick.changes:
            self.engine.append(STREAM_LAG_TABLE, pl.DataFrame([tick.lag_row()], schema=LAG_SCHEMA))
        self.ticks += 1
        return tick

    def streamed_tables(self) -> list[str]:
        """The bronze and silver tables the stream writes."""
        streamed = [*(bronze_table_name(t) for t in self.tables), *(s.table for s in self.specs)]
        return [*streamed, REALTIME_CUSTOMER_FEATURES_TABLE] if self.features else streamed

    def compact(self) -> dict[str, tuple[int, int]]:
        """OPTIMIZE every streamed table (small continuous commits -> few files): per table,
        its file count before and after. Between ticks, so it competes with no write."""
        counts = {}
        for table in self.streamed_tables():
            if self.engine.exists(table):
                before = self.engine.stats(table).files
                self.engine.optimize(table)
                counts[table] = (before, self.engine.stats(table).files)
        return counts

    def run(
        self,
        interval_seconds: float = 1.0,
        until: Callable[[], bool] = lambda: False,
        on_tick: Callable[[Tick], None] = lambda _: None,
    ) -> int:
        """Tick every ``interval_seconds`` until ``stop`` is set or ``until()``; returns the
        number of ticks. A tick in progress always finishes (its commits are whole)."""
        while not self.stop.is_set() and not until():
            started = time.monotonic()
            on_tick(self.tick())
            if self.ticks % self.compact_every_ticks == 0:
                for table, (before, after) in self.compact().items():
                    log.info("%s: compacted %d -> %d files", table, before, after)
            self.stop.wait(max(0.0, interval_seconds - (time.monotonic() - started)))
        return self.ticks


@contextmanager
def stopping_on_signals(runner: StreamRunner) -> Iterator[None]:
    """SIGTERM and SIGINT end ``runner``'s loop after the tick in progress."""

    def handle(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping after the current micro-batch", signum)
        runner.stop.set()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
