"""Builds the scoring app from the platform settings and runs it under uvicorn. Imports only
what scoring needs: no Dagster, dbt or Jupyter."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from lakehouse_assets.resources.connections import embedded_engine, feast_store, mlflow_connection
from lakehouse_assets.serving.app import check_exposure, create_app
from lakehouse_assets.serving.scoring import ChampionModel, OrderFeatures
from lakehouse_assets.settings import LakehouseSettings


def build_app(settings: LakehouseSettings) -> FastAPI:
    """The scoring app over the settings' registry, online store and lake."""
    registry = mlflow_connection(settings)
    registry.use()
    champion = ChampionModel(registry.client(), registry.model_name)
    return create_app(
        settings.serving,
        champion,
        features=lambda: OrderFeatures(feast_store(settings)),
        engine=embedded_engine(settings),
    )


def serve(settings: LakehouseSettings, host: str | None = None, port: int | None = None) -> None:
    """Run the scoring app under uvicorn (refused beyond loopback without a token)."""
    host = host or settings.serving.host
    check_exposure(host, settings.serving)
    uvicorn.run(
        build_app(settings), host=host, port=port or settings.serving.port, log_level="info", access_log=False
    )
