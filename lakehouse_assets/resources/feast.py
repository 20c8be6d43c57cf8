"""The feature store (Feast) as a Dagster resource."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from feast import FeatureStore

from lakehouse_assets.resources.connections import open_feast


class FeastResource(ConfigurableResource):
    """Feast over the lake's gold tables: registry and online store per environment."""

    lake_root: str
    feast_dir: str
    environment: str = "local"
    registry_url: str | None = None
    redis_url: str | None = None

    def store(self) -> FeatureStore:
        return open_feast(Path(self.feast_dir), self.environment, self.registry_url, self.redis_url)
