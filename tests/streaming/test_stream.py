"""The continuous pipeline: micro-batches give the same silver as the batch path, and a
`lakehouse stream` process stopped with SIGTERM while the shop writes live, then restarted,
has lost and duplicated no change."""

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime

import httpx
import polars as pl
from dagster import AssetCheckKey, AssetKey, DagsterInstance

from lakehouse_assets.definitions import build_definitions
from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.features.store import feature_store
from lakehouse_assets.settings import LakehouseSettings
from lakehouse_assets.silver.apply_changes import apply_changes
from lakehouse_assets.silver.specs import SILVER_SPECS
from lakehouse_assets.sources.cdc import ChangeLog, bronze_table_name, capture_to_bronze
from lakehouse_assets.sources.schema import SOURCE_TABLES
from lakehouse_assets.streaming.assets import lag_verdict
from lakehouse_assets.streaming.features import APP_ID, VIEW
from lakehouse_assets.streaming.runner import LAG_SCHEMA, StreamRunner
from lakehouse_assets.tables import REALTIME_CUSTOMER_FEATURES_TABLE, STREAM_LAG_TABLE
from tests.lake_compare import stable

# written per run or per micro-batch: not part of what must be equal
RUN_COLUMNS = {"_batch_id", "_ingested_at"}


def test_micro_batches_give_the_batch_paths_silver(simulated, settings, tmp_path):
    changes = ChangeLog(settings.source_db)
    batch = DeltaEngine(str(tmp_path / "batch"))
    for table in SOURCE_TABLES:
        capture_to_bronze(batch, changes, table, batch_id="batch")
    for spec in SILVER_SPECS:
        apply_changes(batch, spec, batch_id="batch")

    streamed = DeltaEngine(str(tmp_path / "stream"))
    runner = StreamRunner(streamed, changes, max_batch_rows=150)  # many small commits
    first = runner.tick()
    assert first.changes == sum(changes.count_between(t, 0, changes.max_seq(t)) for t in SOURCE_TABLES) > 0
    assert runner.tick().changes == 0  # caught up: nothing twice
    assert len(streamed.history("bronze/orders")) > len(batch.history("bronze/orders")) + 2
    for spec in SILVER_SPECS:
        assert stable(streamed.read(spec.table), RUN_COLUMNS).equals(
            stable(batch.read(spec.table), RUN_COLUMNS)
        )
    lag = streamed.read(STREAM_LAG_TABLE)
    assert lag.height == 1 and lag["changes"].to_list() == [first.changes]

    compacted = runner.compact()
    assert compacted["bronze/orders"][0] > compacted["bronze/orders"][1] >= 1  # small commits -> fewer files


