"""Builds the scoring app from the platform settings and runs it under uvicorn."""

from __future__ import annotations

import mlflow
import uvicorn
from fastapi import FastAPI

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.features.store import feature_store
from lakehouse_assets.resources.mlflow import mlflow_resource
from lakehouse_assets.serving.app import check_exposure, create_app
from lakehouse_assets.serving.scoring import ChampionModel, OrderFeatures
from lakehouse_assets.settings import LakehouseSettings


def build_app(settings: LakehouseSettings) -> FastAPI:
    registry = mlflow_resource(settings)
    mlflow.set_tracking_uri(registry.tracking_uri)
    mlflow.set_registry_uri(registry.registry_uri)
    champion = ChampionModel(registry.client(), registry.model_name)
    return create_app(settings.serving, champion,
                      features=lambda: OrderFeatures(feature_store(settings)[0]),
                      engine=DeltaEngine(settings.lake_root))


def serve(settings: LakehouseSettings, host: str | None = None, port: int | None = None) -> None:
    host = host or settings.serving.host
    check_exposure(host, settings.serving)
    uvicorn.run(build_app(settings), host=host, port=port or settings.serving.port,
                log_level="info", access_log=False)
