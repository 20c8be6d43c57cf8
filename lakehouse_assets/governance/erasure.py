"""GDPR erasure: a customer deleted in the shop's database disappears from the lakehouse.

The source is the system of record: a delete of a ``customers`` row (captured into bronze like
any change) is the erasure request. Erasing then removes every row that carries the customer's
id from every Delta table that has a ``customer_id`` column, and the rows of the customer's
orders from tables keyed by ``order_id`` only (order lines, returns, payments: no dangling lines
of a deleted order). Tables are found from their schemas, so a new table is covered without a
list to maintain; bronze's append-only change log included. Silver quarantine rows about them,
the gold DuckDB tables dbt keeps and the customer's features in the online store go too. The ids
go to ``governance/erasures`` and ``governance/erased_orders``, so rows that arrive later (an
order's status update still in the source) are erased on the next run.

Deleting writes a new Delta version; older versions and the delete's change-data files still hold
the rows until the VACUUM window has passed: then ``purge`` vacuums the tables and removes those
change files (no reader may go back further than the window, as for any VACUUM).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.erasure_registry import KEY, ORDER_KEY, erased_keys
from lakehouse_assets.tables import (
    ERASED_ORDERS_TABLE,
    ERASURES_TABLE,
    SILVER_QUARANTINE_TABLE,
    bronze_table,
)

REGISTRY = (ERASURES_TABLE, ERASED_ORDERS_TABLE)
SOURCE_EVENTS = bronze_table("customers")
ERASURE_COMMIT = "gdpr_erasure"  # commit metadata key of erasure deletes
ERASURE_SCHEMA = pl.Schema(
    {
        KEY: pl.Int64(),
        "deleted_in_source_at": pl.Datetime("us"),
        "erased_at": pl.Datetime("us", "UTC"),
        "purge_after": pl.Datetime("us", "UTC"),
        "purged_at": pl.Datetime("us", "UTC"),
    }
)


@dataclass
class ErasureResult:
    """What an erasure run did: the customers and orders erased and the rows deleted per place."""

    customers: list[int] = field(default_factory=list)
    orders: list[int] = field(default_factory=list)
    new_requests: list[int] = field(default_factory=list)
    rows_deleted: dict[str, int] = field(default_factory=dict)
    purged_tables: list[str] = field(default_factory=list)


def personal_tables(engine: LakeEngine) -> dict[str, str]:
    """table -> the column erasure deletes by: the customer id where the table has one, else
    the order id (the erasure registry aside)."""
    tables = {}
    for table in engine.tables():
        columns = engine.schema(table).names
        if table not in REGISTRY and (KEY in columns or ORDER_KEY in columns):
            tables[table] = KEY if KEY in columns else ORDER_KEY
    return tables


def orders_of(engine: LakeEngine, ids: list[int]) -> set[int]:
    """Order ids of the customers in any table that has both ids (orders, facts, logs)."""
    found: set[int] = set()
    for table, column in personal_tables(engine).items():
        names = engine.schema(table).names
        if column == KEY and ORDER_KEY in names:
            rows = engine.read(table, columns=[ORDER_KEY], where_in={KEY: ids})
            found |= set(rows[ORDER_KEY].drop_nulls().to_list())
    return found


def erasure_requests(engine: LakeEngine) -> pl.DataFrame:
    """Customers deleted in the source (their delete events in bronze), newest delete each."""
    if not engine.exists(SOURCE_EVENTS):
        return pl.DataFrame(schema={KEY: pl.Int64, "deleted_in_source_at": pl.Datetime("us")})
    events = engine.read(SOURCE_EVENTS, columns=[KEY, "_op", "_commit_ts"])
    return (
        events.filter(pl.col("_op") == "delete")
        .group_by(KEY)
        .agg(pl.col("_commit_ts").max().alias("deleted_in_source_at"))
        .sort(KEY)
    )


def erased_customers(engine: LakeEngine) -> pl.DataFrame:
    """The erasure registry: every erased customer with when it was erased and purged."""
    if not engine.exists(ERASURES_TABLE):
        return ERASURE_SCHEMA.to_frame()
    return engine.read(ERASURES_TABLE)


def _quarantined_rows(engine: LakeEngine, ids: list[int], orders: list[int]) -> list[int]:
    """Sequences of quarantined events about the customers or their orders (found in the row
    image: a customer, an order, an order line)."""
    if not engine.exists(SILVER_QUARANTINE_TABLE):
        return []
    rows = engine.read(SILVER_QUARANTINE_TABLE, columns=["_seq", "row"])

    def field(name: str) -> pl.Expr:
        return pl.col("row").str.json_path_match(f"$.{name}").cast(pl.Int64, strict=False)

    return rows.filter(field(KEY).is_in(ids) | field(ORDER_KEY).is_in(orders))["_seq"].to_list()


def duckdb_tables_with_key(path: Path) -> list[str]:
    """Tables of dbt's DuckDB file that have a customer id column."""
    if not path.exists():
        return []
    with duckdb.connect(str(path), read_only=True) as conn:
        rows = conn.execute(
            "SELECT c.table_schema, c.table_name FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_schema, table_name) "
            "WHERE c.column_name = ? AND t.table_type = 'BASE TABLE'",
            [KEY],
        ).fetchall()
    return [f'"{schema}"."{name}"' for schema, name in rows]


