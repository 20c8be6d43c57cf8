"""Batch scoring as a Spark job (features and predictions on the executors) writes the same
scores as the embedded path, on copies of the demo's lake with its champion."""

import shutil

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.engine.spark import SparkEngine
from lakehouse_assets.features.store import feature_store
from lakehouse_assets.resources.connections import mlflow_connection
from lakehouse_assets.serving.batch_scores import score_batch
from lakehouse_assets.tables import scores_table
from tests.products import product

pytestmark = pytest.mark.spark


def test_spark_batch_scores_equal_the_embedded_ones(demo_home, spark_session, tmp_path):
    settings = demo_home.settings
    connection = mlflow_connection(settings)
    connection.use()
    store, definitions = feature_store(settings)
    declared = product("demand_forecast")
    for copy in ("embedded", "spark"):
        shutil.copytree(settings.lake_root, tmp_path / copy)
    embedded = DeltaEngine(str(tmp_path / "embedded"))
    spark = SparkEngine(spark_session, str(tmp_path / "spark"))
    table = scores_table(declared.name)
    ours = score_batch(embedded, store, definitions, connection.client(), declared, "embedded-run")
    score_batch(spark, store, definitions, connection.client(), declared, "spark-first")
    # again in the same session (the next day's job): the model's files are shipped anew
    theirs = score_batch(spark, store, definitions, connection.client(), declared, "spark-run")
    assert ours.model_version is not None, ours.note  # the demo has a champion to score with
    assert (theirs.rows, theirs.model_version, theirs.scored_time) == (
        ours.rows,
        ours.model_version,
        ours.scored_time,
    )
    assert ours.rows > 0

    def newest(root: str) -> pl.DataFrame:
        scores = DeltaEngine(root).read(table)
        return scores.filter(pl.col(declared.time) == ours.scored_time).drop("scored_at", "run_id")

    by_spark = newest(str(tmp_path / "spark"))
    # one row per entity: a rerun's MERGE replaces the demo's rows of that time
    assert by_spark.height == ours.rows and by_spark["prediction"].null_count() == 0
    assert_frame_equal(by_spark.sort(declared.keys), newest(str(tmp_path / "embedded")).sort(declared.keys))
