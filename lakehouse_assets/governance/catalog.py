"""The lakehouse catalog: every Delta table with what the asset definitions say about it (owner,
description, columns, lineage) and what the Delta log says now (version, rows, last update).

Nothing here is written by hand: descriptions come from the assets (and dbt's docs through
dagster-dbt), column descriptions from dbt or the column glossary (``sources/schema.py``), the
numbers from the tables themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

import pyarrow as pa
from dagster import AssetSpec, TableSchema

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.sources.schema import describe_column, is_pii


@dataclass(frozen=True)
class CatalogColumn:
    """A column of a catalogued table: type, description and whether it holds personal data."""

    name: str
    type: str
    description: str
    pii: bool


@dataclass
class CatalogEntry:
    """A lake table as the catalog shows it: layer, owners, description, columns, version and lineage."""

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


def _columns(table: str, schema: pa.Schema | None, documented: TableSchema | None) -> list[CatalogColumn]:
    described = {c.name: c for c in (documented.columns if documented else [])}
    name = table.rsplit("/", 1)[-1]
    fields = (
        [(f.name, str(f.type)) for f in schema]
        if schema is not None
        else [(c.name, c.type) for c in described.values()]
    )
    columns = []
    for column, dtype in fields:
        doc = described.get(column)
        columns.append(
            CatalogColumn(
                column,
                dtype,
                (doc.description if doc else "") or describe_column(name, column),
                is_pii(name, column) or bool(doc and "pii" in (doc.tags or {})),
            )
        )
    return columns


def build_catalog(specs: Iterable[AssetSpec], engine: LakeEngine) -> list[CatalogEntry]:
    """Every Delta table the assets declare or the lake holds, sorted by table."""
    specs = list(specs)
    downstream: dict[str, set[str]] = {}
    for spec in specs:
        for dep in spec.deps:
            downstream.setdefault(dep.asset_key.to_user_string(), set()).add(spec.key.to_user_string())
    entries: dict[str, CatalogEntry] = {}
    for spec in specs:
        asset = spec.key.to_user_string()
        for table, description in written_tables(spec).items():
            entry = entries.setdefault(
                table,
                CatalogEntry(
                    table,
                    table.split("/")[0],
                    [],
                    [],
                    description,
                    sorted(t for t in spec.tags if not t.startswith("dagster/kind/"))
                    + sorted(k for k in spec.kinds),
                ),
            )
            entry.assets.append(asset)
            entry.owners = sorted({*entry.owners, *spec.owners})
            entry.upstream = sorted({*entry.upstream, *(d.asset_key.to_user_string() for d in spec.deps)})
            entry.downstream = sorted({*entry.downstream, *downstream.get(asset, set())})
            documented = _value(spec.metadata, "dagster/column_schema")
            if documented is not None:
                entry.documented = documented
                entry.columns = _columns(table, None, documented)
    for table in engine.tables():
        entry = entries.setdefault(
            table, CatalogEntry(table, table.split("/")[0], [], [], "(not declared by any asset)", [])
        )
        stats = engine.stats(table)
        entry.delta_version, entry.rows, entry.last_update = (
            stats.delta_version,
            stats.rows,
            stats.last_update,
        )
        entry.columns = _columns(table, stats.schema, entry.documented)
    return sorted(entries.values(), key=lambda e: e.table)
