"""Log-based CDC from a real PostgreSQL (wal_level=logical, wal2json) on 127.0.0.1 into bronze."""

import signal
import sqlite3
import subprocess
import sys
import uuid

import polars as pl
import psycopg
import pytest
from dagster import DagsterInstance, build_sensor_context, materialize
from pydantic import SecretStr

from lakehouse_assets.automation import source_changes_sensor
from lakehouse_assets.bronze.assets import BRONZE_CDC_ASSETS
from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.gold.assets import gold_dbt_models
from lakehouse_assets.resources.sources import SourceDatabaseResource, build_resources
from lakehouse_assets.runtime import ensure_dirs
from lakehouse_assets.settings import LakehouseSettings
from lakehouse_assets.silver.apply_changes import apply_changes
from lakehouse_assets.silver.assets import SILVER_ASSETS
from lakehouse_assets.silver.specs import SILVER_SPECS
from lakehouse_assets.sources.cdc import CaptureError, ChangeLog, bronze_table_name
from lakehouse_assets.sources.pg_server import LOGICAL
from lakehouse_assets.sources.postgres import (
    PostgresSource,
    SlotStream,
    capture_postgres_to_bronze,
    redact,
)
from lakehouse_assets.sources.schema import SOURCE_TABLES, SOURCE_TABLES_BY_NAME
from lakehouse_assets.sources.simulator import ShopSimulator
from tests.conftest import SMALL_SIMULATION
from tests.lake_compare import stable
from tests.postgres_server import postgres_server

# columns that tell how a row was captured (sequence numbers, batch), not what it holds
LINEAGE = {"_seq", "_last_seq", "_end_seq", "_ingested_at", "_batch_id", "_source"}


@pytest.fixture(scope="module")
def server():
    with postgres_server(LOGICAL) as url:
        yield url


@pytest.fixture
def source(server):
    """A fresh database on the shared server; its slots are dropped afterwards (slots are per
    server and hold WAL)."""
    name = f"shop_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield PostgresSource(server.rsplit("/", 1)[0] + f"/{name}")
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = %s",
            (name,),
        )


def capture_all(engine: DeltaEngine, source: PostgresSource, batch: str = "b1", **kwargs):
    return {
        t.name: capture_postgres_to_bronze(engine, SlotStream(source, t), batch_id=batch, **kwargs)
        for t in SOURCE_TABLES
    }


def change_log_frame(log: ChangeLog, table) -> pl.DataFrame:
    frame = pl.from_arrow(log.read_range(table, 0, log.max_seq(table)))
    return (
        frame.sort("_seq")
        .select("_op", "_commit_ts", *table.column_names)
        .with_columns(
            pl.from_epoch(pl.col(n), time_unit="s").cast(pl.Datetime("us"))
            for n in ("_commit_ts", *(n for n, k in table.columns if k == "ts"))
        )
    )


def bronze_frame(engine: DeltaEngine, table) -> pl.DataFrame:
    return engine.read(bronze_table_name(table)).sort("_seq").select("_op", "_commit_ts", *table.column_names)


def test_every_change_reaches_bronze_exactly_once_in_commit_order(settings, simulator, source):
    engine = DeltaEngine(settings.lake_root)
    source.create_schema()
    capture_all(engine, source)  # creates the slots: the log is kept from here on
    simulator.run(6)
    log = ChangeLog(settings.source_db)
    assert source.mirror(log, batch_changes=300) > 500
    results = capture_all(engine, source, max_rows=100)  # several batches per table
    for table in SOURCE_TABLES:
        expected, captured = change_log_frame(log, table), bronze_frame(engine, table)
        # same images, same order, deletes too, stamped with the source's (simulated) time
        assert captured.equals(expected), table.name
        assert results[table.name].rows == expected.height
    assert results["orders"].ops.get("delete", 0) > 0 and results["orders"].ops["update"] > 0
    assert len(results["orders"].commits) > 1
    # PostgreSQL holds the same shop as SQLite
    with source.connect() as conn:
        pg_orders = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
    with sqlite3.connect(settings.source_db) as lite:
        assert pg_orders == lite.execute("SELECT count(*) FROM orders").fetchone()[0]

    # Nothing new: no commit, nothing read twice.
    again = capture_all(engine, source)
    assert all(r.rows == 0 and not r.commits for r in again.values())
    # More days: only the new changes arrive.
    simulator.run(2)
    source.mirror(log)
    capture_all(engine, source, "b2")
    for table in SOURCE_TABLES:
        assert bronze_frame(engine, table).equals(change_log_frame(log, table))


