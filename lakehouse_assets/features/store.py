"""The Feast store of an environment: local (SQLite registry and online store under the home
folder) or production (SQL registry, Redis online store), chosen by settings only."""

from __future__ import annotations

from pathlib import Path

from feast import FeatureStore, RepoConfig

from lakehouse_assets.features.definitions import FeatureDefinitions, build_definitions
from lakehouse_assets.settings import LakehouseSettings

OFFLINE_STORE = {"type": "lakehouse_assets.features.delta_offline_store.DeltaOfflineStore"}


def repo_config(
    feast_dir: Path,
    environment: str = "local",
    registry_url: str | None = None,
    redis_url: str | None = None,
) -> RepoConfig:
    feast_dir.mkdir(parents=True, exist_ok=True)
    if environment == "production":
        if not (registry_url and redis_url):
            raise ValueError("production needs LAKEHOUSE_FEAST_REGISTRY_URL and "
                             "LAKEHOUSE_FEAST_REDIS_URL")
        registry: dict = {"registry_type": "sql", "path": registry_url, "cache_ttl_seconds": 60}
        online: dict = {"type": "redis", "connection_string": redis_url}
    else:
        registry = {"registry_type": "sql", "path": f"sqlite:///{feast_dir / 'registry.db'}",
                    "cache_ttl_seconds": 60}
        online = {"type": "sqlite", "path": str(feast_dir / "online_store.db")}
    return RepoConfig(project="lakehouse", provider="local", registry=registry,
                      offline_store=OFFLINE_STORE, online_store=online,
                      entity_key_serialization_version=3, repo_path=str(feast_dir))


def feature_store(settings: LakehouseSettings) -> tuple[FeatureStore, FeatureDefinitions]:
    config = repo_config(settings.feast_dir, settings.environment, settings.feast_registry_url,
                         settings.feast_redis_url)
    return FeatureStore(config=config), build_definitions(settings.lake_root)
