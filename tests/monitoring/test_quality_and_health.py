"""Model quality on labelled live predictions, and system health from the log and /metrics."""

import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import polars as pl
import pytest

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.monitoring import monitors
from lakehouse_assets.monitoring.monitors import Champion
from lakehouse_assets.serving.inference_log import log_schema
from lakehouse_assets.settings import MonitoringSettings
from lakehouse_assets.tables import DRIFT_TABLE, HEALTH_TABLE, INFERENCE_LOG_TABLE, QUALITY_TABLE
from tests.products import product, variant

LOG_SCHEMA = log_schema(product())  # the online product's inference log columns

RISK = product()  # decision threshold 0.3, quality floor 0.55 on ROC AUC

T0 = datetime(2026, 4, 1)


def champion(roc_auc: float) -> Champion:
    return Champion(
        "return_risk", 3, 0, "2026-01-01", "2026-02-01", {"roc_auc": roc_auc}, "models:/return_risk/3"
    )


def write_traffic(engine: DeltaEngine, informative: bool, rows: int = 400) -> None:
    """Logged predictions of version 3 for orders 1..rows, and their labels in gold. The
    probabilities carry the label's signal, or none at all."""
    rng = np.random.default_rng(1)
    labels = rng.random(rows) < 0.2
    p = (
        np.clip(np.where(labels, 0.5, 0.2) + rng.normal(0, 0.15, rows), 0.01, 0.99)
        if informative
        else rng.random(rows)
    )
    log = pl.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(rows)],
            "served_at": [T0 + timedelta(seconds=i) for i in range(rows)],
            "model_name": ["return_risk"] * rows,
            "model_version": [3] * rows,
            "order_id": list(range(1, rows + 1)),
            "prediction": p,
            "latency_ms": rng.gamma(2, 2, rows),
        }
    )
    engine.append(
        INFERENCE_LOG_TABLE,
        log.with_columns(
            pl.lit(None, dtype).alias(c) for c, dtype in LOG_SCHEMA.items() if c not in log.columns
        ).select(LOG_SCHEMA.names()),
    )
    engine.append(
        "gold/fct_orders",
        pl.DataFrame(
            {
                "order_id": list(range(1, rows + 1)),
                "returned_within_30d": labels,
                "label_known_at": [T0 + timedelta(days=30)] * rows,
            }
        ),
    )


@pytest.mark.parametrize("informative", [True, False])
def test_quality_check_fails_when_the_metric_drops(tmp_path, informative):
    engine = DeltaEngine(str(tmp_path / "lake"))
    write_traffic(engine, informative)
    outcome = monitors.model_quality(engine, champion(0.8), RISK, MonitoringSettings(), tmp_path / "reports")
    auc = outcome.summary["labels"]["roc_auc"]
    assert outcome.passed is informative
    assert (auc > 0.8) if informative else (auc < 0.6)
    row = engine.read(QUALITY_TABLE).row(0, named=True)
    assert row["labelled_rows"] == 400 and row["holdout_value"] == 0.8
    assert outcome.reports["labels"].exists()  # Evidently's classification report


def test_quality_needs_enough_labels(tmp_path):
    engine = DeltaEngine(str(tmp_path / "lake"))
    write_traffic(engine, True, rows=30)
    outcome = monitors.model_quality(engine, champion(0.8), RISK, MonitoringSettings(), tmp_path / "reports")
    assert outcome.passed is None and "30 labelled predictions" in outcome.note


