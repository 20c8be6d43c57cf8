"""The Feast store of the settings' environment with the platform's feature definitions."""

from __future__ import annotations

from feast import FeatureStore

from lakehouse_assets.features.definitions import FeatureDefinitions, build_definitions
from lakehouse_assets.resources.connections import feast_store
from lakehouse_assets.settings import LakehouseSettings


def feature_store(settings: LakehouseSettings) -> tuple[FeatureStore, FeatureDefinitions]:
    """The settings' Feast store and the platform's feature definitions over their lake."""
    return feast_store(settings), build_definitions(settings.lake_root)
