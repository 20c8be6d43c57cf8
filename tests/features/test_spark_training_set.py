"""The point-in-time training set computed in Spark equals the embedded (Feast) one row for
row, from the same recorded Delta versions, on the demo's lake."""

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.engine.spark import SparkEngine, is_spark_frame
from lakehouse_assets.features.pipeline import build_training_set, column_mean, training_set_frame
from lakehouse_assets.features.store import feature_store
from tests.products import product

pytestmark = pytest.mark.spark


def comparable(frame: pl.DataFrame) -> pl.DataFrame:
    """Values only: pandas (inside Feast) turns integer columns with NULLs into floats and naive
    datetimes into UTC ones; the Spark set keeps the lake's types."""
    return frame.select(
        pl.col(c).cast(pl.Float64)
        if dtype.is_numeric()
        else pl.col(c).dt.replace_time_zone(None).dt.cast_time_unit("us")
        if isinstance(dtype, pl.Datetime)
        else pl.col(c)
        for c, dtype in frame.schema.items()
    )


@pytest.mark.parametrize("name", ["return_risk", "demand_forecast"])
def test_spark_training_set_equals_the_embedded_one(demo_home, spark_session, tmp_path, name):
    settings = demo_home.settings
    store, definitions = feature_store(settings)
    declared = product(name)
    embedded, versions = build_training_set(store, DeltaEngine(settings.lake_root), definitions, declared)
    spark = SparkEngine(spark_session, settings.lake_root)
    frame, spark_versions, labelled = training_set_frame(store, spark, definitions, declared, versions)
    assert is_spark_frame(frame)  # lazy: computed by Spark when written
    assert spark_versions == versions and labelled == embedded.height > 0
    written = SparkEngine(spark_session, str(tmp_path))
    written.overwrite("training_set", frame, commit_metadata={"source_versions": versions})
    on_spark = written.read("training_set")
    assert on_spark.columns == embedded.columns
    order = [*declared.keys, declared.time]
    assert_frame_equal(comparable(on_spark).sort(order), comparable(embedded).sort(order))
    label = declared.spec.label.column
    assert column_mean(written, "training_set", label) == pytest.approx(
        embedded[label].cast(pl.Float64).mean()
    )
    features = [c for c in embedded.columns if c.startswith(("basket_", "amount_vs", "units_sold"))]
    assert features and embedded.select(
        features
    ).null_count().sum_horizontal().item() < embedded.height * len(
        features
    )  # the compared features are filled, not all NULL
