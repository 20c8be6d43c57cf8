"""Batch scoring as a Spark job: the rows to score, their point-in-time features
(``spark_training``) and the champion's predictions stay on the executors.

The model's files are shipped to every executor with ``SparkContext.addFile`` (so it works on a
cluster as in local mode); each Python worker loads the pyfunc model once and scores its Arrow
batches with the same ``model_input`` and ``served_predictions`` as the embedded path.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import pandas as pd
import polars as pl
from feast import FeatureStore
from pyspark import SparkFiles
from pyspark.sql import DataFrame
from pyspark.sql import functions as F  # noqa: N812 - PySpark's own convention
from pyspark.sql.types import DoubleType, StructField, StructType

from lakehouse_assets.features.definitions import FeatureDefinitions
from lakehouse_assets.features.pipeline import VIEW_TABLES, child_lines
from lakehouse_assets.features.spark_training import spark_point_in_time
from lakehouse_assets.products.spec import Product
from lakehouse_assets.tables import gold_table
from lakehouse_assets.training.dataset import typed_input
from lakehouse_assets.training.train import served_predictions

if TYPE_CHECKING:
    from lakehouse_assets.engine.spark import SparkEngine


@cache
def _model(folder: str) -> Any:
    """The pyfunc model shipped to this executor (loaded once per Python worker)."""
    return mlflow.pyfunc.load_model(SparkFiles.get(folder))


def _predict(folder: str, inputs: list[str], categorical: set[str], task: str):
    """The mapInPandas function: each batch with the model's ``prediction`` appended."""

    def predict(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = _model(folder)
        for batch in batches:
            frame = typed_input(pl.from_pandas(batch), inputs, categorical)
            yield batch.assign(prediction=served_predictions(model, frame, task).astype(float))

    return predict


def spark_scores(
    engine: SparkEngine,
    store: FeatureStore,
    definitions: FeatureDefinitions,
    product: Product,
    uri: str,
    version: int,
    run_id: str,
    scored_at: datetime,
) -> tuple[DataFrame | None, datetime | None]:
    """``polars_scores`` as a lazy Spark DataFrame (None when there is nothing to score)."""
    from lakehouse_assets.serving.batch_scores import score_row_columns, scores_columns

    spec, time, keys = product.spec, product.time, product.keys
    table = engine.frame(gold_table(spec.label.table)).select(*score_row_columns(product, definitions))
    newest = table.agg(F.max(time)).first()[0]  # type: ignore[index]
    if newest is None:
        return None, None
    rows = table.where(F.col(time) == F.lit(newest))
    lines = child_lines(engine, product)
    if lines is not None:
        lines = lines.join(rows.select(*keys), list(keys), "left_semi")
    views = {ref.split(":")[0] for ref in (*product.row_features, *product.line_features)}
    view_frames = {name: engine.frame(VIEW_TABLES[name]) for name in views if name in VIEW_TABLES}
    features = spark_point_in_time(store, product, rows, lines, view_frames)
    # a folder name of its own: a session refuses a second file of the same name (the next
    # day's scoring, another version) under a different path
    root = Path(tempfile.mkdtemp(prefix="lakehouse-model-"))
    (root / root.name).mkdir()
    local = mlflow.artifacts.download_artifacts(uri, dst_path=str(root / root.name))
    engine.spark.sparkContext.addFile(local, recursive=True)
    model = mlflow.pyfunc.load_model(local)
    inputs = [c.name for c in model.metadata.get_input_schema().inputs]
    selected = features.select(*keys, time, *inputs)
    scored = selected.mapInPandas(
        _predict(root.name, inputs, set(product.categorical), spec.task),
        StructType([*selected.schema.fields, StructField("prediction", DoubleType())]),
    )
    out = scored.select(
        *keys,
        time,
        "prediction",
        F.lit(version).cast("long").alias("model_version"),
        F.col(time).alias("features_as_of"),
        F.lit(scored_at).cast("timestamp_ntz").alias("scored_at"),
        F.lit(run_id).alias("run_id"),
        *(
            F.col(c).cast("string" if dtype == pl.String else "double")
            for c, dtype in scores_columns(product, inputs)
        ),
    )
    return out, newest
