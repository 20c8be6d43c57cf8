"""The shop's database in PostgreSQL, and log-based change data capture from it.

The simulator keeps its state in SQLite; `PostgresSource.mirror` writes its changes to
PostgreSQL (the same tables, full row images kept for updates and deletes: REPLICA IDENTITY FULL)
in sequence order, a batch per transaction with the mirror's cursor in the same transaction, so
PostgreSQL sees the same seeded activity as the SQLite source.

Capture reads PostgreSQL's write-ahead log through one logical replication slot per table
(wal2json, format 2, filtered to the table): inserts, updates with the old and new row, deletes
with the old row, transaction boundaries, in commit order. A change's sequence is its
transaction's commit LSN times 100,000 plus its position in the transaction, so sequences follow
commit order. Exactly once into bronze: the bronze commit records the last commit LSN it holds as
a Delta transaction identifier; the slot is advanced only after that commit, and before reading
the slot is moved up to the recorded LSN, so a crash between the two neither loses nor
duplicates a change.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import polars as pl
import psycopg

from lakehouse_assets.engine import AppTransaction, LakeEngine
from lakehouse_assets.sources.cdc import (
    BRONZE_TABLE_CONFIG,
    CaptureError,
    CaptureResult,
    ChangeLog,
    bronze_arrow_schema,
    bronze_table_name,
)
from lakehouse_assets.sources.schema import SOURCE_TABLES, SourceTable

PG_TYPES = {"int": "BIGINT", "float": "DOUBLE PRECISION", "str": "TEXT", "ts": "TIMESTAMP"}
MIRROR_CURSOR = "_lakehouse_mirror"
# The source's own clock: a transaction that updates it is stamped with its value instead of the
# server's commit time (the simulator's transactions happen in simulated time). A database
# without this table gets PostgreSQL's commit timestamps.
SOURCE_CLOCK = "_lakehouse_clock"
POSITIONS_PER_TRANSACTION = 100_000
OPS = {"I": "insert", "U": "update", "D": "delete"}
POLARS_TYPES: dict[str, pl.DataType | type[pl.DataType]] = {
    "int": pl.Int64,
    "float": pl.Float64,
    "str": pl.String,
    "ts": pl.Datetime("us"),
}


def redact(url: str) -> str:
    """The URL without its password (for messages)."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def lsn_to_int(lsn: str) -> int:
    """A PostgreSQL log sequence number (``16/B374D848``) as an integer."""
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def int_to_lsn(value: int) -> str:
    """An integer as a PostgreSQL log sequence number."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


@dataclass
class PostgresSource:
    """The shop on PostgreSQL: its schema, the simulator's changes mirrored into it, and its replication
    slot."""

    url: str

    @contextmanager
    def connect(self, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        try:
            connection = psycopg.connect(self.url, autocommit=autocommit, connect_timeout=10)
        except psycopg.OperationalError as error:
            raise CaptureError(
                f"source database {redact(self.url)} unreachable: {str(error).strip()}"
            ) from error
        with closing(connection):
            yield connection

    def create_schema(self) -> None:
        """The shop's tables (idempotent), logging full row images, and the mirror cursor."""
        with self.connect() as conn:
            for table in SOURCE_TABLES:
                columns = ", ".join(f"{n} {PG_TYPES[k]}" for n, k in table.columns)
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {table.name} ({columns}, PRIMARY KEY ({table.key}))"
                )
                conn.execute(f"ALTER TABLE {table.name} REPLICA IDENTITY FULL")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {MIRROR_CURSOR} (seq BIGINT NOT NULL)")
            # a key: wal2json skips updates of tables without a replica identity
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {SOURCE_CLOCK} (id INT PRIMARY KEY, ts TIMESTAMP NOT NULL)"
            )
            conn.execute(f"INSERT INTO {SOURCE_CLOCK} VALUES (1, now()) ON CONFLICT DO NOTHING")
            if _scalar(conn, f"SELECT count(*) FROM {MIRROR_CURSOR}") == 0:
                conn.execute(f"INSERT INTO {MIRROR_CURSOR} VALUES (0)")
            conn.commit()

    def current_lsn(self) -> str:
        with self.connect(autocommit=True) as conn:
            return str(_scalar(conn, "SELECT pg_current_wal_lsn()::text"))

    def mirror(
        self, log: ChangeLog, batch_changes: int = 5_000, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Apply the SQLite change log after the mirror cursor to PostgreSQL in sequence order;
        returns the number of changes applied."""
        self.create_schema()
        with self.connect() as conn:
            cursor = _scalar(conn, f"SELECT seq FROM {MIRROR_CURSOR}")
            upper = max(log.max_seq(t) for t in SOURCE_TABLES)
            if upper < cursor:
                raise CaptureError(
                    f"the SQLite change log ends at {upper} but PostgreSQL was "
                    f"mirrored up to {cursor}: a different source database"
                )
            if cursor == 0:  # before the shop's first change: the capture's log starts here
                for table in SOURCE_TABLES:
                    stream = SlotStream(self, table)
                    if not stream.exists():
                        stream.create()
            changes = _merged_changes(log, cursor, upper)
            done = 0
            for chunk in _transactions(changes, batch_changes):
                with conn.cursor() as cur:
                    cur.execute(f"UPDATE {SOURCE_CLOCK} SET ts = %s", (chunk[0][4],))
                    for table, op, rows in _runs(chunk):
                        cur.executemany(_statement(table, op), rows)
                    cur.execute(f"UPDATE {MIRROR_CURSOR} SET seq = %s", (chunk[-1][0],))
                conn.commit()
                done += len(chunk)
                if progress:
                    progress(done, len(changes))
        return len(changes)


def _scalar(conn: psycopg.Connection, query: str) -> Any:
    row = conn.execute(query).fetchone()  # type: ignore[call-overload]
    return None if row is None else row[0]


Change = tuple[int, SourceTable, str, dict, datetime]  # sequence, table, op, row, commit time


def _transactions(changes: list[Change], most: int) -> Iterator[list[Change]]:
    """The source's transactions as they committed: consecutive changes with one commit time
    (split only beyond ``most`` changes)."""
    start = 0
    for index in range(1, len(changes) + 1):
        if index == len(changes) or changes[index][4] != changes[start][4] or index - start >= most:
            yield changes[start:index]
            start = index


def _merged_changes(log: ChangeLog, after: int, upper: int) -> list[Change]:
    merged = []
    for table in SOURCE_TABLES:
        frame = pl.DataFrame(pl.from_arrow(log.read_range(table, after, upper)))
        frame = frame.with_columns(
            pl.from_epoch(pl.col(name), time_unit="s")
            for name in (*(n for n, kind in table.columns if kind == "ts"), "_commit_ts")
        )
        for row in frame.iter_rows(named=True):
            merged.append((row.pop("_seq"), table, row.pop("_op"), row, row.pop("_commit_ts")))
    merged.sort(key=lambda change: change[0])
    return merged


def _runs(chunk: list[Change]) -> Iterator[tuple[SourceTable, str, list[tuple]]]:
    """Consecutive changes of one table and operation, as statement parameters."""
    run: list[tuple] = []
    for index, (_, table, op, row, _) in enumerate(chunk):
        if op == "update":
            run.append((*(row[c] for c in table.column_names if c != table.key), row[table.key]))
        elif op == "delete":
            run.append((row[table.key],))
        else:
            run.append(tuple(row[c] for c in table.column_names))
        following = chunk[index + 1] if index + 1 < len(chunk) else None
        if following is None or following[1] != table or following[2] != op:
            yield table, op, run
            run = []


def _statement(table: SourceTable, op: str) -> str:
    if op == "insert":
        return (
            f"INSERT INTO {table.name} ({', '.join(table.column_names)}) VALUES "
            f"({', '.join(['%s'] * len(table.columns))})"
        )
    if op == "update":
        assignments = ", ".join(f"{c} = %s" for c in table.column_names if c != table.key)
        return f"UPDATE {table.name} SET {assignments} WHERE {table.key} = %s"
    return f"DELETE FROM {table.name} WHERE {table.key} = %s"


@dataclass
class Transaction:
    """One decoded transaction of the write-ahead log: its commit position, time and row changes."""

    xid: int
    commit_lsn: int
    commit_ts: datetime
    changes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (op, row image)


@dataclass
class SlotStream:
    """One table's changes through its logical replication slot (wal2json, format 2)."""

    source: PostgresSource
    table: SourceTable
    slot_prefix: str = "lakehouse"

    @cached_property
    def slot(self) -> str:
        """Slots are per server: the name carries the database (lowercase, [a-z0-9_])."""
        database = psycopg.conninfo.conninfo_to_dict(self.source.url).get("dbname") or "postgres"
        return re.sub(r"[^a-z0-9_]", "_", f"{self.slot_prefix}_{database}_{self.table.name}".lower())

    @property
    def app_id(self) -> str:
        """The Delta transaction identifier bronze records this slot's position under."""
        return f"pgcdc:{self.slot}"

    def decoder_options(self) -> list[str]:
        return [
            "format-version",
            "2",
            "add-tables",
            f"*.{self.table.name},*.{SOURCE_CLOCK}",
            "include-xids",
            "1",
            "include-timestamp",
            "1",
            "include-transaction",
            "1",
        ]

    def exists(self) -> bool:
        with self.source.connect(autocommit=True) as conn:
            return (
                conn.execute(
                    "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
                ).fetchone()
                is not None
            )

    def source_rows(self) -> int:
        with self.source.connect(autocommit=True) as conn:
            return int(_scalar(conn, f"SELECT count(*) FROM {self.table.name}"))

    def create(self) -> None:
        with self.source.connect(autocommit=True) as conn:
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'wal2json')", (self.slot,))

    def confirmed_lsn(self) -> int:
        with self.source.connect(autocommit=True) as conn:
            row = conn.execute(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                (self.slot,),
            ).fetchone()
        if row is None:
            raise CaptureError(f"replication slot {self.slot} does not exist")
        return lsn_to_int(row[0])

    def advance(self, lsn: int) -> None:
        """Release the log up to ``lsn`` (never backwards)."""
        if lsn <= self.confirmed_lsn():
            return
        with self.source.connect(autocommit=True) as conn:
            conn.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (self.slot, int_to_lsn(lsn)))

    def decoded(self, max_rows: int | None) -> list[tuple[str, str]]:
        """(LSN, wal2json document) rows after the slot's position (whole transactions, about
        ``max_rows`` of them; None: all), without consuming them."""
        with self.source.connect(autocommit=True) as conn:
            return conn.execute(
                "SELECT lsn::text, data FROM pg_logical_slot_peek_changes(%s, NULL, %s"
                + ", %s" * len(self.decoder_options())
                + ")",
                (self.slot, max_rows, *self.decoder_options()),
            ).fetchall()

    def peek(self, max_rows: int) -> list[Transaction]:
        """Whole transactions after the slot's position (about ``max_rows`` decoded rows), in
        commit order, without consuming them."""
        rows = self.decoded(max_rows)
        transactions: list[Transaction] = []
        current: Transaction | None = None
        for lsn, data in rows:
            message = json.loads(data)
            action = message["action"]
            if action == "B":
                current = Transaction(int(message["xid"]), 0, _timestamp(message["timestamp"]))
            elif action == "C":
                if current is None:
                    raise CaptureError(f"slot {self.slot}: commit without begin at {lsn}")
                current.commit_lsn = lsn_to_int(lsn)
                transactions.append(current)
                current = None
            elif action in OPS and message.get("table") == SOURCE_CLOCK:
                if current is not None and action != "D":  # the source's own commit time
                    clock = {c["name"]: c["value"] for c in message["columns"]}["ts"]
                    current.commit_ts = datetime.fromisoformat(clock)
            elif action in OPS:
                if current is None:
                    raise CaptureError(f"slot {self.slot}: change outside a transaction at {lsn}")
                image = message["identity"] if action == "D" else message["columns"]
                current.changes.append((OPS[action], {c["name"]: c["value"] for c in image}))
            elif action == "T":  # bronze cannot express it row by row: never drop it silently
                raise CaptureError(
                    f"{self.table.name} was truncated on the source (LSN {lsn}): "
                    "bronze would keep rows the source no longer has; re-snapshot "
                    "the table into a new lake"
                )
            # "M" (logical messages) are not part of the shop's change stream
        return transactions

    def lag(self) -> dict[str, float]:
        """Bytes of WAL the slot still holds back, and seconds since its oldest unread commit."""
        with self.source.connect(autocommit=True) as conn:
            row = conn.execute(
                "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint FROM "
                "pg_replication_slots WHERE slot_name = %s",
                (self.slot,),
            ).fetchone()
        if row is None:
            raise CaptureError(f"replication slot {self.slot} does not exist")
        oldest = next(iter(self.peek(1)), None)
        seconds = (
            (datetime.now(UTC).replace(tzinfo=None) - oldest.commit_ts).total_seconds()
            if oldest and oldest.changes
            else 0.0
        )
        return {"lag_bytes": float(row[0] or 0), "lag_seconds": max(seconds, 0.0)}


