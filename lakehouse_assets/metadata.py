"""Output metadata every table-producing asset attaches: rows, Delta version, path, a preview."""

from __future__ import annotations

from typing import Any

import polars as pl
from dagster import AssetKey, MetadataValue

from lakehouse_assets.engine import LakeEngine

OWNERS = ["team:data-platform"]


def bronze_asset_key(source_table: str) -> AssetKey:
    """The Dagster asset key of a source table's bronze change events."""
    return AssetKey(f"bronze_{source_table}")


def silver_asset_key(name: str) -> AssetKey:
    """The Dagster asset key of a silver table (its apply-changes spec's name)."""
    return AssetKey(f"silver_{name}")


def markdown_preview(df: pl.DataFrame, rows: int = 10) -> str:
    """The first rows of a frame as a Markdown table (Dagster shows it in the UI)."""
    head = df.head(rows)
    if head.width == 0:
        return "_empty_"
    cells = [
        [("" if v is None else str(v)).replace("|", "\\|")[:60] for v in row] for row in head.iter_rows()
    ]
    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * head.width]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def table_metadata(engine: LakeEngine, table: str, preview_rows: int = 10) -> dict[str, Any]:
    """Row count, Delta version, path and a preview of the newest rows of a lake table."""
    path = engine.table_path(table)
    version = engine.version(table)
    if version is None:
        return {
            "dagster/row_count": 0,
            "table": table,
            "path": MetadataValue.path(path),
            "delta_version": MetadataValue.int(-1),
        }
    preview = engine.head(table, preview_rows)
    return {
        "dagster/row_count": engine.row_count(table),
        "table": table,
        "path": MetadataValue.path(path),
        "delta_version": MetadataValue.int(version),
        "engine": engine.name,
        "preview": MetadataValue.md(markdown_preview(preview, preview_rows)),
    }
