"""The lakehouse catalog: every Delta table with what the asset definitions say about it (owner,
description, columns, lineage) and what the Delta log says now (version, rows, last update).

Nothing here is written by hand: descriptions come from the assets (and dbt's docs through
dagster-dbt), column descriptions from dbt or the column glossary (``sources/schema.py``), the
numbers from the tables themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetSpec, TableSchema
from deltalake import DeltaTable

from lakehouse_assets.queries.lake_sql import discover_tables
from lakehouse_assets.sources.schema import describe_column, is_pii


@dataclass(frozen=True)
class CatalogColumn:
    name: str
    type: str
    description: str
    pii: bool


@dataclass
class CatalogEntry:
    table: str
    layer: str
    assets: list[str]  # the assets that write it
    owners: list[str]
    description: str
    tags: list[str]
    columns: list[CatalogColumn] = field(default_factory=list)
    delta_version: int | None = None
    rows: int | None = None
    last_update: datetime | None = None
    upstream: list[str] = field(default_factory=list)
    downstream: list[str] = field(default_factory=list)
    documented: TableSchema | None = field(default=None, repr=False)  # dbt's column docs

    @property
    def pii_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.pii]

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "documented"}
        data["columns"] = [asdict(c) for c in self.columns]
        data["last_update"] = self.last_update.isoformat() if self.last_update else None
        data["pii_columns"] = self.pii_columns
        return data


def _value(metadata: Mapping[str, Any], key: str) -> Any:
    value = metadata.get(key)
    for attribute in ("data", "schema", "value"):  # Json / TableSchema / plain metadata values
        if value is not None and hasattr(value, attribute):
            return getattr(value, attribute)
    return value


def written_tables(spec: AssetSpec) -> dict[str, str]:
    """table -> description of the Delta tables an asset writes (its ``table`` metadata, and
    ``also_writes`` for tables it writes beside it, e.g. silver's quarantine)."""
    tables = {}
    if isinstance(table := _value(spec.metadata, "table"), str):
        tables[table] = spec.description or ""
    tables.update(_value(spec.metadata, "also_writes") or {})
    return tables


@dataclass(frozen=True)
class TableStats:
    delta_version: int
    rows: int
    last_update: datetime
    files: int
    size_bytes: int
    schema: pa.Schema


def table_stats(lake_root: str | Path, table: str) -> TableStats:
    """The table's current version, rows and size (from the log's file statistics, no data
    read) and the time of its last commit."""
    delta = DeltaTable(f"{str(lake_root).rstrip('/')}/{table}")
    actions = pa.table(delta.get_add_actions(flatten=True))
    last = delta.history(1)[0]["timestamp"]
    return TableStats(
        delta_version=delta.version(),
        rows=int(pc.sum(actions.column("num_records")).as_py() or 0) if actions.num_rows else 0,
        last_update=datetime.fromtimestamp(last / 1000, UTC),
        files=actions.num_rows,
        size_bytes=int(pc.sum(actions.column("size_bytes")).as_py() or 0) if actions.num_rows else 0,
        schema=pa.schema(delta.schema()),
    )


def stats_frame(lake_root: str | Path, tables: Iterable[str] | None = None) -> pl.DataFrame:
    """One row per lake table (``lakehouse.tables`` in saved queries); times in UTC."""
    rows = []
    now = datetime.now(UTC)
    for table in tables if tables is not None else discover_tables(lake_root):
        stats = table_stats(lake_root, table)
        rows.append({"table": table, "layer": table.split("/")[0], "rows": stats.rows,
                     "delta_version": stats.delta_version,
                     "last_update": stats.last_update.replace(tzinfo=None),
                     "hours_since_update": (now - stats.last_update).total_seconds() / 3600,
                     "files": stats.files, "size_bytes": stats.size_bytes})
    return pl.DataFrame(rows, schema={"table": pl.String, "layer": pl.String, "rows": pl.Int64,
                                      "delta_version": pl.Int64, "last_update": pl.Datetime("us"),
                                      "hours_since_update": pl.Float64,
                                      "files": pl.Int64, "size_bytes": pl.Int64})


def _columns(table: str, schema: pa.Schema | None, documented: TableSchema | None) -> list[CatalogColumn]:
    described = {c.name: c for c in (documented.columns if documented else [])}
    name = table.rsplit("/", 1)[-1]
    fields = [(f.name, str(f.type)) for f in schema] if schema is not None else \
        [(c.name, c.type) for c in described.values()]
    columns = []
    for column, dtype in fields:
        doc = described.get(column)
        columns.append(CatalogColumn(
            column, dtype, (doc.description if doc else "") or describe_column(name, column),
            is_pii(name, column) or bool(doc and "pii" in (doc.tags or {}))))
    return columns


def build_catalog(specs: Iterable[AssetSpec], lake_root: str | Path) -> list[CatalogEntry]:
    """Every Delta table the assets declare or the lake holds, sorted by table."""
    specs = list(specs)
    downstream: dict[str, set[str]] = {}
    for spec in specs:
        for dep in spec.deps:
            downstream.setdefault(dep.asset_key.to_user_string(), set()).add(
                spec.key.to_user_string())
    entries: dict[str, CatalogEntry] = {}
    for spec in specs:
        asset = spec.key.to_user_string()
        for table, description in written_tables(spec).items():
            entry = entries.setdefault(table, CatalogEntry(
                table, table.split("/")[0], [], [], description,
                sorted(t for t in spec.tags if not t.startswith("dagster/kind/")) +
                sorted(k for k in spec.kinds)))
            entry.assets.append(asset)
            entry.owners = sorted({*entry.owners, *spec.owners})
            entry.upstream = sorted({*entry.upstream,
                                     *(d.asset_key.to_user_string() for d in spec.deps)})
            entry.downstream = sorted({*entry.downstream, *downstream.get(asset, set())})
            documented = _value(spec.metadata, "dagster/column_schema")
            if documented is not None:
                entry.documented = documented
                entry.columns = _columns(table, None, documented)
    for table in discover_tables(lake_root) if Path(lake_root).exists() else []:
        entry = entries.setdefault(table, CatalogEntry(
            table, table.split("/")[0], [], [], "(not declared by any asset)", []))
        stats = table_stats(lake_root, table)
        entry.delta_version, entry.rows, entry.last_update = (
            stats.delta_version, stats.rows, stats.last_update)
        entry.columns = _columns(table, stats.schema, entry.documented)
    return sorted(entries.values(), key=lambda e: e.table)
