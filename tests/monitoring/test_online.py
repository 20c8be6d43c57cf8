"""The online comparison of champion and challenger, on a hand-made inference log with labels:
agreement, distributions, quality with intervals, the monitor's verdict; the canary split."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from lakehouse_assets.monitoring.online import compare, online_comparison, paired_auc, wilson_interval
from lakehouse_assets.serving.inference_log import log_schema
from lakehouse_assets.serving.scoring import Rollout, canary_bucket
from lakehouse_assets.tables import INFERENCE_LOG_TABLE, ONLINE_COMPARISON_TABLE
from lakehouse_assets.training.evaluation import online_evidence
from tests.products import product

LOG_SCHEMA = log_schema(product())  # the online product's inference log columns

RISK = product()  # decision threshold 0.3


T0 = datetime(2026, 3, 1)


def write_log(engine, champion: np.ndarray, challenger: np.ndarray, labels: np.ndarray) -> None:
    n = len(labels)
    rows = [
        {name: None for name in LOG_SCHEMA}
        | {
            "request_id": f"r{i}",
            "served_at": T0 + timedelta(seconds=i),
            "model_name": "return_risk",
            "model_version": 1,
            "customer_id": i + 1,
            "order_id": i + 1,
            "rollout": "shadow",
            "served_by": "champion",
            "prediction": float(champion[i]),
            "champion_version": 1,
            "champion_prediction": float(champion[i]),
            "challenger_version": 2,
            "challenger_prediction": float(challenger[i]),
        }
        for i in range(n)
    ]
    engine.append(INFERENCE_LOG_TABLE, pl.DataFrame(rows, schema=LOG_SCHEMA))
    engine.append(
        "gold/fct_orders",
        pl.DataFrame({"order_id": np.arange(1, n + 1), "returned_within_30d": labels.astype(bool)}),
    )


@pytest.fixture
def labelled(engine):
    rng = np.random.default_rng(3)
    y = rng.random(600) < 0.25
    informative = np.clip(0.25 + 0.4 * (y - 0.25) + rng.normal(0, 0.15, y.size), 0, 1)
    noise = rng.random(y.size)
    return engine, y, informative, noise


def test_a_better_challenger_is_measured_better_with_an_interval_above_zero(labelled):
    engine, y, informative, noise = labelled
    write_log(engine, noise, informative, y)
    row = compare(engine, RISK, 1, 2, min_labelled=50).row
    assert row["requests"] == row["labelled_orders"] == 600
    assert row["champion_auc_low"] <= row["champion_auc"] <= row["champion_auc_high"]
    assert 0.4 < row["champion_auc"] < 0.6 and row["challenger_auc"] > 0.8
    assert row["auc_difference_low"] > 0
    agreement = np.mean((noise >= 0.3) == (informative >= 0.3))
    assert row["agreement_rate"] == pytest.approx(agreement)
    assert row["ks_pvalue"] < 0.01  # different score distributions
    outcome = online_comparison(engine, RISK, 1, 2, 50)
    assert outcome.passed is True and "ROC AUC difference +" in outcome.note
    assert engine.read(ONLINE_COMPARISON_TABLE).height == 1


def test_a_worse_challenger_fails_the_check(labelled):
    engine, y, informative, noise = labelled
    write_log(engine, informative, noise, y)
    outcome = online_comparison(engine, RISK, 1, 2, 50)
    assert outcome.passed is False
    assert outcome.summary["auc_difference_high"] < 0


def test_without_enough_labels_quality_is_not_judged(labelled):
    engine, y, informative, noise = labelled
    write_log(engine, noise[:40], informative[:40], y[:40])
    outcome = online_comparison(engine, RISK, 1, 2, 50)
    assert outcome.passed is True
    assert outcome.summary["auc_difference"] is None and "40 labelled orders" in outcome.note
    assert online_evidence(engine, 2) == 40 and online_evidence(engine, 3) == 0


def test_nothing_to_compare_is_a_skip(engine):
    assert online_comparison(engine, RISK, 1, None, 50).passed is None
    assert online_comparison(engine, RISK, 1, 2, 50).passed is None  # no log yet
    assert online_evidence(engine, 2) == 0


def test_intervals():
    low, high = wilson_interval(90, 100)
    assert low == pytest.approx(0.8256, abs=1e-3) and high == pytest.approx(0.9448, abs=1e-3)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    y = np.array([0, 1] * 50)
    same = np.linspace(0, 1, 100)
    result = paired_auc(y, same, same, rounds=200)
    assert (
        result["auc_difference"] == 0 and result["auc_difference_low"] == 0 == result["auc_difference_high"]
    )


def test_canary_takes_the_configured_share_of_customers_and_grows_monotonically():
    buckets = np.array([canary_bucket(c) for c in range(1, 100_001)])
    for share in (0.01, 0.1, 0.5):
        assert abs((buckets < share).mean() - share) < 0.005
    assert canary_bucket(42) == canary_bucket(42)
    rollout = Rollout("canary", 0.2)
    assert {c for c in range(1, 1000) if rollout.challenger_answers(c)} <= {
        c for c in range(1, 1000) if Rollout("canary", 0.3).challenger_answers(c)
    }
    assert not Rollout("shadow", 1.0).challenger_answers(1)
    with pytest.raises(ValueError, match="rollout mode 'blue'"):
        Rollout("blue")
    with pytest.raises(ValueError, match="canary_share 2"):
        Rollout("canary", 2)


def test_champion_monitoring_reads_its_own_score_where_a_canary_answered(engine):
    from lakehouse_assets.monitoring.monitors import labelled_predictions

    base = {name: None for name in LOG_SCHEMA} | {"model_name": "return_risk", "rollout": "canary"}
    rows = [
        base
        | {
            "request_id": "a",
            "served_at": T0,
            "order_id": 1,
            "customer_id": 1,
            "served_by": "champion",
            "model_version": 1,
            "prediction": 0.2,
            "champion_version": 1,
            "champion_prediction": 0.2,
            "challenger_version": 2,
            "challenger_prediction": 0.9,
        },
        base
        | {
            "request_id": "b",
            "served_at": T0,
            "order_id": 2,
            "customer_id": 2,
            "served_by": "challenger",
            "model_version": 2,
            "prediction": 0.8,
            "champion_version": 1,
            "champion_prediction": 0.3,
            "challenger_version": 2,
            "challenger_prediction": 0.8,
        },
        base
        | {
            "request_id": "c",
            "served_at": T0,
            "order_id": 3,
            "customer_id": 3,
            "served_by": "challenger",
            "model_version": 2,
            "prediction": 0.7,
            "champion_version": 1,
            "champion_prediction": None,  # shadow failed
            "challenger_version": 2,
            "challenger_prediction": 0.7,
        },
        base
        | {
            "request_id": "d",
            "served_at": T0,
            "order_id": 4,
            "customer_id": 4,
            "model_version": 1,
            "prediction": 0.4,
        },
    ]  # logged before rollouts
    engine.append(INFERENCE_LOG_TABLE, pl.DataFrame(rows, schema=LOG_SCHEMA))
    engine.append(
        "gold/fct_orders",
        pl.DataFrame(
            {
                "order_id": [1, 2, 3, 4],
                "returned_within_30d": [False, True, True, False],
                "label_known_at": [T0] * 4,
            }
        ),
    )
    champion = labelled_predictions(engine, 1, RISK).sort("order_id")
    assert champion["order_id"].to_list() == [1, 2, 4]
    assert champion["prediction"].to_list() == [0.2, 0.3, 0.4]
