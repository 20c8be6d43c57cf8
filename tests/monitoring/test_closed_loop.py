"""The closed loop on the simulated shop: a champion serves checkout traffic, the world drifts,
the drift check fails, the sensor launches retraining on fresh data, the gate promotes the
challenger only if it beats the champion, and the service follows. Then a challenger that
cannot beat the champion is kept out."""

import json
import time

import polars as pl
from dagster import AssetCheckSeverity, DagsterInstance, DagsterRunStatus, build_sensor_context

from lakehouse_assets.automation import retrain_on_degradation
from lakehouse_assets.components import latest_evaluation
from lakehouse_assets.definitions import build_definitions
from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.runtime import ensure_dirs
from lakehouse_assets.serving.traffic import checkout_requests
from lakehouse_assets.settings import LakehouseSettings, MonitoringSettings, SimulatorSettings
from lakehouse_assets.sources.simulator import ShopSimulator
from lakehouse_assets.tables import DRIFT_TABLE
from tests.products import product
from tests.serving.conftest import start_service

CALM = SimulatorSettings(
    days=45,
    initial_customers=150,
    initial_products=60,
    orders_per_day=40,
    promotion_start_day=None,
    new_category_day=None,
    customer_mix_shift_day=None,
    malformed_file_share=0.0,
)
# a 1,000-row window would take weeks of this shop's traffic; a quarter of the columns drifting
# is dataset drift here (the default is half)
MONITORING = MonitoringSettings(min_window_rows=100)
DRIFT_SHARE = {"return_risk": {"monitoring": {"drift_share": 0.25}}}
RETRAIN = "return_risk_retrain_job"


def run_job(settings: LakehouseSettings, instance: DagsterInstance, name: str, **kwargs):
    result = (
        build_definitions(settings)
        .resolve_job_def(name)
        .execute_in_process(instance=instance, raise_on_error=False, **kwargs)
    )
    failures = {
        e.step_key: e.event_specific_data.error.to_string()  # the cause, when it fails
        for e in result.get_step_failure_events()
    }
    assert failures == {}  # a kept challenger is a decision: the run succeeds
    assert result.success
    return result


def serve(service, orders: list[dict]) -> dict[int, int]:
    """POST every order; count answers by status (new customers are unknown to the online store
    until the next pipeline run: 404)."""
    statuses: dict[int, int] = {}
    with service.client() as client:
        for order in orders:
            status = client.post("/v1/predict", json=order).status_code
            statuses[status] = statuses.get(status, 0) + 1
    assert set(statuses) <= {200, 404}, statuses
    return statuses


def drift_of_last_check(engine: DeltaEngine) -> pl.DataFrame:
    rows = engine.read(DRIFT_TABLE).filter(
        (pl.col("monitor") == "feature_drift") & (pl.col("source") == "inference_log")
    )
    return rows.filter(pl.col("computed_at") == rows["computed_at"].max())


