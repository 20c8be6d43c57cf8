"""The scoring service, started for real on 127.0.0.1 (see conftest.py). Tests run in file
order: the last one moves the champion and stops the service."""

import subprocess
import sys
import threading
import time
import uuid

import mlflow
import numpy as np
import polars as pl

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.features.pipeline import point_in_time_features
from lakehouse_assets.features.store import feature_store
from lakehouse_assets.registry.promotion import CHAMPION, move_alias
from lakehouse_assets.resources.mlflow import mlflow_resource
from lakehouse_assets.tables import INFERENCE_LOG_TABLE
from lakehouse_assets.training.dataset import model_input
from tests.features.gold_fixture import T0
from tests.serving.conftest import RISK, TOKEN, train_synthetic

NEWEST = T0.replace(day=T0.day + 3)  # gold_rows: days 0..3


def order(customer: int, products=(1,), amount=80.0, discount=0.1, request_id=None) -> dict:
    body = {
        "customer_id": customer,
        "items": [{"product_id": p, "quantity": 1} for p in products],
        "amount": amount,
        "discount": discount,
    }
    if request_id:
        body["request_id"] = request_id
    return body


def test_predictions_equal_batch_scoring_with_offline_features(service):
    orders = [
        order(c, products=(c % 5 + 1, 2), amount=20.0 + 7 * c, discount=c % 3 / 10) for c in range(1, 11)
    ]
    with service.client() as client:
        batch = client.post("/v1/predict/batch", json={"requests": orders})
        single = client.post("/v1/predict", json=orders[3])
    assert batch.status_code == 200, batch.text
    served = batch.json()["predictions"]
    assert abs(single.json()["prediction"] - served[3]["prediction"]) < 1e-12
    assert {p["model_name"] for p in served} == {"return_risk"}
    assert served[0]["line_features"]["2"]["price_band"] == "s2"  # gold_rows: product 2

    # Batch scoring: offline (point-in-time) features at the newest gold time, the registry's
    # champion, the training input preparation.
    store, _ = feature_store(service.settings)
    frame = pl.DataFrame(
        [
            {
                "order_id": i,
                "customer_id": o["customer_id"],
                "order_ts": NEWEST,
                "amount": o["amount"],
                "discount": o["discount"],
            }
            for i, o in enumerate(orders)
        ]
    )
    lines = pl.DataFrame([{"order_id": i, **line} for i, o in enumerate(orders) for line in o["items"]])
    offline = point_in_time_features(store, RISK, frame, lines)
    mlflow.set_tracking_uri(service.settings.tracking_uri)
    try:
        model = mlflow.sklearn.load_model("models:/return_risk@champion")
    finally:
        mlflow.set_tracking_uri(None)
    expected = model.predict_proba(model_input(offline, RISK))[:, 1]
    assert np.allclose([p["prediction"] for p in served], expected, atol=1e-12)
    assert served[0]["features"]["orders_90d"] == offline["orders_90d"][0]
    # the basket: products 2 and 2 (order of customer 1) -> gold_rows rate 2 + 3/4 on day 3
    assert served[0]["features"]["basket_max_return_rate_90d"] == 2.75
    assert served[0]["features"]["basket_lines"] == 2


