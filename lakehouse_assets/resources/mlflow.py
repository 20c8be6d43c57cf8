"""MLflow (tracking and model registry) as a Dagster resource: it owns the URIs."""

from __future__ import annotations

from dagster import ConfigurableResource
from mlflow import MlflowClient

from lakehouse_assets.resources.connections import MlflowConnection, mlflow_connection
from lakehouse_assets.settings import LakehouseSettings


class MlflowResource(ConfigurableResource):
    """Local default: a SQLite backend and an artifact folder under the home, no server.
    Production: the URIs of an MLflow server. Each data product has its own experiment and
    registered model, named after it."""

    tracking_uri: str
    registry_uri: str
    artifact_root: str

    def connection(self) -> MlflowConnection:
        return MlflowConnection(self.tracking_uri, self.registry_uri, self.artifact_root)

    def activate(self, experiment: str) -> str:
        """Point this process's MLflow at the URIs, ``experiment`` active; returns its id."""
        return self.connection().activate(experiment)

    def use(self) -> None:
        """Point this process's MLflow at the URIs (to load registered models)."""
        self.connection().use()

    def client(self) -> MlflowClient:
        return self.connection().client()


def mlflow_resource(settings: LakehouseSettings) -> MlflowResource:
    """The MLflow resource of the settings' connection."""
    connection = mlflow_connection(settings)
    return MlflowResource(
        tracking_uri=connection.tracking_uri,
        registry_uri=connection.registry_uri,
        artifact_root=connection.artifact_root,
    )
