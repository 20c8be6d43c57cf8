"""Lineage of one prediction, from the inference log back to the source rows.

request id -> the inference log row (model version, inputs) -> the registered model version and
its MLflow run -> the training set's Delta version and the source Delta versions it recorded ->
the feature service and views -> the gold feature rows the online store served -> the silver rows
those features were computed from -> their change events in bronze (sequence, operation, commit
time in the source).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.served_log import current_names
from lakehouse_assets.serving.inference_log import SCHEMA
from lakehouse_assets.serving.requests import LINES
from lakehouse_assets.tables import (
    CUSTOMER_FEATURES_TABLE,
    INFERENCE_LOG_TABLE,
    PRODUCT_FEATURES_TABLE,
    SILVER_ORDERS_TABLE,
    bronze_table,
    silver_table,
)

WINDOW_DAYS = 90  # the longest window of the customer features (orders_90d, spend_90d, ...)
EVENT_COLUMNS = ["_seq", "_op", "_commit_ts", "_ingested_at", "_batch_id"]


class LineageError(LookupError):
    """The prediction or one of its links cannot be found (the message names which)."""


@dataclass
class PredictionLineage:
    """One prediction traced back: the model and its run, the training data, the features served and the
    source rows behind them."""

    request_id: str
    served_at: datetime
    model_name: str
    model_version: int
    prediction: float
    customer_id: int | None
    order_id: int | None
    product_ids: list[int]
    model_inputs: dict[str, Any]
    model_run_id: str = ""
    model_run_name: str = ""
    training_set: dict[str, Any] = field(default_factory=dict)
    feature_service: str = ""
    feature_views: dict[str, list[str]] = field(default_factory=dict)
    feature_rows: dict[str, pl.DataFrame] = field(default_factory=dict)  # gold rows served
    source_rows: dict[str, pl.DataFrame] = field(default_factory=dict)  # silver rows behind them
    change_events: dict[str, pl.DataFrame] = field(default_factory=dict)  # bronze events

    def to_dict(self) -> dict[str, Any]:
        frames = ("feature_rows", "source_rows", "change_events")
        data = {k: v for k, v in self.__dict__.items() if k not in frames}
        data["served_at"] = self.served_at.isoformat()
        for name in frames:
            data[name] = {
                table: frame.with_columns(pl.col(pl.Datetime).dt.to_string()).to_dicts()
                for table, frame in getattr(self, name).items()
            }
        return data


def prediction(engine: LakeEngine, request_id: str) -> PredictionLineage:
    """The inference log's record of one request."""
    if not engine.exists(INFERENCE_LOG_TABLE):
        raise LineageError(f"{INFERENCE_LOG_TABLE} does not exist: nothing was served yet")
    rows = current_names(engine.read(INFERENCE_LOG_TABLE, where_in={"request_id": [request_id]}))
    if rows.height == 0:
        raise LineageError(f"no prediction with request id {request_id!r} in {INFERENCE_LOG_TABLE}")
    row = rows.sort("served_at").row(-1, named=True)
    request = json.loads(row["request"])
    skip = {
        *SCHEMA,
        "order_id",
        "customer_id",
    }
    return PredictionLineage(
        request_id=request_id,
        served_at=row["served_at"],
        model_name=row["model_name"],
        model_version=int(row["model_version"]),
        prediction=row["prediction"],
        customer_id=row.get("customer_id"),
        order_id=row.get("order_id"),
        product_ids=sorted(
            {int(line["product_id"]) for line in request.get(LINES, []) if "product_id" in line}
        ),
        model_inputs={k: v for k, v in row.items() if k not in skip and v is not None},
    )


