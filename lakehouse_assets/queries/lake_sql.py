"""SQL over the lakehouse: DuckDB reading the Delta tables through delta-rs.

Every table ``<layer>/<name>`` of the lake is a view ``<layer>.<name>`` (``silver.orders``,
``gold.fct_orders``, ``monitoring.drift_metrics``; deeper paths join with ``_``). DuckDB's own
Delta extension would be downloaded at run time, so each view reads
``DeltaTable(...).to_pyarrow_dataset()`` instead: the current version, with filters and
projections pushed down to the Parquet files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

_IDENTIFIER = re.compile(r"[^A-Za-z0-9_]")


class QueryError(ValueError):
    """A saved or ad-hoc query cannot run (the message names the query and the cause)."""


def discover_tables(lake_root: str | Path) -> list[str]:
    """Every Delta table under a local lake root, as ``layer/name`` paths, sorted."""
    root = Path(lake_root)
    found = []
    for current, dirs, _ in os.walk(root):
        if "_delta_log" in dirs:
            found.append(Path(current).relative_to(root).as_posix())
            dirs[:] = []  # a table's folders hold data files, not tables
        else:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
    return sorted(t for t in found if "/" in t)


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
    lake_root: str | Path,
    *,
    tables: list[str] | None = None,
    extra: Mapping[str, pl.DataFrame | pa.Table] | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view per lake table (``tables``: only these) and
    ``extra`` relations named ``schema.name`` (e.g. ``lakehouse.tables``)."""
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

    root = str(lake_root).rstrip("/")
    for table in tables if tables is not None else discover_tables(root):
        add(*sql_name(table), DeltaTable(f"{root}/{table}").to_pyarrow_dataset())
    for qualified, frame in (extra or {}).items():
        schema, name = qualified.split(".", 1)
        add(schema, name, frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame)
    return conn


def run_sql(
    conn: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any] | None = None,
    *, name: str = "query",
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
