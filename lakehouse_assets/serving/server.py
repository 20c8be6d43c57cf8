"""Builds the scoring app from the platform settings and runs it under uvicorn. Imports only
what scoring needs: no Dagster, dbt or Jupyter."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from lakehouse_assets.products.spec import Product
from lakehouse_assets.resources.connections import embedded_engine, feast_store, mlflow_connection
from lakehouse_assets.serving.app import check_exposure, create_app
from lakehouse_assets.serving.scoring import ChampionModel, OrderFeatures
from lakehouse_assets.settings import LakehouseSettings


def build_app(settings: LakehouseSettings, product: Product) -> FastAPI:
    """The scoring app of the online ``product`` over the settings' registry, online store and lake."""
    registry = mlflow_connection(settings)
    registry.use()
    champion = ChampionModel(registry.client(), product.spec.model_name)
    return create_app(
        settings.serving,
        champion,
        features=lambda: OrderFeatures(feast_store(settings), product),
        engine=embedded_engine(settings),
    )


def online_product(settings: LakehouseSettings) -> Product:
    """The declared product served online (an error names the declarations when there is none)."""
    from lakehouse_assets.product_declarations import load_products, monitored_product

    product = monitored_product(load_products(settings))
    if product is None:
        raise ValueError("no data product declares serving.online: true; nothing to serve")
    return product


def serve(settings: LakehouseSettings, host: str | None = None, port: int | None = None) -> None:
    """Run the scoring app of the online product under uvicorn (refused beyond loopback
    without a token)."""
    host = host or settings.serving.host
    check_exposure(host, settings.serving)
    uvicorn.run(
        build_app(settings, online_product(settings)),
        host=host,
        port=port or settings.serving.port,
        log_level="info",
        access_log=False,
    )
