"""Silver on Spark Structured Streaming equals the batch path's silver for the same changes: in
several micro-batches, and again after more changes arrive and the queries restart from their
checkpoints (nothing applied twice)."""

import pytest

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.engine.spark import SparkEngine
from lakehouse_assets.silver.apply_changes import apply_changes
from lakehouse_assets.silver.specs import SILVER_SPECS
from lakehouse_assets.sources.cdc import ChangeLog, capture_to_bronze
from lakehouse_assets.sources.schema import SOURCE_TABLES
from lakehouse_assets.streaming.spark import SparkSilverStream
from tests.lake_compare import stable

pytestmark = pytest.mark.spark

RUN_COLUMNS = {"_batch_id", "_ingested_at"}


def capture(engine, changes: ChangeLog, chunk_rows: int) -> None:
    for table in SOURCE_TABLES:
        capture_to_bronze(engine, changes, table, batch_id="capture", chunk_rows=chunk_rows)


def test_structured_streaming_silver_equals_the_batch_path(simulated, settings, spark_session, tmp_path):
    changes = ChangeLog(settings.source_db)
    batch = DeltaEngine(str(tmp_path / "batch"))
    streamed = SparkEngine(spark_session, str(tmp_path / "stream"))
    checkpoints = str(tmp_path / "checkpoints")

    def batch_path() -> None:
        capture(batch, changes, chunk_rows=250_000)
        for spec in SILVER_SPECS:
            apply_changes(batch, spec, batch_id="batch")

    def stream_once() -> SparkSilverStream:
        capture(DeltaEngine(streamed.root), changes, chunk_rows=400)  # many bronze commits
        stream = SparkSilverStream(streamed, SILVER_SPECS, checkpoints, max_files_per_trigger=3)
        stream.start()  # availableNow: what bronze holds, in micro-batches, then stop
        stream.wait()
        return stream

    def assert_equal() -> None:
        for spec in SILVER_SPECS:
            got = stable(DeltaEngine(streamed.root).read(spec.table), RUN_COLUMNS)
            want = stable(batch.read(spec.table), RUN_COLUMNS)
            assert got.equals(want, null_equal=True), spec.table

    first = stream_once()
    batch_path()
    assert first.batches()["silver_orders"] >= 2  # the stream really ran in micro-batches
    assert first.applied["silver/orders"] == batch.read("bronze/orders").height
    assert_equal()

    simulated.live(rate=300, seconds=1)
    second = stream_once()  # restarted from the checkpoints: only the new changes
    batch_path()
    new_events = DeltaEngine(streamed.root).read("bronze/orders").height - first.applied["silver/orders"]
    assert second.applied["silver/orders"] == new_events > 0
    assert_equal()
