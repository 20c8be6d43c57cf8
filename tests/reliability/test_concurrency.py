"""Concurrent writers in separate processes and replays: the tables equal a serial run; a
conflict is retried (counted), never a silent loss or a duplicate."""

import multiprocessing
import shutil
import time
from pathlib import Path

import polars as pl

from lakehouse_assets.engine import AppTransaction, ConcurrentWriteError, DeltaEngine, MergeClause
from lakehouse_assets.silver.apply_changes import apply_changes
from lakehouse_assets.silver.specs import SILVER_SPECS
from lakehouse_assets.sources.cdc import ChangeLog, capture_to_bronze
from lakehouse_assets.sources.schema import SOURCE_TABLES
from tests.reliability.crash import lake_rows, multiset_difference
from tests.reliability.report import record
from tests.sources.test_cdc import assert_exactly_once

WRITERS = 4
BATCHES = 5


def with_retries(write) -> int:
    """Run a write until no concurrent writer beats it; returns the conflicts seen."""
    for conflicts in range(50):
        try:
            write()
            return conflicts
        except ConcurrentWriteError:
            continue
    raise AssertionError("50 conflicts in a row")


def capture_everything(lake_root: str, db: str, queue) -> None:
    engine = DeltaEngine(lake_root)
    queue.put(
        sum(
            with_retries(
                lambda t=t: capture_to_bronze(
                    engine, ChangeLog(Path(db)), t, batch_id="concurrent", chunk_rows=300
                )
            )
            for t in SOURCE_TABLES
        )
    )


def apply_everything(lake_root: str, queue) -> None:
    engine = DeltaEngine(lake_root)
    queue.put(
        sum(with_retries(lambda s=s: apply_changes(engine, s, batch_id="concurrent")) for s in SILVER_SPECS)
    )


def append_and_merge(lake_root: str, writer: int, start_at: float, queue) -> None:
    """Each writer appends its batches (and replays the first batch of the next writer, as a
    retried step would) and upserts versions of shared keys; all start at the same moment."""
    engine = DeltaEngine(lake_root)
    time.sleep(max(0.0, start_at - time.time()))
    conflicts = 0
    for batch in [*((writer, b) for b in range(BATCHES)), ((writer + 1) % WRITERS, 0)]:
        rows = pl.DataFrame({"writer": [batch[0]] * 3, "batch": [batch[1]] * 3, "row": [0, 1, 2]})
        app = f"writer-{batch[0]}"

        def append(rows=rows, app=app, batch=batch):
            done = engine.app_transaction_version("appends", app)
            if done is not None and done >= batch[1]:
                return  # this batch (or a later one) is in already
            engine.append(
                "appends",
                rows,
                transactions=[AppTransaction(app, batch[1])],
                read_version=engine.version("appends"),
            )

        conflicts += with_retries(append)
    for version in range(1, 4):
        updates = pl.DataFrame({"key": list(range(10)), "version": [version * 10 + writer] * 10})
        conflicts += with_retries(
            lambda u=updates: engine.merge(
                "latest",
                u,
                keys=["key"],
                clauses=(
                    MergeClause("matched", "update", "source.version > target.version"),
                    MergeClause("not_matched", "insert"),
                ),
                read_version=engine.version("latest"),
            )
        )
    queue.put(conflicts)


def run_processes(target, args_list) -> int:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=target, args=(*args, queue)) for args in args_list]
    for process in processes:
        process.start()
    for process in processes:
        process.join(300)
        assert process.exitcode == 0, f"{process.name} exited with {process.exitcode}"
    return sum(queue.get(timeout=10) for _ in processes)


def test_many_writers_append_and_merge_as_a_serial_run_would(engine):
    engine.ensure_table(
        "appends",
        pl.DataFrame(schema={"writer": pl.Int64, "batch": pl.Int64, "row": pl.Int64}).to_arrow().schema,
    )
    engine.ensure_table(
        "latest", pl.DataFrame(schema={"key": pl.Int64, "version": pl.Int64}).to_arrow().schema
    )
    start_at = time.time() + 8  # after every process has imported its modules
    conflicts = run_processes(append_and_merge, [(engine.root, w, start_at) for w in range(WRITERS)])
    appended = engine.read("appends")
    expected = pl.DataFrame(
        {
            "writer": [w for w in range(WRITERS) for _ in range(BATCHES * 3)],
            "batch": [b for _ in range(WRITERS) for b in range(BATCHES) for _ in range(3)],
            "row": [r for _ in range(WRITERS * BATCHES) for r in range(3)],
        }
    )
    lost, extra = multiset_difference(expected, appended), multiset_difference(appended, expected)
    latest = engine.read("latest").sort("key")
    record(
        "concurrent_writers",
        {
            "trials": WRITERS,
            "tables_checked": 2,
            "rows_compared": expected.height + 10,
            "rows_lost": lost,
            "duplicates": extra,
            "conflicts_retried": conflicts,
        },
    )
    assert (lost, extra) == (0, 0)
    assert latest["version"].to_list() == [30 + WRITERS - 1] * 10  # the newest version wins


def test_two_runs_of_capture_and_apply_at_once_equal_a_serial_run(simulated, engine, tmp_path):
    db = simulated.db_path
    conflicts = run_processes(capture_everything, [(engine.root, str(db))] * 2)
    for table in SOURCE_TABLES:
        assert_exactly_once(engine, db, table)
    serial = Path(tmp_path) / "serial"
    shutil.copytree(engine.root, serial)
    for spec in SILVER_SPECS:
        apply_changes(DeltaEngine(str(serial)), spec, batch_id="serial")
    conflicts += run_processes(apply_everything, [(engine.root,)] * 2)
    lost = extra = compared = 0
    silver = [*(s.table for s in SILVER_SPECS), "silver/quarantine"]
    for table in silver:
        got, want = lake_rows(Path(engine.root), table), lake_rows(serial, table)
        compared += want.height
        lost += multiset_difference(want, got)
        extra += multiset_difference(got, want)
    # Replaying both steps changes nothing.
    versions = {t: engine.version(t) for t in [s.table for s in SILVER_SPECS]}
    for table in SOURCE_TABLES:
        assert capture_to_bronze(engine, ChangeLog(db), table, batch_id="replay").rows == 0
    for spec in SILVER_SPECS:
        apply_changes(engine, spec, batch_id="replay")
    assert {t: engine.version(t) for t in versions} == versions
    record(
        "concurrent_runs_and_replay",
        {
            "trials": 4,
            "tables_checked": len(silver),
            "rows_compared": compared,
            "rows_lost": lost,
            "duplicates": extra,
            "conflicts_retried": conflicts,
        },
    )
    assert (lost, extra) == (0, 0)
