"""Batch scoring: a product's champion scores every entity at the newest event time of its
label table, with point-in-time features, into gold/<product>_scores (MERGE on the entity keys
and the time, so a rerun replaces rather than duplicates). Every row keeps the model's inputs
as scored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import mlflow
import polars as pl
from feast import FeatureStore
from mlflow import MlflowClient

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.features.definitions import FeatureDefinitions
from lakehouse_assets.features.pipeline import child_lines, label_rows_columns, point_in_time_features
from lakehouse_assets.products.spec import Product
from lakehouse_assets.registry.promotion import CHAMPION, alias_version, require_skops
from lakehouse_assets.tables import gold_table, scores_table
from lakehouse_assets.training.dataset import model_input
from lakehouse_assets.training.train import served_predictions


@dataclass
class BatchScores:
    """What one batch scoring wrote (``rows`` 0 and a ``note`` when there was nothing to do)."""

    rows: int
    model_version: int | None = None
    scored_time: datetime | None = None
    note: str = ""


def score_row_columns(product: Product, definitions: FeatureDefinitions) -> list[str]:
    """The label table's columns a scored row needs: a training row's, without the label."""
    spec = product.spec
    return [
        c
        for c in label_rows_columns(product, definitions)
        if c not in (spec.label.column, spec.label.known_at)
    ]


def rows_to_score(engine: LakeEngine, product: Product, definitions: FeatureDefinitions) -> pl.DataFrame:
    """Every row of the label table at its newest event time (its label is not known yet)."""
    table = gold_table(product.spec.label.table)
    frame = engine.read(table, columns=score_row_columns(product, definitions))
    return frame.filter(pl.col(product.time) == pl.col(product.time).max())


def score_batch(
    engine: LakeEngine,
    store: FeatureStore,
    definitions: FeatureDefinitions,
    client: MlflowClient,
    product: Product,
    run_id: str,
) -> BatchScores:
    """Score the newest rows with the champion and MERGE them into the scores table (on Spark,
    a Spark job: ``spark_batch_scores``)."""
    champion = alias_version(client, product.spec.model_name, CHAMPION)
    if champion is None:
        return BatchScores(0, note=f"no {product.spec.model_name}@{CHAMPION} yet")
    version = int(champion.version)
    uri = f"models:/{product.spec.model_name}/{champion.version}"
    require_skops(uri)
    scored_at = datetime.now(UTC).replace(tzinfo=None)
    out: Any  # polars, or a Spark DataFrame the Spark engine's MERGE takes as it is
    if engine.name == "spark":
        from lakehouse_assets.serving.spark_batch_scores import spark_scores

        out, scored_time = spark_scores(engine, store, definitions, product, uri, version, run_id, scored_at)  # type: ignore[arg-type]
    else:
        out, scored_time = polars_scores(engine, store, definitions, product, uri, version, run_id, scored_at)
    if out is None:
        return BatchScores(0, version, note="no rows to score")
    commit = engine.merge(
        scores_table(product.name),
        out,
        keys=[*product.keys, product.time],
        commit_metadata={"model_version": version, "run_id": run_id},
    )
    return BatchScores(commit.rows_written, version, scored_time)


def scores_columns(product: Product, inputs: list[str]) -> list[tuple[str, pl.DataType]]:
    """The model's inputs as scored, with their types: the drift monitor compares them with the
    training data."""
    categorical = set(product.categorical)
    return [(c, pl.String() if c in categorical else pl.Float64()) for c in inputs]


def polars_scores(
    engine: LakeEngine,
    store: FeatureStore,
    definitions: FeatureDefinitions,
    product: Product,
    uri: str,
    version: int,
    run_id: str,
    scored_at: datetime,
) -> tuple[pl.DataFrame | None, datetime | None]:
    """The scores rows of the newest label-table rows, scored in this process."""
    rows = rows_to_score(engine, product, definitions)
    if rows.height == 0:
        return None, None
    model = mlflow.pyfunc.load_model(uri)
    inputs = [c.name for c in model.metadata.get_input_schema().inputs]
    lines = child_lines(engine, product)
    if lines is not None:
        lines = lines.join(rows.select(product.keys), on=product.keys)
    features = point_in_time_features(store, product, rows, lines)
    prediction = served_predictions(model, model_input(features, product, inputs), product.spec.task)
    out = features.select(
        *product.keys,
        product.time,
        pl.Series("prediction", prediction, dtype=pl.Float64),
        pl.lit(version, pl.Int64).alias("model_version"),
        pl.col(product.time).alias("features_as_of"),
        pl.lit(scored_at).alias("scored_at"),
        pl.lit(run_id).alias("run_id"),
        *(pl.col(c).cast(dtype) for c, dtype in scores_columns(product, inputs)),
    )
    return out, rows[product.time].max()  # type: ignore[return-value]
