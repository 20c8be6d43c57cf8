"""MLflow (tracking and model registry) as a Dagster resource: it owns the URIs."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import mlflow
from dagster import ConfigurableResource
from mlflow import MlflowClient

from lakehouse_assets.settings import LakehouseSettings, TrainingSettings


class MlflowResource(ConfigurableResource):
    """Local default: a SQLite backend and an artifact folder under the home, no server.
    Production: the URIs of an MLflow server."""

    tracking_uri: str
    registry_uri: str
    artifact_root: str
    experiment: str = "return_risk"
    model_name: str = "return_risk"
    training_settings_json: str = "{}"  # TrainingSettings of the platform settings, as JSON

    @property
    def training(self) -> TrainingSettings:
        return TrainingSettings.model_validate_json(self.training_settings_json)

    def activate(self) -> str:
        """Point this process's MLflow at the URIs and return the experiment id (created on
        first use, with its artifacts under ``artifact_root`` for a local backend)."""
        local = self.tracking_uri.startswith("sqlite:///")
        if local:
            create_local_store(Path(self.tracking_uri.removeprefix("sqlite:///")))
            Path(self.artifact_root).mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.registry_uri)
        client = self.client()
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            experiment_id = client.create_experiment(
                self.experiment,
                artifact_location=Path(self.artifact_root).as_uri() if local else None)
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)


def create_local_store(db: Path) -> None:
    """Create the SQLite tracking and registry database whole or not at all: MLflow builds its
    tables in many steps on first use, and a process killed in between leaves a database it
    cannot open again. Built under another name, then linked into place (a concurrent creator's
    database, linked first, wins)."""
    if db.exists():
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    building = db.with_name(f"{db.name}.{os.getpid()}.building")
    building.unlink(missing_ok=True)
    MlflowClient(tracking_uri=f"sqlite:///{building}").search_experiments()  # runs migrations
    with contextlib.suppress(FileExistsError):
        os.link(building, db)
    building.unlink()


def mlflow_resource(settings: LakehouseSettings) -> MlflowResource:
    return MlflowResource(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri,
                          artifact_root=str(settings.mlflow_dir / "artifacts"),
                          experiment=settings.training.experiment,
                          model_name=settings.training.model_name,
                          training_settings_json=settings.training.model_dump_json())
