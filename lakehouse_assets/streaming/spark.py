"""Silver on Spark Structured Streaming: one query per apply-changes spec over its bronze
table's change data feed, ``foreachBatch`` running the same apply-changes (Spark MERGE) as the
batch path.

Each micro-batch applies bronze up to the newest commit version it holds. Progress is kept
twice, on purpose: the query's checkpoint (which bronze commits it has seen) and silver's Delta
transaction identifier (which bronze version silver holds). A batch Spark replays after a crash
finds silver already at its version and changes nothing, so the pair is exactly once.

The queries read in parallel; their applies take turns, as the batch path's do: every spec also
appends to the shared quarantine and expectation-results tables, and Delta on Spark fails the
losers of concurrent first writes to a table instead of retrying them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from lakehouse_assets.engine.spark import SparkEngine
from lakehouse_assets.silver.apply_changes import ApplyChangesSpec, apply_changes

log = logging.getLogger(__name__)


class SparkSilverStream:
    """The Structured Streaming queries bronze -> silver of ``specs``, checkpointed under
    ``checkpoints`` (one folder per spec)."""

    def __init__(
        self,
        engine: SparkEngine,
        specs: Iterable[ApplyChangesSpec],
        checkpoints: str,
        *,
        max_files_per_trigger: int | None = None,
    ):
        self.engine, self.specs, self.checkpoints = engine, list(specs), checkpoints.rstrip("/")
        self.max_files_per_trigger = max_files_per_trigger
        self.queries: list[Any] = []
        self.applied: dict[str, int] = {}  # silver table -> change events applied by this process
        self.turn = threading.Lock()

    def _apply(self, spec: ApplyChangesSpec):
        def apply_batch(batch: Any, batch_id: int) -> None:
            newest = batch.agg({"_commit_version": "max"}).first()[0]
            if newest is None:
                return
            with self.turn:
                result = apply_changes(
                    self.engine, spec, batch_id=f"spark-stream-{batch_id}", up_to_bronze_version=int(newest)
                )
            self.applied[spec.table] = self.applied.get(spec.table, 0) + result.events_read
            log.info("%s: micro-batch %s applied %d events", spec.table, batch_id, result.events_read)

        return apply_batch

    def start(self, *, interval_seconds: float | None = None) -> list[Any]:
        """Start every query: every ``interval_seconds``, or (None) over what bronze holds now,
        in micro-batches, then stop (``availableNow``)."""
        trigger: dict[str, Any] = (
            {"availableNow": True}
            if interval_seconds is None
            else {"processingTime": f"{int(interval_seconds * 1000)} milliseconds"}
        )
        for spec in self.specs:
            reader = (
                self.engine.spark.readStream.format("delta")
                .option("readChangeFeed", "true")
                .option("startingVersion", 0)
            )
            if self.max_files_per_trigger:
                reader = reader.option("maxFilesPerTrigger", self.max_files_per_trigger)
            query = (
                reader.load(self.engine.table_path(spec.source))
                .select("_commit_version")
                .writeStream.queryName(f"silver_{spec.name}")
                .foreachBatch(self._apply(spec))
                .option("checkpointLocation", f"{self.checkpoints}/{spec.name}")
                .trigger(**trigger)
                .start()
            )
            self.queries.append(query)
        return self.queries

    def wait(self) -> None:
        """Until every query ended (``availableNow``); a query's failure is raised here."""
        for query in self.queries:
            query.awaitTermination()
            if query.exception() is not None:
                raise RuntimeError(f"{query.name} failed: {query.exception()}")

    def stop(self) -> None:
        """Stop the queries (a micro-batch's MERGE either committed or did not: both resume)."""
        for query in self.queries:
            query.stop()
        self.queries = []

    def batches(self) -> dict[str, int]:
        """Micro-batches each query has run with data, from its progress reports."""
        return {q.name: sum(1 for p in q.recentProgress if p["numInputRows"]) for q in self.queries}
