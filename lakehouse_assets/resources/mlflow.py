"""MLflow (tracking and model registry) as a Dagster resource: it owns the URIs."""

from __future__ import annotations

from dagster import ConfigurableResource
from mlflow import MlflowClient

from lakehouse_assets.resources.connections import MlflowConnection, mlflow_connection
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

    def connection(self) -> MlflowConnection:
        return MlflowConnection(
            self.tracking_uri,
            self.registry_uri,
            self.artifact_root,
            self.experiment,
            self.model_name,
            self.training,
        )

    def activate(self) -> str:
        """Point this process's MLflow at the URIs and return the experiment id."""
        return self.connection().activate()

    def client(self) -> MlflowClient:
        return self.connection().client()


def mlflow_resource(settings: LakehouseSettings) -> MlflowResource:
    """The MLflow resource of the settings' connection."""
    connection = mlflow_connection(settings)
    return MlflowResource(
        tracking_uri=connection.tracking_uri,
        registry_uri=connection.registry_uri,
        artifact_root=connection.artifact_root,
        experiment=connection.experiment,
        model_name=connection.model_name,
        training_settings_json=connection.training.model_dump_json(),
    )
