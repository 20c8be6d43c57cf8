"""The operational source database and the landing folder, and the resources built from settings."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from dagster import BetaWarning, ConfigurableResource
from dagstermill import ConfigurableLocalOutputNotebookIOManager

from lakehouse_assets.resources.dbt import dbt_resource
from lakehouse_assets.resources.feast import FeastResource
from lakehouse_assets.resources.lake import LakeResource
from lakehouse_assets.resources.mlflow import mlflow_resource
from lakehouse_assets.resources.monitoring import monitoring_resources
from lakehouse_assets.resources.secrets import secret_setting
from lakehouse_assets.settings import LakehouseSettings
from lakehouse_assets.sources.cdc import ChangeLog
from lakehouse_assets.sources.postgres import PostgresSource

SOURCE_URL_ENV = "LAKEHOUSE_SOURCE_URL"


class SourceDatabaseResource(ConfigurableResource):
    """The shop's database: SQLite with trigger-based change capture, or (``url`` set)
    PostgreSQL with log-based capture."""

    path: str
    url: str = ""  # postgresql://...; passed as an EnvVar from the environment (a secret)
    max_lag_bytes: int = 64 * 2**20
    max_lag_seconds: float = 900.0

    def change_log(self) -> ChangeLog:
        return ChangeLog(Path(self.path))

    def postgres(self) -> PostgresSource | None:
        return PostgresSource(self.url) if self.url else None


class LandingZoneResource(ConfigurableResource):
    """The folder event files are dropped into. Files are read, never moved or changed."""

    path: str

    @property
    def folder(self) -> Path:
        return Path(self.path)


def notebook_io_manager(settings: LakehouseSettings) -> ConfigurableLocalOutputNotebookIOManager:
    """Where dagstermill keeps each executed notebook."""
    with warnings.catch_warnings():  # dagstermill's API is marked beta; we pin its version
        warnings.simplefilter("ignore", BetaWarning)
        return ConfigurableLocalOutputNotebookIOManager(
            base_dir=str(settings.home_dir / "notebooks" / "runs")
        )


def build_resources(settings: LakehouseSettings) -> dict[str, Any]:
    """Every resource of the code location, from the settings."""
    return {
        "lake": LakeResource(
            root=settings.lake_root,
            engine_name=settings.engine,
            spark_config=settings.spark_config() if settings.engine == "spark" else {},
            cdc_chunk_rows=settings.cdc_chunk_rows,
            silver_max_events_per_apply=settings.silver_max_events_per_apply,
            training_set_max_rows=settings.training_set_max_rows,
            time_travel_retention_hours=settings.time_travel_retention_hours,
            gold_dir=str(settings.gold_dir),
        ),
        "source_db": SourceDatabaseResource(
            path=str(settings.source_db),
            url=secret_setting(SOURCE_URL_ENV, settings.source_url),
            max_lag_bytes=settings.cdc_max_lag_bytes,
            max_lag_seconds=settings.cdc_max_lag_seconds,
        ),
        "landing_zone": LandingZoneResource(path=str(settings.landing)),
        "feast": FeastResource(
            lake_root=settings.lake_root,
            feast_dir=str(settings.feast_dir),
            environment=settings.environment,
            registry_url=settings.feast_registry_url,
            redis_url=settings.feast_redis_url,
        ),
        "mlflow": mlflow_resource(settings),
        # dagstermill keeps each executed notebook here (linked from the materialization)
        "output_notebook_io_manager": notebook_io_manager(settings),
        **monitoring_resources(settings),
        "dbt": dbt_resource(settings),
    }