def test_bad_input_gets_a_documented_4xx(service):
    cases = [
        ("/v1/predict", order(99_999), 404, "unknown customer_id 99999"),
        ("/v1/predict", order(1, products=(12_345,)), 404, "unknown product_id 12345"),
        ("/v1/predict", {k: v for k, v in order(1).items() if k != "amount"}, 422, "amount"),
        ("/v1/predict", {**order(1), "customer_id": "abc"}, 422, "customer_id"),
        ("/v1/predict", {**order(1), "discount": 1.5}, 422, "discount"),
        ("/v1/predict", {**order(1), "items": []}, 422, "items"),
        ("/v1/predict", {**order(1), "items": [{"product_id": 1, "quantity": -2}]}, 422, "quantity"),
        ("/v1/predict", {**order(1), "coupon": "X"}, 422, "coupon"),
        ("/v1/predict/batch", {"requests": [order(1)] * 101}, 413, "at most 100"),
        ("/v1/predict/batch", {"requests": []}, 422, "requests"),
    ]
    with service.client() as client:
        for path, body, status, named in cases:
            response = client.post(path, json=body)
            assert response.status_code == status, (body, response.text)
            assert named in response.text, response.text
        broken = client.post(
            "/v1/predict", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert broken.status_code == 422
    with service.client(token=None) as anonymous:
        assert anonymous.post("/v1/predict", json=order(1)).status_code == 401
        assert anonymous.get("/health").status_code == 200
    with service.client(token="wrong") as wrong:
        assert wrong.post("/v1/predict", json=order(1)).status_code == 401


def test_exposed_without_a_token_refuses_to_start(service_home):
    env = {"LAKEHOUSE_HOME": str(service_home), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "lakehouse_assets.cli", "serve", "--host", "0.0.0.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "refusing to bind 0.0.0.0 without a token" in result.stdout + result.stderr


def test_health_ready_metrics_and_openapi(service):
    with service.client(token=None) as client:
        ready = client.get("/ready").json()
        assert (
            ready["ready"] and ready["online_store"] is True and ready["model_versions"] == {"return_risk": 1}
        )
        client.post("/v1/predict", json=order(1))
        metrics = client.get("/metrics").text
        schema = client.get("/openapi.json").json()
    assert 'lakehouse_serving_model_version{model_name="return_risk"} 1.0' in metrics
    assert 'lakehouse_serving_requests_total{path="/v1/predict",status="401"}' in metrics
    assert "lakehouse_serving_request_seconds_bucket" in metrics
    assert (
        schema["paths"]["/v1/models/return_risk/predict"]["post"]["requestBody"]
        == (schema["paths"]["/v1/predict"]["post"]["requestBody"])
    )  # /v1/predict is return_risk's route
    for name in ("ReturnRiskRequest", "ReturnRiskLine", "Prediction", "ReturnRiskBatchRequest", "ModelState"):
        for field, spec in schema["components"]["schemas"][name]["properties"].items():
            assert spec.get("description"), f"{name}.{field} is undocumented"


def test_champion_moves_without_failed_requests_and_the_log_keeps_every_request(service):
    settings = service.settings
    registry = mlflow_resource(settings)
    run, _ = train_synthetic(settings, candidate=2, seed=11)
    version = mlflow.register_model(run.model_uri, "return_risk").version
    mlflow.set_tracking_uri(None)

    sent, statuses, versions, sent_at = [], [], [], []
    stop = threading.Event()

    def load() -> None:
        with service.client() as client:
            while not stop.is_set():
                request_id = uuid.uuid4().hex
                started = time.monotonic()
                response = client.post("/v1/predict", json=order(3, request_id=request_id))
                statuses.append(response.status_code)
                if response.status_code == 200:
                    sent.append(request_id)
                    sent_at.append(started)
                    versions.append(response.json()["model_version"])

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 60
        while len(sent) < count:
            assert time.monotonic() < deadline, f"only {len(sent)} answered; {statuses[-5:]}"
            time.sleep(0.01)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        wait_for(20)
        move_alias(
            registry.client(),
            DeltaEngine(settings.lake_root),
            "return_risk",
            CHAMPION,
            int(version),
            "test",
            "reload test",
        )
        with service.client() as client:
            reloaded = client.post("/v1/reload").json()
        returned = time.monotonic()
        assert reloaded == {"changed": True, "model_version": int(version), "challenger_version": None}
        wait_for(len(sent) + 20)
    finally:
        stop.set()
        worker.join()
    assert set(statuses) == {200}
    assert versions[0] == 1 and versions[-1] == int(version)
    # requests sent once the reload returned are all answered by the new version (one in
    # flight before it may still get the old one)
    after = [v for at, v in zip(sent_at, versions, strict=True) if at > returned]
    assert after and set(after) == {int(version)}

    output = service.stop()
    assert "Application shutdown complete" in output
    assert TOKEN not in output  # the bearer token never reaches the log
    logged = DeltaEngine(settings.lake_root).read(INFERENCE_LOG_TABLE)
    assert set(sent) <= set(logged["request_id"])
    assert logged["request_id"].n_unique() == logged.height
    assert set(logged["model_version"]) >= {1, int(version)}
