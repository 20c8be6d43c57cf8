"""Log-based CDC from PostgreSQL into bronze, beside the raw rate the slots can be read at.

    make postgres-server && uv run python benchmarks/bench_pg_cdc.py [--changes 1000000]

A throwaway PostgreSQL (127.0.0.1, wal_level=logical) receives the simulator's changes (about
``--changes`` of them); then, in the same run, on two copies of the slots:
1. raw: every table's slot read to the end (wal2json, JSON decoded), no bronze write;
2. capture: `capture_postgres_to_bronze` for every table (decode, bronze rows, Delta commits
   with the LSN, slot advance).
Prints change events per second of each and the ratio.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import psycopg

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.runtime import disable_telemetry
from lakehouse_assets.settings import SimulatorSettings
from lakehouse_assets.sources.cdc import ChangeLog
from lakehouse_assets.sources.pg_server import LOGICAL, temporary_server
from lakehouse_assets.sources.postgres import (
    SOURCE_CLOCK,
    PostgresSource,
    SlotStream,
    capture_postgres_to_bronze,
)
from lakehouse_assets.sources.schema import SOURCE_TABLES
from lakehouse_assets.sources.simulator import ShopSimulator

EVENTS_PER_SCALE_DAY = 10_000 / 30  # README: about 10k change events per scale unit in 30 days


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    disable_telemetry()
    folder = tempfile.mkdtemp(prefix="bench-pg-cdc-")
    scale = args.changes / (EVENTS_PER_SCALE_DAY * args.days)
    cfg = SimulatorSettings(days=args.days, scale=scale, malformed_file_share=0.0)
    simulator = ShopSimulator(Path(folder) / "shop.sqlite", Path(folder) / "landing", cfg)
    started = time.perf_counter()
    simulator.run(args.days)
    print(f"simulated {args.days} days at scale {scale:.1f} in {time.perf_counter() - started:.0f} s")
    with temporary_server(LOGICAL) as admin:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE shop")
        source = PostgresSource(admin.rsplit("/", 1)[0] + "/shop")
        source.create_schema()
        raw_streams = [SlotStream(source, t, slot_prefix="raw") for t in SOURCE_TABLES]
        for stream in raw_streams:
            stream.create()
        started = time.perf_counter()
        changes = source.mirror(ChangeLog(simulator.db_path))  # creates the capture slots
        print(f"wrote {changes:,} changes to PostgreSQL in {time.perf_counter() - started:.0f} s")

        started = time.perf_counter()
        decoded = 0
        for stream in raw_streams:
            for _, data in stream.decoded(None):
                message = json.loads(data)
                decoded += message["action"] in ("I", "U", "D") and message.get("table") != SOURCE_CLOCK
        raw_seconds = time.perf_counter() - started

        engine = DeltaEngine(f"{folder}/lake")
        started = time.perf_counter()
        captured = sum(
            capture_postgres_to_bronze(engine, SlotStream(source, t), batch_id="bench").rows
            for t in SOURCE_TABLES
        )
        capture_seconds = time.perf_counter() - started
    assert captured == decoded == changes, (captured, decoded, changes)
    raw_rate, capture_rate = decoded / raw_seconds, captured / capture_seconds
    print(
        f"raw slot read (wal2json decode + JSON parse, no write): {raw_rate:,.0f} changes/s "
        f"({raw_seconds:.1f} s)"
    )
    print(f"capture into bronze (exactly once): {capture_rate:,.0f} changes/s ({capture_seconds:.1f} s)")
    print(f"ratio capture / raw read: {capture_rate / raw_rate:.2f}")


if __name__ == "__main__":
    main()