def add_model(lineage: PredictionLineage, client: Any) -> None:
    """The registered version's MLflow run and the training set it was fit on."""
    version = client.get_model_version(lineage.model_name, str(lineage.model_version))
    run = client.get_run(version.run_id)
    lineage.model_run_id, lineage.model_run_name = version.run_id, run.info.run_name or ""
    for dataset_input in run.inputs.dataset_inputs:
        tags = {t.key: t.value for t in dataset_input.tags}
        if tags.get("mlflow.data.context") == "training":
            source = json.loads(dataset_input.dataset.source)
            lineage.training_set = {
                "table": source.get("path"),
                "delta_version": int(tags["delta_version"]),
                "rows": int(tags["rows"]),
                "source_delta_versions": json.loads(tags.get("source_delta_versions", "{}")),
                "params": dict(run.data.params),
            }


def add_features(lineage: PredictionLineage, engine: LakeEngine, service: Any) -> None:
    """The feature views of the service and the gold rows the online store held for the
    prediction's entities: each entity's newest row at or before the time it was served."""
    lineage.feature_service = service.name
    lineage.feature_views = {p.name: [f.name for f in p.features] for p in service.feature_view_projections}
    served = lineage.served_at.replace(tzinfo=None)
    for table, key, ids in (
        (CUSTOMER_FEATURES_TABLE, "customer_id", [lineage.customer_id]),
        (PRODUCT_FEATURES_TABLE, "product_id", lineage.product_ids),
    ):
        rows = engine.read(table, where_in={key: ids}).filter(pl.col("feature_ts") <= served)
        lineage.feature_rows[table] = rows.sort("feature_ts").group_by(key).last().sort(key)


def _events(engine: LakeEngine, table: str, key: str, ids: list[Any]) -> pl.DataFrame:
    if not ids or not engine.exists(table):
        return pl.DataFrame()
    events = engine.read(table, where_in={key: ids})
    return events.select(
        key, *EVENT_COLUMNS, *[c for c in events.columns if c not in (key, *EVENT_COLUMNS)]
    ).sort("_seq")


def add_sources(lineage: PredictionLineage, engine: LakeEngine) -> None:
    """The silver rows the served features were computed from (the customer, their orders and
    returns in the features' 90-day window, the products) and their bronze change events."""
    customer = lineage.feature_rows.get(CUSTOMER_FEATURES_TABLE, pl.DataFrame())
    if customer.height == 0:
        raise LineageError(
            f"no row of customer {lineage.customer_id} in {CUSTOMER_FEATURES_TABLE} "
            f"before {lineage.served_at}: erased, or not materialized yet"
        )
    day = customer["feature_date"][0]
    window_start = day - timedelta(days=WINDOW_DAYS - 1)
    orders = (
        engine.read(SILVER_ORDERS_TABLE, where_in={"customer_id": [lineage.customer_id]})
        .filter(pl.col("order_ts").dt.date().is_between(window_start, day))
        .sort("order_ts")
    )
    order_ids = orders["order_id"].to_list()
    lineage.source_rows = {
        silver_table("customers"): engine.read(
            silver_table("customers"), where_in={"customer_id": [lineage.customer_id]}
        ),
        SILVER_ORDERS_TABLE: orders,
        silver_table("returns"): engine.read(
            silver_table("returns"), where_in={"order_id": order_ids or [-1]}
        ),
        silver_table("products"): engine.read(
            silver_table("products"), where_in={"product_id": lineage.product_ids or [-1]}
        ),
    }
    lineage.change_events = {
        bronze_table(name): _events(engine, bronze_table(name), key, ids)
        for name, key, ids in (
            ("customers", "customer_id", [lineage.customer_id]),
            ("orders", "order_id", order_ids),
            ("returns", "order_id", order_ids),
            ("products", "product_id", lineage.product_ids),
        )
    }


def prediction_lineage(engine: LakeEngine, client: Any, service: Any, request_id: str) -> PredictionLineage:
    """Trace the logged prediction ``request_id`` back to its model, training data and source rows."""
    lineage = prediction(engine, request_id)
    add_model(lineage, client)
    add_features(lineage, engine, service)
    add_sources(lineage, engine)
    return lineage
