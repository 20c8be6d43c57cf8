"""The Feast store of an environment: local (SQLite registry and online store under the home
folder) or production (SQL registry, Redis online store), chosen by settings only."""

from __future__ import annotations

from pathlib import Path
from string import Template

import yaml  # type: ignore[import-untyped]
from feast import FeatureStore, RepoConfig

from lakehouse_assets.features.definitions import FeatureDefinitions, build_definitions
from lakehouse_assets.settings import LakehouseSettings

CONFIG_DIR = Path(__file__).parent


def repo_config(
    feast_dir: Path,
    environment: str = "local",
    registry_url: str | None = None,
    redis_url: str | None = None,
) -> RepoConfig:
    """The environment's feature_store.<environment>.yaml, filled in from the settings."""
    feast_dir.mkdir(parents=True, exist_ok=True)
    if environment == "production" and not (registry_url and redis_url):
        raise ValueError("production needs LAKEHOUSE_FEAST_REGISTRY_URL and "
                         "LAKEHOUSE_FEAST_REDIS_URL")
    template = Template((CONFIG_DIR / f"feature_store.{environment}.yaml").read_text())
    text = template.substitute(feast_dir=feast_dir, registry_url=registry_url or "",
                               redis_url=redis_url or "")
    return RepoConfig(repo_path=str(feast_dir), **yaml.safe_load(text))


def open_feature_store(
    lake_root: str, feast_dir: Path, environment: str = "local",
    registry_url: str | None = None, redis_url: str | None = None,
) -> tuple[FeatureStore, FeatureDefinitions]:
    config = repo_config(feast_dir, environment, registry_url, redis_url)
    return FeatureStore(config=config), build_definitions(lake_root)


def feature_store(settings: LakehouseSettings) -> tuple[FeatureStore, FeatureDefinitions]:
    return open_feature_store(settings.lake_root, settings.feast_dir, settings.environment,
                              settings.feast_registry_url, settings.feast_redis_url)