def erase_from_duckdb(path: Path, ids: list[int]) -> dict[str, int]:
    """dbt's gold DuckDB file keeps its staging tables (customer versions included)."""
    tables = duckdb_tables_with_key(path)
    if not tables or not ids:
        return {}
    deleted = {}
    with duckdb.connect(str(path)) as conn:
        for table in tables:
            count = conn.execute(
                f"DELETE FROM {table} WHERE {KEY} IN (SELECT UNNEST(?::BIGINT[]))", [ids]
            ).fetchone()
            deleted[f"duckdb:{table}"] = int(count[0]) if count else 0
    return deleted


def erase_customers(
    engine: LakeEngine,
    *,
    retention_hours: int,
    gold_db: Path,
    online_delete: Callable[[list[int]], int],
    log: Callable[[str], Any] = print,
) -> ErasureResult:
    """Erase every customer deleted in the source (new requests and earlier ones, for rows that
    arrived since) and record the new ones."""
    requests = erasure_requests(engine)
    known = erased_keys(engine)
    new = requests.filter(~pl.col(KEY).is_in(known[KEY]))
    ids = sorted({*requests[KEY].to_list(), *known[KEY]})
    if not ids:
        return ErasureResult()
    recorded = set(known[ORDER_KEY])
    orders = sorted(recorded | orders_of(engine, ids))
    result = ErasureResult(customers=ids, orders=orders, new_requests=new[KEY].to_list())
    now = datetime.now(UTC)
    if new.height:  # recorded first: a crash below is finished by the next run
        engine.append(
            ERASURES_TABLE,
            new.with_columns(
                erased_at=pl.lit(now),
                purge_after=pl.lit(now + timedelta(hours=retention_hours)),
                purged_at=pl.lit(None),
            )
            .cast(ERASURE_SCHEMA)
            .select(ERASURE_SCHEMA.names()),
        )
    if new_orders := [o for o in orders if o not in recorded]:
        engine.append(
            ERASED_ORDERS_TABLE,
            pl.DataFrame(
                {ORDER_KEY: new_orders, "erased_at": [now] * len(new_orders)},
                schema={ORDER_KEY: pl.Int64, "erased_at": pl.Datetime("us", "UTC")},
            ),
        )
    metadata = {ERASURE_COMMIT: True, "customers": len(ids)}
    for table, column in personal_tables(engine).items():
        count = engine.delete(table, column, ids if column == KEY else orders, commit_metadata=metadata)
        if count:
            result.rows_deleted[table] = count
            log(f"{table}: erased {count:,} row(s)")
    if sequences := _quarantined_rows(engine, ids, orders):
        result.rows_deleted[SILVER_QUARANTINE_TABLE] = engine.delete(
            SILVER_QUARANTINE_TABLE, "_seq", sequences, commit_metadata=metadata
        )
    result.rows_deleted.update({k: v for k, v in erase_from_duckdb(gold_db, ids).items() if v})
    if online := online_delete(ids):
        result.rows_deleted["online store"] = online
    return result


def erasure_change_files(engine: LakeEngine, table: str) -> list[str]:
    """The change-data files written by erasure deletes (they hold the deleted rows)."""
    return engine.remove_change_files(table, ERASURE_COMMIT, dry_run=True)


def purge(engine: LakeEngine, retention_hours: int, now: datetime | None = None) -> list[str]:
    """After the VACUUM window of every erasure, vacuum the personal tables and remove the
    erasure deletes' change files: earlier versions no longer hold the rows."""
    now = now or datetime.now(UTC)
    erasures = erased_customers(engine)
    due = erasures.filter(pl.col("purged_at").is_null() & (pl.col("purge_after") <= now))
    if due.height == 0:
        return []
    tables = [*personal_tables(engine), SILVER_QUARANTINE_TABLE]  # (their change files included)
    for table in tables:
        if engine.exists(table):
            engine.vacuum(table, retention_hours)
            engine.remove_change_files(table, ERASURE_COMMIT)
    engine.merge(
        ERASURES_TABLE, due.with_columns(purged_at=pl.lit(now).cast(pl.Datetime("us", "UTC"))), keys=[KEY]
    )
    return tables


def remaining_rows(
    engine: LakeEngine,
    ids: list[int],
    orders: list[int],
    gold_db: Path,
    online_count: Callable[[list[int]], int],
) -> dict[str, int]:
    """Rows of the customers (or their orders) still readable at the current versions, per
    place: all zero after an erasure. Every table is read afresh."""
    if not ids:
        return {}
    remaining = {}
    for table, column in personal_tables(engine).items():
        values = ids if column == KEY else orders
        remaining[table] = (
            engine.read(table, columns=[column], where_in={column: values}).height if values else 0
        )
    remaining[SILVER_QUARANTINE_TABLE] = len(_quarantined_rows(engine, ids, orders))
    if gold_db.exists():
        with duckdb.connect(str(gold_db), read_only=True) as conn:
            for table in duckdb_tables_with_key(gold_db):
                count = conn.execute(
                    f"SELECT COUNT(*) FROM {table} WHERE {KEY} IN (SELECT UNNEST(?::BIGINT[]))", [ids]
                ).fetchone()
                remaining[f"duckdb:{table}"] = int(count[0]) if count else 0
    remaining["online store"] = online_count(ids)
    return remaining
