"""The numpy scoring path gives the pipeline's probabilities for every model family."""

import numpy as np
import polars as pl
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from lakehouse_assets.serving.compiled import compile_pipeline, fast_scorer
from lakehouse_assets.training.candidates import candidates
from lakehouse_assets.training.dataset import model_input
from lakehouse_assets.training.synthetic import synthetic_training_set
from tests.products import product

RISK = product()
FEATURES, LABEL, NUMERIC_FEATURES = RISK.features, RISK.label, list(RISK.numeric)
GRID = candidates(RISK)


@pytest.fixture(scope="module")
def data() -> pl.DataFrame:
    # some customers have no segment yet: the fitted encoder then knows a missing category
    frame = synthetic_training_set(orders=600)
    return frame.with_columns(
        segment=pl.when(pl.col("order_id") % 11 == 0).then(None).otherwise(pl.col("segment"))
    )


@pytest.mark.parametrize("index", range(len(GRID)), ids=lambda i: GRID[i].name)
def test_compiled_scorer_equals_the_pipeline(data: pl.DataFrame, index: int):
    pipeline = candidates(RISK)[index].build()
    pipeline.fit(model_input(data, RISK), data[LABEL].to_numpy())
    scorer = fast_scorer(pipeline)
    assert scorer is not None
    # serving rows: real rows with some values knocked out, unseen and missing segments
    rows = data.select(FEATURES).head(50).to_dicts()
    for i, row in enumerate(rows):
        if i % 3 == 0:
            row["spend_90d"] = None
        if i % 7 == 0:
            row["segment"] = None if i % 2 else "vip"
    expected = pipeline.predict_proba(model_input(pl.DataFrame(rows, infer_schema_length=None), RISK))
    assert np.allclose(scorer(rows), expected[:, 1], rtol=0, atol=1e-9)
    assert scorer(rows[:1]).shape == (1,)


def test_other_pipelines_are_scored_by_the_pipeline(data: pl.DataFrame):
    template = candidates(RISK)[0].build()
    other = Pipeline(
        [
            ("features", ColumnTransformer([("numeric", MinMaxScaler(), NUMERIC_FEATURES)])),
            ("classifier", template.steps[1][1]),
        ]
    )
    frame = model_input(data.with_columns(pl.col(NUMERIC_FEATURES).fill_null(0.0)), RISK)
    other.fit(frame, data[LABEL].to_numpy())
    assert fast_scorer(other) is None


def test_a_compiled_scorer_that_disagrees_is_not_used(data: pl.DataFrame, monkeypatch):
    pipeline = candidates(RISK)[0].build()
    pipeline.fit(model_input(data, RISK), data[LABEL].to_numpy())
    right = compile_pipeline(pipeline)
    monkeypatch.setattr(
        "lakehouse_assets.serving.compiled.compile_pipeline", lambda p: lambda rows: right(rows) + 1e-6
    )
    assert fast_scorer(pipeline) is None