KILLER = """
import os, signal, sys
from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.sources.postgres import PostgresSource, SlotStream, capture_postgres_to_bronze
from lakehouse_assets.sources.schema import SOURCE_TABLES_BY_NAME

url, lake, point = sys.argv[1:4]
calls = []

def killing(real):
    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second call: after one full batch went through
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return wrapper

if point == "after_commit":  # between the Delta commit and the slot advance
    SlotStream.advance = killing(SlotStream.advance)
else:  # before the Delta commit
    DeltaEngine.append = killing(DeltaEngine.append)
capture_postgres_to_bronze(DeltaEngine(lake), SlotStream(PostgresSource(url),
                           SOURCE_TABLES_BY_NAME["orders"]), batch_id="killed", max_rows=300)
"""


@pytest.mark.parametrize("point", ["after_commit", "before_commit"])
def test_a_killed_capture_loses_and_duplicates_nothing(settings, simulator, source, point):
    engine = DeltaEngine(settings.lake_root)
    orders = SOURCE_TABLES_BY_NAME["orders"]
    simulator.run(4)
    log = ChangeLog(settings.source_db)
    source.mirror(log, batch_changes=200)  # creates the slots first
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, source.url, settings.lake_root, point],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    target = bronze_table_name(orders)
    committed = engine.row_count(target) if engine.exists(target) else 0
    assert 0 < committed < change_log_frame(log, orders).height
    stream = SlotStream(source, orders)
    if point == "after_commit":  # the slot was left behind the bronze commit
        assert stream.confirmed_lsn() < engine.app_transaction_version(target, stream.app_id)
    capture_postgres_to_bronze(engine, stream, batch_id="rerun", max_rows=300)
    assert bronze_frame(engine, orders).equals(change_log_frame(log, orders))


def test_an_added_source_column_flows_into_bronze_and_silver(settings, source):
    engine = DeltaEngine(settings.lake_root)
    source.create_schema()
    capture_all(engine, source)
    products = SOURCE_TABLES_BY_NAME["products"]
    spec = next(s for s in SILVER_SPECS if s.table == "silver/products")
    with source.connect() as conn:
        conn.execute("INSERT INTO products VALUES (1, 'lamp', 'home', 20.0, now(), now())")
        conn.commit()
    capture_postgres_to_bronze(engine, SlotStream(source, products), batch_id="b1")
    apply_changes(engine, spec, batch_id="s1")
    assert "supplier" not in engine.read("silver/products").columns
    with source.connect() as conn:  # mid-stream, the source gains a column
        conn.execute("ALTER TABLE products ADD COLUMN supplier TEXT")
        conn.execute("INSERT INTO products VALUES (2, 'desk', 'home', 90.0, now(), now(), 'acme')")
        conn.execute("UPDATE products SET supplier = 'zeta' WHERE product_id = 1")
        conn.commit()
    capture_postgres_to_bronze(engine, SlotStream(source, products), batch_id="b2")
    bronze = engine.read(bronze_table_name(products)).sort("_seq")
    assert bronze.select("_op", "product_id", "supplier").rows() == [
        ("insert", 1, None),
        ("insert", 2, "acme"),
        ("update", 1, "zeta"),
    ]
    apply_changes(engine, spec, batch_id="s2")
    silver = engine.read("silver/products").sort("product_id")
    assert silver.select("product_id", "name", "supplier").rows() == [
        (1, "lamp", "zeta"),
        (2, "desk", "acme"),
    ]


def test_a_dropped_slot_or_an_unreachable_source_is_a_clear_error(settings, source):
    engine = DeltaEngine(settings.lake_root)
    source.create_schema()
    customers = SOURCE_TABLES_BY_NAME["customers"]
    stream = SlotStream(source, customers)
    capture_postgres_to_bronze(engine, stream, batch_id="b1")
    with source.connect() as conn:
        conn.execute(
            "INSERT INTO customers VALUES (1, 'Ada', 'a@x', 'Berlin', 'DE', 'regular', now(), now())"
        )
        conn.commit()
    capture_postgres_to_bronze(engine, stream, batch_id="b2")
    lag = stream.lag()
    assert lag["lag_seconds"] == 0.0 and lag["lag_bytes"] >= 0
    with source.connect() as conn:  # a truncate cannot be replayed row by row: refused
        conn.execute("TRUNCATE customers")
        conn.commit()
    with pytest.raises(CaptureError, match="customers was truncated on the source"):
        capture_postgres_to_bronze(engine, stream, batch_id="b2b")
    assert engine.row_count(bronze_table_name(customers)) == 1
    with source.connect(autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (stream.slot,))
    with pytest.raises(CaptureError, match=f"replication slot {stream.slot} is gone"):
        capture_postgres_to_bronze(engine, stream, batch_id="b3")
    with source.connect() as conn:  # rows written before any slot existed: refused, not lost
        conn.execute("INSERT INTO products VALUES (1, 'lamp', 'home', 20.0, now(), now())")
        conn.commit()
    with pytest.raises(CaptureError, match="products already holds 1 rows but has no replication"):
        capture_postgres_to_bronze(
            engine, SlotStream(source, SOURCE_TABLES_BY_NAME["products"]), batch_id="b5"
        )
    # the source-changes sensor follows the write-ahead log
    resource = {"source_db": SourceDatabaseResource(path="unused", url=source.url)}
    with build_sensor_context(resources=resource) as context:
        first = source_changes_sensor(context)
    assert first.run_requests[0].run_key == f"source:{first.cursor}"
    with build_sensor_context(cursor=first.cursor, resources=resource) as context:
        assert not source_changes_sensor(context).run_requests
    with source.connect() as conn:
        conn.execute("INSERT INTO customers VALUES (2, 'Bo', 'b@x', 'Rome', 'IT', 'regular', now(), now())")
        conn.commit()
    with build_sensor_context(cursor=first.cursor, resources=resource) as context:
        assert source_changes_sensor(context).run_requests

    down = PostgresSource("postgresql://shop:s3cret@127.0.0.1:9/shop")
    with pytest.raises(CaptureError, match=r"postgresql://shop:\*\*\*@127.0.0.1:9/shop unreach"):
        capture_postgres_to_bronze(engine, SlotStream(down, customers), batch_id="b4")
    assert redact("postgresql://u:p@h/db") == "postgresql://u:***@h/db"


