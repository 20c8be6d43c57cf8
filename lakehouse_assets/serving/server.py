"""Builds the scoring app from the platform settings and runs it under uvicorn. Imports only
what scoring needs: no Dagster, dbt or Jupyter."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from lakehouse_assets.products.spec import Product
from lakehouse_assets.resources.connections import embedded_engine, feast_store, mlflow_connection
from lakehouse_assets.serving.app import check_exposure, create_app
from lakehouse_assets.settings import LakehouseSettings


def build_app(settings: LakehouseSettings, products: list[Product] | None = None) -> FastAPI:
    """The scoring app of the online ``products`` (default: ``served_products``) over the
    settings' registry, online store and lake."""
    registry = mlflow_connection(settings)
    registry.use()
    return create_app(
        settings.serving,
        served_products(settings) if products is None else products,
        registry.client(),
        open_store=lambda: feast_store(settings),
        engine=embedded_engine(settings),
    )


def served_products(settings: LakehouseSettings) -> list[Product]:
    """The declared online products this service serves (serving.products, default: all of
    them); an error names the declarations when there is none or a name is not online."""
    from lakehouse_assets.product_declarations import load_products, online_products

    online = {p.name: p for p in online_products(load_products(settings))}
    if not online:
        raise ValueError("no data product declares serving.online: true; nothing to serve")
    unknown = [n for n in settings.serving.products if n not in online]
    if unknown:
        raise ValueError(
            f"serving.products names {unknown}, which are not served online "
            f"(online products: {', '.join(online)})"
        )
    return [online[n] for n in settings.serving.products] or list(online.values())


def serve(settings: LakehouseSettings, host: str | None = None, port: int | None = None) -> None:
    """Run the scoring app of the online products under uvicorn (refused beyond loopback
    without a token)."""
    host = host or settings.serving.host
    check_exposure(host, settings.serving)
    uvicorn.run(
        build_app(settings),
        host=host,
        port=port or settings.serving.port,
        log_level="info",
        access_log=False,
    )