def test_drift_triggers_retraining_and_the_gate_decides(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("LAKEHOUSE_HOME", str(home))
    settings = LakehouseSettings(
        home=home, simulator=CALM, monitoring=MONITORING, product_overrides=DRIFT_SHARE
    )
    ensure_dirs(settings)
    instance = DagsterInstance.ephemeral()
    engine = DeltaEngine(settings.lake_root)
    ShopSimulator(settings.source_db, settings.landing, CALM).run(45)
    run_job(settings, instance, "daily_pipeline_job")
    run_job(settings, instance, RETRAIN)
    service = start_service(home, {"LAKEHOUSE_PRODUCT_OVERRIDES": json.dumps(DRIFT_SHARE)})
    try:
        with service.client() as client:
            assert client.get("/ready").json()["model_versions"] == {"return_risk": 1}

        # Calm days: traffic first (checkout), then the daily pipeline, then monitoring.
        last_order = 0
        ShopSimulator(settings.source_db, settings.landing, CALM).run(4)
        orders = checkout_requests(settings.source_db, last_order)
        last_order = orders[-1]["order_id"]
        calm_orders = [o for o in orders if o["order_id"] > orders[0]["order_id"]]
        assert serve(service, calm_orders[-200:])[200] >= 100
        run_job(settings, instance, "daily_pipeline_job")
        wait_for_log(engine, 100)
        run_job(settings, instance, "monitoring_job")
        calm = drift_of_last_check(engine)
        cursor = str(engine.read(DRIFT_TABLE)["computed_at"].max())

        # The world changes: a deep promotion, bargain hunters, a new category.
        simulator_day = 49
        drifted = CALM.model_copy(
            update={
                "promotion_start_day": simulator_day,
                "promotion_days": 20,
                "promotion_discount": 0.35,
                "customer_mix_shift_day": simulator_day,
                "customer_mix_bargain_share": 0.9,
                "new_category_day": simulator_day,
            }
        )
        ShopSimulator(settings.source_db, settings.landing, drifted).run(5)
        served = serve(service, checkout_requests(settings.source_db, last_order))
        assert served[200] >= 100
        wait_for_log(engine, 100 + served[200])
        run_job(settings, instance, "daily_pipeline_job")
        checks = {
            c.check_name: c.passed
            for c in run_job(settings, instance, "monitoring_job").get_asset_check_evaluations()
        }
        after = drift_of_last_check(engine)
        assert checks["no_dataset_drift"] is False
        assert after["drifted"].mean() > calm["drifted"].mean()  # the knob, not just time
        assert {"discount", "discount_share"} <= set(after.filter("drifted")["column"])

        # The sensor asks for one retraining; the run trains on fresh data and the gate decides.
        resources = {"lake": build_definitions(settings).resources["lake"]}
        sensor = retrain_on_degradation(product())
        with build_sensor_context(cursor=cursor, resources=resources, instance=instance) as context:
            tick = sensor(context)
        (request,) = tick.run_requests
        assert request.run_key.startswith("retrain:")
        run_job(settings, instance, RETRAIN, tags=request.tags)
        decision = latest_evaluation(engine, "return_risk")
        assert (decision.challenger_version, decision.champion_version) == (2, 1)
        gain = decision.challenger_metrics["roc_auc"] - decision.champion_metrics["roc_auc"]
        assert decision.decision == "promote", decision  # more labelled history wins here
        assert gain >= product().spec.gate.margin  # the gate's reason, not a default
        with service.client() as client:
            client.post("/v1/reload")
            answer = client.post("/v1/predict", json=checkout_requests(settings.source_db, 0)[-1])
        assert answer.json()["model_version"] == 2

        # A challenger that cannot clear the gate (margin 1.0) is kept out.
        ShopSimulator(settings.source_db, settings.landing, drifted).run(2)
        run_job(settings, instance, "daily_pipeline_job")
        strict = settings.model_copy(
            update={
                "product_overrides": {
                    "return_risk": {"gate": {"margin": 1.0}, "monitoring": {"drift_share": 0.25}}
                }
            }
        )
        result = run_job(strict, instance, RETRAIN)
        (gate,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "promotion_gate"]
        assert gate.passed is False and gate.severity == AssetCheckSeverity.WARN
        assert gate.description.startswith("keep: ") and "margin 1.0" in gate.description
        assert instance.get_run_by_id(result.run_id).status == DagsterRunStatus.SUCCESS
        assert latest_evaluation(engine, "return_risk").decision == "keep"
        with service.client() as client:
            client.post("/v1/reload")
            assert client.get("/ready").json()["model_versions"] == {"return_risk": 2}
    finally:
        service.stop()


def wait_for_log(engine: DeltaEngine, rows: int, timeout: float = 30.0) -> None:
    """The service commits its log every second: wait until ``rows`` are in."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine.exists("serving/inference_log") and engine.row_count("serving/inference_log") >= rows:
            return
        time.sleep(0.5)
    raise TimeoutError(f"inference log has fewer than {rows} rows after {timeout} s")