def test_silver_from_postgres_cdc_equals_silver_from_sqlite(tmp_path, source):
    """The same seeded shop through both sources and the same Dagster assets: identical silver
    (sequences and capture lineage aside) and gold."""
    cfg = SMALL_SIMULATION.model_copy(update={"days": 16})  # returns come days later
    home = tmp_path / "home"
    lite = LakehouseSettings(home=home, simulator=cfg, lake_uri=str(tmp_path / "lake_sqlite"))
    pg = lite.model_copy(
        update={"lake_uri": str(tmp_path / "lake_postgres"), "source_url": SecretStr(source.url)}
    )
    ensure_dirs(lite)
    assets = [*BRONZE_CDC_ASSETS, *SILVER_ASSETS, gold_dbt_models]
    source.create_schema()
    for table in SOURCE_TABLES:  # the slots exist before the shop's first change
        SlotStream(source, table).create()
    ShopSimulator(lite.source_db, lite.landing, cfg).run()
    source.mirror(ChangeLog(lite.source_db))
    for settings in (lite, pg):
        result = materialize(
            assets, resources=build_resources(settings), instance=DagsterInstance.ephemeral()
        )
        assert result.success
        assert all(c.passed for c in result.get_asset_check_evaluations())
    sqlite_lake, pg_lake = DeltaEngine(lite.lake_root), DeltaEngine(pg.lake_root)
    compared = 0
    for table in [
        "silver/customers",
        "silver/products",
        "silver/orders",
        "silver/order_items",
        "silver/returns",
        "gold/fct_orders",
        "gold/customer_daily_features",
        "gold/product_daily_features",
    ]:
        a, b = stable(sqlite_lake.read(table), LINEAGE), stable(pg_lake.read(table), LINEAGE)
        assert a.height > 0 and a.equals(b, null_equal=True), table
        compared += 1
    assert compared == 8
    assert pg_lake.read("bronze/orders")["_source"][0].startswith("postgresql:")


def test_the_stream_follows_postgres_as_it_follows_sqlite(settings, simulator, source, tmp_path):
    """`lakehouse stream`'s runner over PostgreSQL's replication slots, changes arriving in
    several mirrors: the same silver as the runner over the SQLite change tables."""
    from lakehouse_assets.streaming.runner import StreamRunner, postgres_capture

    source.create_schema()
    for table in SOURCE_TABLES:
        SlotStream(source, table).create()
    log = ChangeLog(settings.source_db)
    over_pg = StreamRunner(DeltaEngine(str(tmp_path / "pg")), postgres_capture(source), max_batch_rows=400)
    over_sqlite = StreamRunner(DeltaEngine(str(tmp_path / "sqlite")), log, max_batch_rows=400)
    moved = 0
    for _ in range(3):  # the shop keeps changing between micro-batches
        simulator.run(3)
        source.mirror(log)
        moved += over_pg.tick().changes
        over_sqlite.tick()
    assert moved == sum(log.count_between(t, 0, log.max_seq(t)) for t in SOURCE_TABLES) > 0
    assert over_pg.tick().changes == 0  # caught up: the slots hold nothing twice
    for spec in SILVER_SPECS:
        pg_rows = stable(over_pg.engine.read(spec.table), LINEAGE)
        sqlite_rows = stable(over_sqlite.engine.read(spec.table), LINEAGE)
        assert pg_rows.equals(sqlite_rows), spec.table