@pytest.fixture
def metrics_server():
    body = "\n".join(
        [
            "# TYPE lakehouse_serving_requests_total counter",
            'lakehouse_serving_requests_total{path="/v1/predict",status="200"} 970.0',
            'lakehouse_serving_requests_total{path="/v1/predict",status="404"} 10.0',
            'lakehouse_serving_requests_total{path="/v1/predict",status="500"} 20.0',
            'lakehouse_serving_requests_total{path="/health",status="500"} 99.0',
        ]
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_system_health_reads_latency_and_error_rate(tmp_path, metrics_server):
    engine = DeltaEngine(str(tmp_path / "lake"))
    write_traffic(engine, True)
    strict = MonitoringSettings(serving_url=metrics_server, max_error_rate=0.01)
    outcome = monitors.system_health(engine, strict)
    summary = outcome.summary["serving"]
    assert summary["error_rate"] == pytest.approx(20 / 1000)  # scoring paths only
    assert outcome.passed is False  # 2% 5xx > 1%
    assert summary["p99_ms"] >= summary["p50_ms"] > 0
    assert engine.read(HEALTH_TABLE)["requests"].item() == 400
    unreachable = MonitoringSettings(serving_url="http://127.0.0.1:9", latency_p99_ms=1000)
    again = monitors.system_health(engine, unreachable)
    assert again.passed and "unreachable" in str(again.summary["serving"]["error_rate"])


def test_the_traffic_window_starts_where_the_last_traffic_window_ended(tmp_path):
    engine = DeltaEngine(str(tmp_path / "lake"))
    write_traffic(engine, True)  # served at T0 + 0..399 s
    engine.append(
        DRIFT_TABLE,
        pl.DataFrame(
            {
                "monitor": ["feature_drift"] * 2,
                "source": ["inference_log", "gold"],
                "window_end": [T0 + timedelta(seconds=99), T0 + timedelta(days=1)],
            }
        ),
    )
    window = monitors.traffic_window(engine, "feature_drift", DRIFT_TABLE, min_rows=10)
    # the gold window's end (another clock) does not hide the newer traffic
    assert window.frame.height == 300 and window.start == T0 + timedelta(seconds=100)
    short = monitors.traffic_window(engine, "feature_drift", DRIFT_TABLE, min_rows=350)
    assert short.frame.height == 350 and "extended to the latest 350" in short.note


def write_forecasts(engine: DeltaEngine, error: float, rows: int = 200) -> None:
    """Batch forecasts of demand_forecast version 2 and the actuals that arrived for them:
    ``error`` is the relative over-forecast (0.1: 10% too high)."""
    rng = np.random.default_rng(4)
    actual = rng.poisson(20, rows)
    days = [T0 + timedelta(days=i % 20) for i in range(rows)]
    keys = {"product_id": [i // 20 for i in range(rows)], "forecast_ts": days}
    engine.append(
        "gold/demand_forecast_scores",
        pl.DataFrame({**keys, "prediction": actual * (1 + error), "model_version": [2] * rows}),
    )
    engine.append(
        "gold/product_demand_daily",
        pl.DataFrame(
            {**keys, "units_next_7d": actual, "label_known_at": [d + timedelta(days=7) for d in days]}
        ),
    )


@pytest.mark.parametrize(("error", "passes"), [(0.05, True), (0.9, False)])
def test_batch_forecasts_are_judged_on_their_actuals_and_a_failure_retrains_that_product(
    settings, error, passes
):
    from dagster import build_sensor_context

    from lakehouse_assets.automation import retrain_on_degradation
    from lakehouse_assets.resources.sources import build_resources

    engine = DeltaEngine(settings.lake_root)
    demand = product("demand_forecast")  # quality on WAPE, floor 0.8, at most 0.05 above holdout
    write_forecasts(engine, error)
    model = Champion("demand_forecast", 2, 0, "2026-01-01", "2026-02-01", {"wape": 0.1}, "models:/d/2")
    outcome = monitors.batch_quality(engine, model, demand, MonitoringSettings())
    assert outcome.passed is passes
    assert outcome.summary["actuals"]["wape"] == pytest.approx(error, rel=1e-6)
    row = engine.read(QUALITY_TABLE).row(-1, named=True)
    assert (row["monitor"], row["model_name"], row["metric"], row["passed"]) == (
        "demand_forecast_batch_quality",
        "demand_forecast",
        "wape",
        passes,
    )
    resources = {"lake": build_resources(settings)["lake"]}
    for name, monitors_of in (("demand_forecast", ["demand_forecast_batch_quality"]), ("return_risk", None)):
        sensor = retrain_on_degradation(product(name), *([monitors_of] if monitors_of else []))
        with build_sensor_context(resources=resources) as context:
            asked = bool(sensor(context).run_requests)
        # only the failing product retrains; the other product's sensor ignores its monitors
        assert asked is (name == "demand_forecast" and not passes), name


def test_batch_quality_waits_for_actuals(settings):
    engine = DeltaEngine(settings.lake_root)
    model = Champion("demand_forecast", 2, 0, "2026-01-01", "2026-02-01", {"wape": 0.1}, "models:/d/2")
    assert (
        monitors.batch_quality(engine, model, product("demand_forecast"), MonitoringSettings()).passed is None
    )
    write_forecasts(engine, 0.0, rows=20)
    outcome = monitors.batch_quality(engine, model, product("demand_forecast"), MonitoringSettings())
    assert outcome.passed is None and "20 batch predictions" in outcome.note


def demand_inputs(rng: np.random.Generator, rows: int, shift: float) -> dict:
    """Model inputs of demand_forecast; ``shift`` moves recent sales (a promotion's surge)."""
    return {
        "units_last_7d": rng.poisson(10 * (1 + shift), rows).astype(float),
        "units_last_28d": rng.poisson(40 * (1 + shift), rows).astype(float),
        "units_sold_90d": rng.poisson(120, rows).astype(float),
        "return_rate_90d": rng.random(rows) * 0.1,
        "price": rng.gamma(2, 20, rows),
        "price_band": rng.choice(["low", "mid", "high"], rows),
        "category": rng.choice(["apparel", "home"], rows),
    }


@pytest.mark.parametrize(("shift", "drifts"), [(0.0, False), (2.0, True)])
def test_batch_inputs_are_checked_for_drift_against_the_training_data(settings, shift, drifts):
    engine = DeltaEngine(settings.lake_root)
    demand = variant("demand_forecast", monitoring={"drift_share": 0.25})  # 2 of its 7 inputs
    rng = np.random.default_rng(8)
    train_days = [T0 + timedelta(hours=i) for i in range(2000)]
    engine.append(
        "features/demand_forecast_training_set",
        pl.DataFrame(
            {
                "product_id": [i % 50 for i in range(2000)],
                "forecast_ts": train_days,
                **demand_inputs(rng, 2000, 0.0),
            }
        ),
    )
    scored_at = T0 + timedelta(days=120)
    engine.append(
        "gold/demand_forecast_scores",
        pl.DataFrame(
            {
                "product_id": list(range(300)),
                "forecast_ts": [scored_at] * 300,
                "prediction": [10.0] * 300,
                "model_version": [2] * 300,
                **demand_inputs(rng, 300, shift),
            }
        ),
    )
    window = (str(train_days[0]), str(train_days[-1]))
    model = Champion("demand_forecast", 2, 0, *window, {"wape": 0.1}, "models:/d/2")
    outcome = monitors.batch_feature_drift(
        engine, model, demand, MonitoringSettings(), settings.home_dir / "reports"
    )
    assert outcome.passed is (not drifts), outcome.summary
    rows = engine.read(DRIFT_TABLE).filter(pl.col("monitor") == "demand_forecast_batch_drift")
    assert set(rows["column"]) == set(demand.features) and (rows["source"] == "batch_scores").all()
    assert ("units_last_7d" in set(rows.filter("drifted")["column"])) is drifts
