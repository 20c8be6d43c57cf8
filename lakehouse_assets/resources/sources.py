"""The operational source database and the landing folder, and the resources built from settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagster import ConfigurableResource

from lakehouse_assets.resources.lake import LakeResource
from lakehouse_assets.settings import LakehouseSettings
from lakehouse_assets.sources.cdc import ChangeLog


class SourceDatabaseResource(ConfigurableResource):
    """The shop's SQLite database with trigger-based change capture."""

    path: str

    def change_log(self) -> ChangeLog:
        return ChangeLog(Path(self.path))


class LandingZoneResource(ConfigurableResource):
    """The folder event files are dropped into. Files are read, never moved or changed."""

    path: str

    @property
    def folder(self) -> Path:
        return Path(self.path)


def build_resources(settings: LakehouseSettings) -> dict[str, Any]:
    return {
        "lake": LakeResource(
            root=settings.lake_root,
            engine_name=settings.engine,
            cdc_chunk_rows=settings.cdc_chunk_rows,
            time_travel_retention_hours=settings.time_travel_retention_hours,
        ),
        "source_db": SourceDatabaseResource(path=str(settings.source_db)),
        "landing_zone": LandingZoneResource(path=str(settings.landing)),
    }
