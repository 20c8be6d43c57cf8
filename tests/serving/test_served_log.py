"""Reading the inference log several products share: each product's rows only, and rows logged
before the log had a product column (the score in `return_probability`) read under today's names."""

from datetime import datetime

import polars as pl

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.monitoring.monitors import traffic_window
from lakehouse_assets.served_log import read_served
from lakehouse_assets.tables import DRIFT_TABLE, INFERENCE_LOG_TABLE

T0 = datetime(2026, 5, 1)


def test_each_product_reads_its_own_rows_and_old_rows_keep_their_score(tmp_path):
    engine = DeltaEngine(str(tmp_path))
    old = pl.DataFrame(  # the log as the service wrote it before products had routes
        {
            "request_id": ["old1", "old2"],
            "served_at": [T0, T0],
            "model_name": ["return_risk", "return_risk"],
            "model_version": [1, 1],
            "return_probability": [0.25, 0.75],
            "champion_probability": [0.25, None],
        }
    )
    engine.append(INFERENCE_LOG_TABLE, old)
    new = pl.DataFrame(
        {
            "request_id": ["a", "b", "c"],
            "served_at": [T0, T0, T0],
            "product": ["return_risk", "basket_return", "basket_return"],
            "model_name": ["return_risk", "basket_return", "basket_return"],
            "model_version": [2, 1, 1],
            "prediction": [0.5, 0.1, 0.9],
            "champion_prediction": [0.5, 0.1, 0.9],
        }
    )
    engine.append(INFERENCE_LOG_TABLE, new)

    risk = read_served(engine, "return_risk").sort("request_id")
    assert risk["request_id"].to_list() == ["a", "old1", "old2"]
    assert risk["prediction"].to_list() == [0.5, 0.25, 0.75]  # the old rows' score, renamed
    assert risk["champion_prediction"].to_list() == [0.5, 0.25, None]
    assert "return_probability" not in risk.columns
    basket = read_served(engine, "basket_return", ["request_id", "prediction"])
    assert basket.columns == ["request_id", "prediction"]
    assert sorted(basket["prediction"].to_list()) == [0.1, 0.9]
    assert read_served(engine).height == 5

    # a monitor's traffic window holds its product's rows only
    window = traffic_window(engine, "basket_return_feature_drift", DRIFT_TABLE, 1, "basket_return")
    assert sorted(window.frame["request_id"].to_list()) == ["b", "c"]


def test_nothing_served_yet_is_an_empty_frame(tmp_path):
    assert read_served(DeltaEngine(str(tmp_path)), "return_risk").is_empty()