def _timestamp(text: str) -> datetime:
    """wal2json's commit time (with offset) as naive UTC."""
    value = datetime.fromisoformat(text.replace(" ", "T"))
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def to_bronze_frame(
    transactions: list[Transaction], table: SourceTable, *, source: str, batch_id: str
) -> pl.DataFrame:
    """Change rows -> the bronze schema; columns the source gained later are kept (they reach
    bronze by Delta schema evolution)."""
    records = []
    for tx in transactions:
        if len(tx.changes) >= POSITIONS_PER_TRANSACTION:
            raise CaptureError(
                f"transaction {tx.xid} changed {len(tx.changes):,} rows of "
                f"{table.name}; sequences allow {POSITIONS_PER_TRANSACTION:,}"
            )
        for position, (op, row) in enumerate(tx.changes):
            records.append(
                {
                    "_seq": tx.commit_lsn * POSITIONS_PER_TRANSACTION + position,
                    "_op": op,
                    "_commit_ts": tx.commit_ts,
                    **row,
                }
            )
    if not records:
        return pl.DataFrame()
    frame = pl.DataFrame(records, infer_schema_length=None)
    typed = []
    for name, kind in table.columns:
        if name not in frame.columns:
            continue
        if kind == "ts" and frame[name].dtype == pl.String:
            typed.append(pl.col(name).str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us"))
        else:
            typed.append(pl.col(name).cast(POLARS_TYPES[kind]))
    frame = frame.with_columns(
        *typed,
        _ingested_at=pl.lit(datetime.now(UTC)).cast(pl.Datetime("us", "UTC")),
        _source=pl.lit(source),
        _batch_id=pl.lit(batch_id),
    )
    known = bronze_arrow_schema(table).names
    return frame.select(
        *[n for n in known if n in frame.columns], *[c for c in frame.columns if c not in known]
    )


def capture_postgres_to_bronze(
    engine: LakeEngine,
    stream: SlotStream,
    *,
    batch_id: str,
    max_rows: int = 250_000,
    on_batch: Callable[[CaptureResult], None] | None = None,
) -> CaptureResult:
    """Append every change after the bronze cursor to the bronze table, exactly once."""
    started = time.perf_counter()
    table = stream.table
    target = bronze_table_name(table)
    app_id = stream.app_id
    read_version = engine.ensure_table(target, bronze_arrow_schema(table), configuration=BRONZE_TABLE_CONFIG)
    cursor = engine.app_transaction_version(target, app_id, at_version=read_version) or 0
    if not stream.exists():
        if cursor:
            raise CaptureError(
                f"replication slot {stream.slot} is gone but bronze holds changes up to LSN "
                f"{int_to_lsn(cursor)}: changes since then may be lost. "
                "Re-snapshot the table into a new lake, then capture again."
            )
        existing = stream.source_rows()
        if existing:  # they predate the slot: the log will never show them
            raise CaptureError(
                f"{table.name} already holds {existing:,} rows but has no replication slot yet: "
                "capture starts at the slot, so these rows would never reach bronze (an initial "
                "snapshot is not implemented). Create the slots before the first write "
                "(`lakehouse simulate` does) or start from an empty database."
            )
        stream.create()
    stream.advance(cursor)  # a crash after the bronze commit left the slot behind
    result = CaptureResult(table=table.name, cursor_before=cursor, cursor_after=cursor)
    source = f"postgresql:{stream.slot}"
    while True:
        transactions = [t for t in stream.peek(max_rows) if t.commit_lsn > cursor]
        if not transactions:
            break
        last = transactions[-1].commit_lsn
        frame = to_bronze_frame(transactions, table, source=source, batch_id=batch_id)
        if frame.height:
            commit = engine.append(
                target,
                frame,
                transactions=[AppTransaction(app_id, last)],
                commit_metadata={
                    "cdc_from_lsn": int_to_lsn(cursor),
                    "cdc_to_lsn": int_to_lsn(last),
                    "batch_id": batch_id,
                },
                configuration=BRONZE_TABLE_CONFIG,
                read_version=read_version,
            )
            read_version = commit.version
            result.note_commit(commit, frame)
        stream.advance(last)  # only after the commit that holds the changes
        result.cursor_after = cursor = last
        if on_batch:
            on_batch(result)
    result.seconds = time.perf_counter() - started
    return result