def test_sigterm_stops_after_the_batch_and_a_restart_loses_and_duplicates_nothing(simulated, settings):
    port = free_port()
    env = {
        **os.environ,
        "LAKEHOUSE_HOME": str(settings.home_dir),
        "LAKEHOUSE_STREAM__INTERVAL_SECONDS": "0.2",
        "LAKEHOUSE_STREAM__METRICS_PORT": str(port),
    }
    command = [sys.executable, "-m", "lakehouse_assets.cli", "stream"]
    stream = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        scrape(f"http://127.0.0.1:{port}/metrics", "lakehouse_stream_batches_total")  # it is running
        written = simulated.live(rate=300, seconds=3)  # the shop keeps writing while it streams
        metrics = scrape(
            f"http://127.0.0.1:{port}/metrics", 'lakehouse_stream_online_lag_seconds{quantile="0.99"}'
        )
        stream.send_signal(signal.SIGTERM)
        output, _ = stream.communicate(timeout=120)
    finally:
        if stream.poll() is None:
            stream.kill()
    assert stream.returncode == 0, output
    assert "stream stopped after" in output and "every batch is committed" in output
    assert written > 0
    simulated.live(rate=300, seconds=1)  # more changes while it is down
    again = subprocess.run([*command, "--once"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr

    engine = DeltaEngine(settings.lake_root)
    changes = ChangeLog(settings.source_db)
    for table in SOURCE_TABLES:
        captured = engine.read(bronze_table_name(table), columns=["_seq"])["_seq"]
        source = changes.sequences(table, changes.max_seq(table))["_seq"]
        assert captured.n_unique() == captured.len(), f"{table.name}: duplicated changes"
        assert sorted(captured.to_list()) == sorted(source.to_list()), f"{table.name}: lost changes"
    orders = engine.read("silver/orders")
    source_orders = pl.read_database_uri("SELECT order_id FROM orders", changes.uri)
    assert set(orders["order_id"].to_list()) == set(source_orders["order_id"].to_list())
    lag = engine.read(STREAM_LAG_TABLE)
    assert lag.height >= 2 and (lag["lag_p50_seconds"] >= 0).all()
    assert 'lakehouse_stream_lag_seconds{quantile="0.99"}' in metrics
    # Dagster sees the streamed tables as materialized, with their Delta version
    with DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        event = instance.get_latest_materialization_event(AssetKey("silver_orders"))
    assert event is not None and event.asset_materialization is not None
    reported = event.asset_materialization.metadata
    assert reported["writer"].value == "lakehouse stream"
    assert reported["delta_version"].value == engine.version("silver/orders")
    # and the streamed features reached the online store, as fresh as silver
    features = engine.read(REALTIME_CUSTOMER_FEATURES_TABLE)
    assert features["silver_version"].max() == engine.version("silver/orders")
    assert engine.app_transaction_version(REALTIME_CUSTOMER_FEATURES_TABLE, APP_ID) == engine.version(
        "silver/orders"
    )
    assert (lag["online_lag_p99_seconds"].drop_nulls() >= 0).all() and lag["feature_rows"].sum() > 0
    store, _ = feature_store(settings)
    newest = features.sort("feature_ts").unique("customer_id", keep="last").sort("customer_id")
    online = store.get_online_features(
        features=[f"{VIEW}:orders_24h", f"{VIEW}:spend_24h"],
        entity_rows=[{"customer_id": i} for i in newest["customer_id"]],
    ).to_dict()
    assert online["orders_24h"] == newest["orders_24h"].to_list()
    assert online["spend_24h"] == newest["spend_24h"].to_list()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(url: str, needle: str, timeout: float = 30) -> str:
    """The metrics page once it shows ``needle`` (the stream has moved data)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = httpx.get(url, timeout=2).text
            if needle in text:
                return text
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{needle} never appeared at {url}"
        time.sleep(0.2)


def test_the_lag_objective_fails_when_a_recent_batch_was_late(tmp_path):
    engine = DeltaEngine(str(tmp_path))
    assert lag_verdict(engine, 5.0)["passed"] is None  # nothing streamed yet: not a failure
    rows = [
        {"computed_at": datetime(2026, 12, 1, 12, 0, i), "lag_p99_seconds": p99}
        for i, p99 in enumerate([0.8, 1.2])
    ]

    def append(batch: list[dict]) -> None:
        frame = pl.DataFrame(batch).with_columns(
            pl.lit(None, dtype).alias(c) for c, dtype in LAG_SCHEMA.items() if c not in batch[0]
        )
        engine.append(STREAM_LAG_TABLE, frame.select(LAG_SCHEMA.names()).cast(dict(LAG_SCHEMA)))

    append(rows)
    assert lag_verdict(engine, 5.0)["passed"] is True
    append([{"computed_at": datetime(2026, 12, 1, 12, 1), "lag_p99_seconds": 7.5}])
    verdict = lag_verdict(engine, 5.0)
    assert verdict["passed"] is False and verdict["worst_p99_seconds"] == 7.5
    assert "1 of the newest 3 micro-batches over 5s" in verdict["note"]
    # the check is in the definitions, run by the monitoring job
    defs = build_definitions(LakehouseSettings(home=tmp_path / "home"))
    checks = defs.resolve_job_def("monitoring_job").asset_layer.asset_graph.asset_check_keys
    assert AssetCheckKey(AssetKey("stream_lag"), "stream_lag_within_objective") in checks


def test_a_burst_is_taken_in_bounded_commits_and_the_lag_recovers(simulated, settings):
    """A backlog (the whole simulated history at once, far above the live rate) is committed in
    chunks of at most max_batch_rows, so memory holds one chunk, not the burst; once it is
    taken, live changes reach silver within the objective again."""
    engine = DeltaEngine(settings.lake_root)
    runner = StreamRunner(engine, ChangeLog(settings.source_db), max_batch_rows=200)
    burst = runner.tick()
    assert burst.changes > 10 * 200
    for table in SOURCE_TABLES:
        writes = [h for h in engine.history(bronze_table_name(table)) if h["operation"] == "WRITE"]
        sizes = [h["operationMetrics"]["num_added_rows"] for h in writes]
        assert max(sizes) <= 200 and sum(sizes) == burst.captured.get(table.name, 0)
    simulated.live(rate=200, seconds=1)
    live = runner.tick()
    assert live.changes > 0 and max(live.lags) < 60  # seconds old (the burst was months old)
