"""Bronze ingest benchmark: CDC capture + bronze write, and landing-file ingestion, each beside a
plain ``write_deltalake`` of the same rows measured in the same run.

    uv run python benchmarks/bench_bronze_ingest.py --events 1000000 10000000

For each size it simulates a shop with about that many change events (cached under
benchmarks/.data/), captures every change into fresh bronze tables, then writes the very same rows
with one plain ``write_deltalake`` per table. For files, it writes payment files (CSV, JSON lines,
Parquet, 0.1% malformed rows) with the same number of records and ingests them. It prints rows per
second for both paths and the ratio ours / plain (target: >= 0.8).
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
from deltalake import write_deltalake

from lakehouse_assets.engine import AppTransaction, DeltaEngine
from lakehouse_assets.settings import SimulatorSettings
from lakehouse_assets.sources.cdc import ChangeLog, bronze_table_name, capture_to_bronze
from lakehouse_assets.sources.landing import PAYMENTS, ingest_files
from lakehouse_assets.sources.schema import SOURCE_TABLES
from lakehouse_assets.sources.simulator import ShopSimulator
from lakehouse_assets.tables import LANDING_QUARANTINE_TABLE

DATA = Path(__file__).parent / ".data"
CHUNK_ROWS = 250_000  # the capture's default chunk size
EVENTS_PER_SCALE_UNIT = 9_400  # about this many change events per unit of scale over 30 days


def simulated_source(events: int) -> Path:
    """A source database with at least ``events`` change events (built once, then reused)."""
    db = DATA / f"shop_{events}.sqlite"
    done = db.with_suffix(".done")
    if done.exists():
        return db
    shutil.rmtree(db.parent / f"landing_{events}", ignore_errors=True)
    db.unlink(missing_ok=True)
    cfg = SimulatorSettings(days=30, scale=events / EVENTS_PER_SCALE_UNIT * 1.05, landing_formats=())
    sim = ShopSimulator(db, db.parent / f"landing_{events}", cfg)
    started = time.perf_counter()
    summary = sim.run(
        progress=lambda d, total, s: print(
            f"\r  simulating day {d}/{total}: {s.change_events:,} change events", end="", flush=True
        )
    )
    print(f"\n  simulated {summary.change_events:,} change events in {time.perf_counter() - started:.0f}s")
    done.touch()
    return db


def total_changes(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return sum(
            conn.execute(f"SELECT COUNT(*) FROM {t.change_table}").fetchone()[0] for t in SOURCE_TABLES
        )


def plain_write(tables: dict[str, pa.Table], root: Path) -> float:
    started = time.perf_counter()
    for name, table in tables.items():
        write_deltalake(str(root / name), table, mode="append")
    return time.perf_counter() - started


def bookkeeping_write(tables: dict[str, pa.Table], root: Path, chunk_rows: int) -> float:
    """Our write path alone (engine.append in capture-sized chunks, each commit carrying its
    transaction identifier and metadata): isolates what exactly-once bookkeeping costs."""
    engine = DeltaEngine(str(root))
    started = time.perf_counter()
    for name, table in tables.items():
        for index, offset in enumerate(range(0, table.num_rows, chunk_rows)):
            engine.append(
                name,
                table.slice(offset, chunk_rows),
                transactions=[AppTransaction(f"bench:{name}", index)],
                commit_metadata={"chunk": index},
                read_version=engine.version(name),
            )
    return time.perf_counter() - started


def bench_cdc(events: int, work: Path) -> tuple[int, float, float, float]:
    db = simulated_source(events)
    rows = total_changes(db)
    engine = DeltaEngine(str(work / "ours"))
    log = ChangeLog(db)
    started = time.perf_counter()
    for table in SOURCE_TABLES:
        result = capture_to_bronze(engine, log, table, batch_id="bench", chunk_rows=CHUNK_ROWS)
        print(f"  captured {table.name}: {result.rows:,} rows in {result.seconds:.2f}s")
    ours = time.perf_counter() - started
    same_rows = {t.name: engine.read(bronze_table_name(t)).to_arrow() for t in SOURCE_TABLES}
    assert sum(t.num_rows for t in same_rows.values()) == rows
    plain = plain_write(same_rows, work / "plain")
    write_only = bookkeeping_write(same_rows, work / "write_only", CHUNK_ROWS)
    return rows, ours, plain, write_only


def write_payment_files(records: int, folder: Path, files: int = 12) -> None:
    """Payment files in rotating formats with 0.1% malformed rows (bad amount or missing key)."""
    folder.mkdir(parents=True, exist_ok=True)
    per_file = -(-records // files)
    for index in range(files):
        start = index * per_file
        n = min(per_file, records - start)
        ids = pl.int_range(start, start + n, eager=True)
        frame = pl.DataFrame({"order_id": ids}).select(
            payment_id=pl.format("pay_{}", pl.col("order_id")),
            order_id=pl.col("order_id"),
            amount=(pl.col("order_id") % 997).cast(pl.Float64) / 7 + 1,
            method=pl.when(pl.col("order_id") % 2 == 0).then(pl.lit("card")).otherwise(pl.lit("paypal")),
            paid_at=(pl.datetime(2026, 1, 1) + pl.duration(seconds=pl.col("order_id") % 86_400)).dt.strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
        )
        fmt = ("csv", "jsonl", "parquet")[index % 3]
        if fmt != "parquet":
            bad = (ids % 1000) == 7
            frame = frame.with_columns(
                amount=pl.when(bad).then(pl.lit("twelve euros")).otherwise(pl.col("amount").cast(pl.String)),
                payment_id=pl.when((ids % 1000) == 11).then(None).otherwise(pl.col("payment_id")),
            )
        path = folder / f"payments_{index:03d}.{fmt}"
        if fmt == "csv":
            frame.write_csv(path)
        elif fmt == "jsonl":
            frame.write_ndjson(path)
        else:
            frame.write_parquet(path)


def bench_files(records: int, work: Path) -> tuple[int, float, float, float]:
    landing = work / "landing"
    write_payment_files(records, PAYMENTS.folder(landing))
    engine = DeltaEngine(str(work / "ours"))
    paths = sorted(PAYMENTS.folder(landing).iterdir())
    started = time.perf_counter()
    result = ingest_files(engine, landing, PAYMENTS, paths, batch_id="bench")
    ours = time.perf_counter() - started
    assert result.rows_read == records == result.rows_landed + result.rows_quarantined
    print(
        f"  ingested {len(paths)} files: {result.rows_landed:,} landed, "
        f"{result.rows_quarantined:,} quarantined"
    )
    same_rows = {
        "payments": engine.read(PAYMENTS.table).to_arrow(),
        "quarantine": engine.read(LANDING_QUARANTINE_TABLE).to_arrow(),
    }
    plain = plain_write(same_rows, work / "plain")
    write_only = bookkeeping_write(same_rows, work / "write_only", 2_000_000)
    return records, ours, plain, write_only


def report(label: str, rows: int, ours: float, plain: float, write_only: float) -> None:
    print(
        f"{label}: {rows:,} rows | ours {rows / ours:,.0f} rows/s ({ours:.2f}s) | plain "
        f"write_deltalake {rows / plain:,.0f} rows/s ({plain:.2f}s) | ratio {plain / ours:.2f} "
        f"(target >= 0.8)"
    )
    print(
        f"  of which the write path (exactly-once commits, no source read/parse): "
        f"{rows / write_only:,.0f} rows/s ({write_only:.2f}s) | ratio {plain / write_only:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--only", choices=["cdc", "files"], default=None)
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    for events in args.events:
        print(f"== {events:,} change events / records")
        if args.only in (None, "cdc"):
            with tempfile.TemporaryDirectory(dir=DATA) as work:
                report("cdc capture + bronze write", *bench_cdc(events, Path(work)))
        if args.only in (None, "files"):
            with tempfile.TemporaryDirectory(dir=DATA) as work:
                report("landing file ingestion", *bench_files(events, Path(work)))


if __name__ == "__main__":
    main()
