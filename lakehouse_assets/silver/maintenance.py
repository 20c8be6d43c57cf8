"""Table maintenance: compaction / Z-order and VACUUM of the tables written in many small
commits (bronze, silver, the serving and monitoring logs). The tables are listed from the lake
itself, so a new source table or silver spec is maintained without a list to edit; the weekly
job is in ``automation.py``."""

from __future__ import annotations

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.silver.specs import SILVER_SPECS
from lakehouse_assets.tables import APPEND_LOG_TABLES

MAINTAINED_LAYERS = ("bronze", "silver")


def maintained_tables(engine: LakeEngine) -> dict[str, list[str]]:
    """Every bronze and silver table in the lake and the append-only logs, with their Z-order
    columns (empty: plain compaction)."""
    zorder = {spec.table: list(spec.zorder_by) for spec in SILVER_SPECS}
    tables = {t: zorder.get(t, []) for t in engine.tables() if t.split("/")[0] in MAINTAINED_LAYERS}
    tables |= {t: list(z) for t, z in APPEND_LOG_TABLES.items() if engine.exists(t)}
    return dict(sorted(tables.items()))


def maintain_table(
    engine: LakeEngine, table: str, zorder_by: list[str], retention_hours: int
) -> dict[str, int]:
    """Compact (or Z-order), then VACUUM files older than the time-travel retention."""
    optimized = engine.optimize(table, zorder_by or None)
    removed = engine.vacuum(table, retention_hours)
    return {
        "files_added": int(optimized.get("numFilesAdded", 0)),
        "files_removed": int(optimized.get("numFilesRemoved", 0)),
        "files_vacuumed": len(removed),
    }
