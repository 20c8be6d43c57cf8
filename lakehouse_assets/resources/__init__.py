"""Dagster resources: one per external system. The engine/environment switch lives here only."""

from lakehouse_assets.resources.lake import LakeResource
from lakehouse_assets.resources.sources import (
    LandingZoneResource,
    SourceDatabaseResource,
    build_resources,
)

__all__ = ["LakeResource", "LandingZoneResource", "SourceDatabaseResource", "build_resources"]
