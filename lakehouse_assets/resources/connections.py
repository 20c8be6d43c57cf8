"""Connections to the lake, MLflow and Feast, built from the settings without Dagster.

The Dagster resources beside this module wrap these; the scoring service, the CLI and the lake
API use them directly, so a process that only scores requests never loads Dagster. Engines are
built here and nowhere else.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

import yaml  # type: ignore[import-untyped]

from lakehouse_assets.engine import DeltaEngine, LakeEngine
from lakehouse_assets.settings import LakehouseSettings

if TYPE_CHECKING:
    from feast import FeatureStore, RepoConfig
    from mlflow import MlflowClient

FEAST_CONFIG_DIR = Path(__file__).parent


def build_engine(
    root: str, engine_name: str = "embedded", spark_config: dict[str, str] | None = None
) -> LakeEngine:
    """The lake engine by name: ``embedded`` (delta-rs + polars) or ``spark`` (PySpark +
    delta-spark, one session per process from dagster-pyspark's resource)."""
    if engine_name == "embedded":
        return DeltaEngine(root)
    if engine_name == "spark":
        return _spark_engine(root, spark_config or {})
    raise ValueError(f"unknown lake engine {engine_name!r}: use 'embedded' or 'spark'")


def lake_engine(settings: LakehouseSettings) -> LakeEngine:
    """The engine the settings choose (``LAKEHOUSE_ENGINE``)."""
    spark = settings.spark_config() if settings.engine == "spark" else None
    return build_engine(settings.lake_root, settings.engine, spark)


def embedded_engine(settings: LakehouseSettings) -> LakeEngine:
    """delta-rs whatever the pipeline's engine: for services and commands that append or read a
    few rows (the inference log, the alias history) and must not start a JVM."""
    return build_engine(settings.lake_root)


def _spark_engine(root: str, spark_config: dict[str, str]) -> LakeEngine:
    try:
        from dagster_pyspark import PySparkResource

        from lakehouse_assets.engine.spark import SparkEngine
    except ImportError as exc:
        raise RuntimeError(
            "the Spark engine needs the spark extra: `uv sync --extra spark` and `make spark-jars`"
        ) from exc
    if "spark.master" in spark_config and not spark_config.get("spark.jars"):
        raise RuntimeError(
            "no Delta Lake jars for Spark: run `make spark-jars` (or point "
            "LAKEHOUSE_SPARK_JARS_DIR at a folder of pre-fetched jars)"
        )
    # Python UDFs (on-demand features, batch scoring) run on the executors with PYSPARK_PYTHON,
    # which PySpark reads when the context starts: PATH's python3 may lack the platform.
    os.environ.setdefault("PYSPARK_PYTHON", spark_config.get("spark.pyspark.python", sys.executable))
    resource = PySparkResource(spark_config=spark_config)
    resource.setup_for_execution(None)  # type: ignore[arg-type]
    return SparkEngine(resource.spark_session, root)


@dataclass(frozen=True)
class MlflowConnection:
    """MLflow tracking and registry. Local default: a SQLite backend and an artifact folder
    under the home, no server; production: the URIs of an MLflow server."""

    tracking_uri: str
    registry_uri: str
    artifact_root: str

    def client(self) -> MlflowClient:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)

    def use(self) -> None:
        """Point this process's MLflow (``mlflow.sklearn.load_model`` etc.) at the URIs."""
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.registry_uri)

    def activate(self, experiment: str) -> str:
        """Point this process's MLflow at the URIs and make ``experiment`` (a data product's)
        the active one; returns its id (created on first use, with its artifacts under
        ``artifact_root`` for a local backend)."""
        import mlflow

        local = self.tracking_uri.startswith("sqlite:///")
        if local:
            create_local_store(Path(self.tracking_uri.removeprefix("sqlite:///")))
            Path(self.artifact_root).mkdir(parents=True, exist_ok=True)
        self.use()
        client = self.client()
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            experiment_id = client.create_experiment(
                experiment, artifact_location=Path(self.artifact_root).as_uri() if local else None
            )
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id


def mlflow_connection(settings: LakehouseSettings) -> MlflowConnection:
    """MLflow as the settings configure it (local SQLite store by default)."""
    return MlflowConnection(
        tracking_uri=settings.tracking_uri,
        registry_uri=settings.registry_uri,
        artifact_root=str(settings.mlflow_dir / "artifacts"),
    )


def create_local_store(db: Path) -> None:
    """Create the SQLite tracking and registry database whole or not at all: MLflow builds its
    tables in many steps on first use, and a process killed in between leaves a database it
    cannot open again. Built under another name, then linked into place (a concurrent creator's
    database, linked first, wins)."""
    from mlflow import MlflowClient

    if db.exists():
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    building = db.with_name(f"{db.name}.{os.getpid()}.building")
    building.unlink(missing_ok=True)
    MlflowClient(tracking_uri=f"sqlite:///{building}").search_experiments()  # runs migrations
    with contextlib.suppress(FileExistsError):
        os.link(building, db)
    building.unlink()


def feast_repo_config(
    feast_dir: Path,
    environment: str = "local",
    registry_url: str | None = None,
    redis_url: str | None = None,
) -> RepoConfig:
    """The environment's feature_store.<environment>.yaml, filled in from the settings."""
    from feast import RepoConfig

    feast_dir.mkdir(parents=True, exist_ok=True)
    if environment == "production" and not (registry_url and redis_url):
        raise ValueError("production needs LAKEHOUSE_FEAST_REGISTRY_URL and LAKEHOUSE_FEAST_REDIS_URL")
    template = Template((FEAST_CONFIG_DIR / f"feature_store.{environment}.yaml").read_text())
    text = template.substitute(
        feast_dir=feast_dir, registry_url=registry_url or "", redis_url=redis_url or ""
    )
    return RepoConfig(repo_path=str(feast_dir), **yaml.safe_load(text))


def open_feast(
    feast_dir: Path, environment: str = "local", registry_url: str | None = None, redis_url: str | None = None
) -> FeatureStore:
    """The Feast store of an environment: local (SQLite registry and online store under the
    home folder) or production (SQL registry, Redis online store), chosen by settings only."""
    from feast import FeatureStore

    return FeatureStore(config=feast_repo_config(feast_dir, environment, registry_url, redis_url))


def feast_store(settings: LakehouseSettings) -> FeatureStore:
    """The Feast store of the settings' environment."""
    return open_feast(
        settings.feast_dir, settings.environment, settings.feast_registry_url, settings.feast_redis_url
    )
