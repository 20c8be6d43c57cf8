"""SQL over the lakehouse: DuckDB reading the Delta tables through delta-rs.

Every table ``<layer>/<name>`` of the lake is a view ``<layer>.<name>`` (``silver.orders``,
``gold.fct_orders``, ``monitoring.drift_metrics``; deeper paths join with ``_``). DuckDB's own
Delta extension would be downloaded at run time, so each view reads the engine's Arrow dataset
of the table instead (delta-rs): the current version, with filters and projections pushed down
to the Parquet files, on a local lake or an object store.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from lakehouse_assets.engine import LakeEngine

_IDENTIFIER = re.compile(r"[^A-Za-z0-9_]")


class QueryError(ValueError):
    """A saved or ad-hoc query cannot run (the message names the query and the cause)."""


def stats_frame(engine: LakeEngine, tables: Iterable[str] | None = None) -> pl.DataFrame:
    """One row per lake table (``lakehouse.tables`` in saved queries), from the Delta logs
    (no data read); times in UTC."""
    rows = []
    now = datetime.now(UTC)
    for table in tables if tables is not None else engine.tables():
        stats = engine.stats(table)
        rows.append(
            {
                "table": table,
                "layer": table.split("/")[0],
                "rows": stats.rows,
                "delta_version": stats.delta_version,
                "last_update": stats.last_update.replace(tzinfo=None),
                "hours_since_update": (now - stats.last_update).total_seconds() / 3600,
                "files": stats.files,
                "size_bytes": stats.size_bytes,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "table": pl.String,
            "layer": pl.String,
            "rows": pl.Int64,
            "delta_version": pl.Int64,
            "last_update": pl.Datetime("us"),
            "hours_since_update": pl.Float64,
            "files": pl.Int64,
            "size_bytes": pl.Int64,
        },
    )


def sql_name(table: str) -> tuple[str, str]:
    """``silver/_tombstones/orders`` -> (``silver``, ``_tombstones_orders``)."""
    layer, _, rest = table.partition("/")
    return _IDENTIFIER.sub("_", layer), _IDENTIFIER.sub("_", rest.replace("/", "_"))


def referenced_tables(sql: str) -> set[str]:
    """The ``layer.name`` tables a query reads (parsed, not run)."""
    # parameters cannot be parsed without a prepared statement: any literal stands in
    names = duckdb.get_table_names(re.sub(r"\$\w+", "NULL", sql), qualified=True)
    return {name.split(" ")[0].replace('"', "").lower() for name in names}


def lake_connection(
    engine: LakeEngine | None,
    *,
    tables: list[str] | None = None,
    extra: Mapping[str, pl.DataFrame | pa.Table] | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view per lake table (``tables``: only these) and
    ``extra`` relations named ``schema.name`` (e.g. ``lakehouse.tables``). ``engine`` may be
    None when no lake table is wanted (``tables=[]``)."""
    conn = duckdb.connect()
    conn.execute("SET enable_external_access = false")  # views only read what is registered
    schemas: set[str] = set()

    def add(schema: str, name: str, data: Any) -> None:
        if schema not in schemas:
            conn.execute(f"ATTACH ':memory:' AS {schema}")
            schemas.add(schema)
        hidden = f"__{schema}__{name}"
        conn.register(hidden, data)
        conn.execute(f'CREATE VIEW {schema}."{name}" AS SELECT * FROM "{hidden}"')

    wanted = tables if tables is not None else engine.tables() if engine else []
    if wanted and engine is None:
        raise ValueError("lake_connection: lake tables need an engine")
    for table in wanted:
        add(*sql_name(table), engine.dataset(table))  # type: ignore[union-attr]
    for qualified, frame in (extra or {}).items():
        schema, name = qualified.split(".", 1)
        add(schema, name, frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame)
    return conn


def run_sql(
    conn: duckdb.DuckDBPyConnection,
    sql: str,
    params: Mapping[str, Any] | None = None,
    *,
    name: str = "query",
) -> pl.DataFrame:
    """Run ``sql`` with ``$name`` parameters; errors name the query and DuckDB's reason."""
    body = re.sub(r"--[^\n]*", "", sql)  # a parameter named in a comment is not used
    given = dict(params or {})
    used = {p for p in given if re.search(rf"\${re.escape(p)}\b", body)}
    try:
        relation = conn.sql(sql, params={p: given[p] for p in used} if used else None)
        return pl.DataFrame() if relation is None else relation.pl()
    except duckdb.Error as error:
        raise QueryError(f"{name}: {type(error).__name__}: {error}") from error
