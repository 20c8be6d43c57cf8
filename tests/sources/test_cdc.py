import multiprocessing
import os
import signal
import sqlite3

import polars as pl
import pytest

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.sources.cdc import (
    CaptureError,
    ChangeLog,
    bronze_table_name,
    capture_app_id,
    capture_to_bronze,
)
from lakehouse_assets.sources.schema import SOURCE_TABLES, SOURCE_TABLES_BY_NAME

ORDERS = SOURCE_TABLES_BY_NAME["orders"]


def source_rows(db, table) -> pl.DataFrame:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(f"SELECT {', '.join(table.column_names)} FROM {table.name}").fetchall()
    frame = pl.DataFrame(rows, schema=table.column_names, orient="row", infer_schema_length=None)
    return frame.with_columns(
        pl.col(name).str.to_datetime("%Y-%m-%d %H:%M:%S", time_unit="us")
        for name, kind in table.columns
        if kind == "ts"
    ).sort(table.key)


def replay(engine, table) -> pl.DataFrame:
    """Source state rebuilt from bronze alone: the last change per key, deletes dropped."""
    events = engine.read(bronze_table_name(table)).sort("_seq")
    last = events.group_by(table.key).last()
    return last.filter(pl.col("_op") != "delete").select(table.column_names).sort(table.key)


def change_count(db, table) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table.change_table}").fetchone()[0]


def assert_exactly_once(engine, db, table):
    seqs = engine.read(bronze_table_name(table), columns=["_seq"])["_seq"]
    assert seqs.n_unique() == seqs.len() == change_count(db, table)
    assert replay(engine, table).equals(source_rows(db, table), null_equal=True)


def capture_all(engine, db, **kwargs):
    return {
        t.name: capture_to_bronze(engine, ChangeLog(db), t, batch_id="test", **kwargs) for t in SOURCE_TABLES
    }


def test_every_change_lands_once_and_bronze_replays_to_the_source_state(simulated, engine):
    db = simulated.db_path
    results = capture_all(engine, db)
    for table in SOURCE_TABLES:
        assert_exactly_once(engine, db, table)
    assert results["customers"].ops["delete"] > 0  # GDPR erasures captured with their image
    deleted = engine.read("bronze/customers").filter(pl.col("_op") == "delete")
    assert deleted["email"].null_count() == 0
    bronze = engine.read("bronze/orders")
    assert {"_op", "_seq", "_commit_ts", "_ingested_at", "_source", "_batch_id"} <= set(bronze.columns)
    assert bronze["_seq"].is_sorted()


def test_rerun_is_a_no_op_and_new_days_are_captured_incrementally(simulated, engine):
    db = simulated.db_path
    capture_all(engine, db)
    versions = {t.name: engine.version(bronze_table_name(t)) for t in SOURCE_TABLES}
    again = capture_all(engine, db)
    assert all(r.rows == 0 and not r.commits for r in again.values())
    assert versions == {t.name: engine.version(bronze_table_name(t)) for t in SOURCE_TABLES}
    simulated.run(3)
    more = capture_all(engine, db)
    assert more["orders"].rows > 0
    assert more["orders"].cursor_before == again["orders"].cursor_after
    for table in SOURCE_TABLES:
        assert_exactly_once(engine, db, table)


def test_failed_commit_loses_nothing_and_retry_duplicates_nothing(simulated, engine, monkeypatch):
    db = simulated.db_path
    real_append = DeltaEngine.append
    calls = {"n": 0}

    def flaky_append(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the third chunk's commit fails
            raise OSError("disk went away")
        return real_append(self, *args, **kwargs)

    monkeypatch.setattr(DeltaEngine, "append", flaky_append)
    with pytest.raises(OSError, match="disk went away"):
        capture_to_bronze(engine, ChangeLog(db), ORDERS, batch_id="a", chunk_rows=500)
    committed = engine.app_transaction_version("bronze/orders", capture_app_id(ORDERS))
    assert engine.read("bronze/orders")["_seq"].max() == committed  # cursor moved with the rows
    monkeypatch.setattr(DeltaEngine, "append", real_append)
    retry = capture_to_bronze(engine, ChangeLog(db), ORDERS, batch_id="b", chunk_rows=500)
    assert retry.cursor_before == committed
    assert_exactly_once(engine, db, ORDERS)


def _capture_then_die(lake_root, db, kill_after_chunks):
    engine = DeltaEngine(lake_root)

    def on_chunk(result):
        if len(result.commits) == kill_after_chunks:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally blocks

    capture_to_bronze(engine, ChangeLog(db), ORDERS, batch_id="killed", chunk_rows=400, on_chunk=on_chunk)


@pytest.mark.parametrize("kill_after_chunks", [1, 2])
def test_sigkill_mid_capture_then_rerun_is_exactly_once(simulated, engine, kill_after_chunks):
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_capture_then_die, args=(engine.root, simulated.db_path, kill_after_chunks))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert engine.version("bronze/orders") == kill_after_chunks  # created at 0, then the chunks
    capture_to_bronze(engine, ChangeLog(simulated.db_path), ORDERS, batch_id="rerun")
    assert_exactly_once(engine, simulated.db_path, ORDERS)


def test_reset_source_is_refused_with_a_clear_error(simulated, engine, settings):
    capture_to_bronze(engine, ChangeLog(simulated.db_path), ORDERS, batch_id="a")
    simulated.db_path.unlink()
    for suffix in ("-wal", "-shm"):
        simulated.db_path.with_name(simulated.db_path.name + suffix).unlink(missing_ok=True)
    simulated.run(1)
    with pytest.raises(CaptureError, match="reset or replaced"):
        capture_to_bronze(engine, ChangeLog(simulated.db_path), ORDERS, batch_id="b")


def test_missing_source_database_is_named(tmp_path, engine):
    with pytest.raises(CaptureError, match="lakehouse simulate"):
        capture_to_bronze(engine, ChangeLog(tmp_path / "nope.sqlite"), ORDERS, batch_id="x")


def test_two_concurrent_captures_never_duplicate(simulated, settings):
    from concurrent.futures import ThreadPoolExecutor

    from lakehouse_assets.engine import ConcurrentWriteError

    def capture(batch):
        engine = DeltaEngine(settings.lake_root)
        try:
            return capture_to_bronze(
                engine, ChangeLog(simulated.db_path), ORDERS, batch_id=batch, chunk_rows=300
            ).rows
        except ConcurrentWriteError:
            return "conflict"

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(capture, ["a", "b"]))
    engine = DeltaEngine(settings.lake_root)
    capture_to_bronze(engine, ChangeLog(simulated.db_path), ORDERS, batch_id="retry")
    assert_exactly_once(engine, simulated.db_path, ORDERS)
    assert "conflict" in outcomes or 0 in outcomes, outcomes
