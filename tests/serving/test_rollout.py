"""Production testing end to end on a real service (127.0.0.1): the challenger in shadow, then in
canary, the gate asking for online evidence, promotion, and `lakehouse rollback` under load.
Tests run in file order on one service."""

import threading
import time
import uuid

import mlflow
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from dagster import materialize

from lakehouse_assets.cli import main
from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.monitoring.assets import monitoring_assets
from lakehouse_assets.monitoring.online import compare
from lakehouse_assets.registry.promotion import (
    CHALLENGER,
    CHAMPION,
    ROLLED_BACK_TAG,
    alias_version,
    apply_decision,
    register_challenger,
)
from lakehouse_assets.resources.mlflow import mlflow_resource
from lakehouse_assets.resources.sources import build_resources
from lakehouse_assets.serving.scoring import canary_bucket
from lakehouse_assets.tables import ALIAS_HISTORY_TABLE, INFERENCE_LOG_TABLE, ONLINE_COMPARISON_TABLE
from lakehouse_assets.training.dataset import model_input
from lakehouse_assets.training.evaluation import evaluate, online_evidence
from tests.products import variant
from tests.serving.conftest import RISK, TOKEN, prepare_home, start_service, train_synthetic

CUSTOMERS = 400


def order(customer: int, request_id: str | None = None) -> dict:
    return {
        "customer_id": customer,
        "items": [{"product_id": 1 + customer % 20, "quantity": 1}],
        "amount": 40.0 + customer % 50,
        "discount": (customer % 4) / 10,
        "request_id": request_id or uuid.uuid4().hex,
    }


@pytest.fixture(scope="module")
def rollout_service(tmp_path_factory):
    """Champion v1 (logistic regression) and challenger v2 (random forest), served in shadow."""
    home = tmp_path_factory.mktemp("rollout") / "home"
    settings = prepare_home(home, entities=CUSTOMERS)
    registry = mlflow_resource(settings)
    run, split = train_synthetic(settings, candidate=2, seed=11)
    register_challenger(
        registry.client(),
        DeltaEngine(settings.lake_root),
        "return_risk",
        run.model_uri,
        run.run_id,
        {},
        split.window(),
        run.metrics,
        "test",
    )
    mlflow.set_tracking_uri(None)
    service = start_service(
        home, {"LAKEHOUSE_SERVING__ROLLOUT": "shadow", "LAKEHOUSE_SERVING__LOG_FLUSH_SECONDS": "0.2"}
    )
    service.split = split
    yield service
    service.stop()


def logged(service, request_ids: list[str]):
    """The inference log rows of these requests, once all are committed."""
    engine = DeltaEngine(service.settings.lake_root)
    deadline = time.monotonic() + 30
    while True:
        if engine.version(INFERENCE_LOG_TABLE) is not None:
            rows = engine.read(INFERENCE_LOG_TABLE).filter(pl.col("request_id").is_in(request_ids))
            if rows.height == len(request_ids):
                return rows
        assert time.monotonic() < deadline, "requests missing from the inference log"
        time.sleep(0.2)


def test_shadow_answers_with_the_champion_and_logs_both_scores(rollout_service):
    service = rollout_service
    bodies = [order(c) for c in range(1, 61)]
    with service.client() as client:
        ready = client.get("/ready").json()
        shadow = [client.post("/v1/predict", json=b).json() for b in bodies]
        metrics = client.get("/metrics").text
        assert client.put("/v1/rollout", json={"mode": "champion"}).json()["mode"] == "champion"
        alone = [
            client.post("/v1/predict", json={**b, "request_id": uuid.uuid4().hex}).json() for b in bodies
        ]
    assert ready["rollout"]["return_risk"] == {
        "mode": "shadow",
        "canary_share": 0.0,
        "champion_version": 1,
        "challenger_version": 2,
    }
    assert 'lakehouse_serving_rollout_mode{mode="shadow",product="return_risk"} 1.0' in metrics
    assert 'lakehouse_serving_challenger_version{model_name="return_risk"} 2.0' in metrics
    assert {p["model_version"] for p in shadow} == {1} and {p["served_by"] for p in shadow} == {"champion"}
    # the responses are the champion's: the same as with the challenger out of the way
    assert [p["prediction"] for p in shadow] == [p["prediction"] for p in alone]

    rows = logged(service, [b["request_id"] for b in bodies]).sort("request_id")
    assert set(rows["rollout"]) == {"shadow"} and set(rows["served_by"]) == {"champion"}
    assert set(rows["champion_version"]) == {1} and set(rows["challenger_version"]) == {2}
    assert rows["champion_prediction"].to_list() == rows["prediction"].to_list()
    mlflow.set_tracking_uri(service.settings.tracking_uri)
    model = mlflow.sklearn.load_model("models:/return_risk/2")
    mlflow.set_tracking_uri(None)
    expected = model.predict_proba(model_input(rows, RISK))[:, 1]
    assert np.allclose(rows["challenger_prediction"].to_numpy(), expected, atol=1e-9)
    alone_rows = logged(service, [p["request_id"] for p in alone])
    assert alone_rows["challenger_prediction"].is_null().all()


def test_canary_share_is_configurable_at_run_time_and_sticky_per_customer(rollout_service):
    service = rollout_service

    def send(share: float) -> dict[int, tuple[str, int]]:
        served: dict[int, tuple[str, int]] = {}
        with service.client() as client:
            state = client.put("/v1/rollout", json={"mode": "canary", "canary_share": share})
            assert state.status_code == 200 and state.json()["canary_share"] == share
            for _ in range(2):  # every customer twice: the same model both times
                for start in range(1, CUSTOMERS + 1, 100):
                    batch = [order(c) for c in range(start, min(start + 100, CUSTOMERS + 1))]
                    answer = client.post("/v1/predict/batch", json={"requests": batch})
                    for body, p in zip(batch, answer.json()["predictions"], strict=True):
                        got = (p["served_by"], p["model_version"])
                        assert served.setdefault(body["customer_id"], got) == got, body
        return served

    env = {
        "LAKEHOUSE_HOME": str(service.home),
        "LAKEHOUSE_SERVING__TOKEN": TOKEN,
        "LAKEHOUSE_MONITORING__SERVING_URL": service.url,
    }
    needs_share = CliRunner().invoke(main, ["rollout", "canary"], env=env)
    assert needs_share.exit_code == 2 and "canary needs --share" in needs_share.output
    switched = CliRunner().invoke(main, ["rollout", "canary", "--share", "0.3"], env=env)
    assert switched.exit_code == 0, switched.output
    assert "rollout canary (canary share 0.3): champion v1, challenger v2" in switched.output
    third = send(0.3)
    canary = {c for c, (by, _) in third.items() if by == "challenger"}
    assert abs(len(canary) / CUSTOMERS - 0.3) < 0.08
    assert canary == {c for c in third if canary_bucket(c) < 0.3}
    assert {third[c][1] for c in canary} == {2} and {v for by, v in third.values() if by == "champion"} == {1}
    half = send(0.5)  # raised without a restart: the earlier canary customers stay in it
    wider = {c for c, (by, _) in half.items() if by == "challenger"}
    assert canary < wider and abs(len(wider) / CUSTOMERS - 0.5) < 0.08
    with service.client() as client:
        metrics = client.get("/metrics").text
        ready = client.get("/ready").json()
    assert 'lakehouse_serving_canary_share{product="return_risk"} 0.5' in metrics
    assert 'lakehouse_serving_answers_total{product="return_risk",served_by="challenger"}' in metrics
    assert ready["rollout"]["return_risk"]["mode"] == "canary"
    assert ready["rollout"]["return_risk"]["canary_share"] == 0.5
    with service.client() as client:
        bad = client.put("/v1/rollout", json={"mode": "canary", "canary_share": 1.5})
        anonymous = service.client(token=None).put("/v1/rollout", json={"mode": "shadow"})
    assert bad.status_code == 422 and "canary_share" in bad.text
    assert anonymous.status_code == 401


def test_online_evidence_gates_promotion(rollout_service):
    service = rollout_service
    settings = service.settings
    engine = DeltaEngine(settings.lake_root)
    deadline = time.monotonic() + 30  # the log commits every 0.2 s
    while (evidence := online_evidence(engine, 2, RISK.name)) < 60 + 2 * 2 * CUSTOMERS:
        assert time.monotonic() < deadline, evidence  # shadow requests + both canary shares
        time.sleep(0.2)
    comparison = compare(engine, RISK, 1, 2, 50).row
    assert comparison["requests"] == evidence
    assert 0 < comparison["answered_by_challenger"] < evidence
    assert comparison["agreement_low"] <= comparison["agreement_rate"] <= comparison["agreement_high"]
    assert comparison["labelled_orders"] == 0 and comparison["auc_difference"] is None
    (asset,) = [a for a in monitoring_assets(RISK) if a.key.to_user_string() == "online_comparison"]
    result = materialize([asset], resources=build_resources(settings), raise_on_error=True)
    check = result.get_asset_check_evaluations()[0]
    assert check.passed and check.check_name == "challenger_not_worse_online"
    recorded = engine.read(ONLINE_COMPARISON_TABLE).row(-1, named=True)
    assert (recorded["champion_version"], recorded["challenger_version"]) == (1, 2)
    assert recorded["requests"] == evidence

    registry = mlflow_resource(settings)
    registry.activate(RISK.name)
    client = registry.client()
    eager = {"margin": -1.0, "guards": {"log_loss": 10.0, "calibration_error": 10.0}}
    strict = variant(gate={**eager, "min_online_requests": evidence + 1})
    waiting = evaluate(client, strict, service.split, online_requests=evidence)
    assert waiting.decision == "awaiting_evidence" and not waiting.gate_passed
    assert f"only {evidence} of the {evidence + 1}" in waiting.reason
    enough = variant(gate={**eager, "min_online_requests": evidence})
    decision = evaluate(client, enough, service.split, online_requests=evidence)
    assert decision.decision == "promote"
    apply_decision(client, engine, decision, service.split.window(), "test")
    mlflow.set_tracking_uri(None)
    with service.client() as client_http:
        reloaded = client_http.post("/v1/reload").json()
        answer = client_http.post("/v1/predict", json=order(7)).json()
    assert reloaded == {"changed": True, "model_version": 2, "challenger_version": None}
    assert (answer["model_version"], answer["served_by"]) == (2, "champion")


def test_rollback_under_load_moves_the_champion_back_without_failed_requests(rollout_service):
    service = rollout_service
    statuses, versions, stop = [], [], threading.Event()
    sent_at: list[float] = []  # when each answered request was sent

    def load() -> None:
        with service.client() as client:
            while not stop.is_set():
                sent = time.monotonic()
                response = client.post("/v1/predict", json=order(11))
                statuses.append(response.status_code)
                if response.status_code == 200:
                    sent_at.append(sent)
                    versions.append(response.json()["model_version"])

    worker = threading.Thread(target=load)
    worker.start()
    env = {
        "LAKEHOUSE_HOME": str(service.home),
        "LAKEHOUSE_SERVING__TOKEN": TOKEN,
        "LAKEHOUSE_MONITORING__SERVING_URL": service.url,
    }
    try:
        while len(versions) < 20:
            time.sleep(0.01)
        result = CliRunner().invoke(main, ["rollback", "--reason", "canary complaints"], env=env)
        returned = time.monotonic()
        # a request sent before the command returned may still be answered by version 2
        # after it (it was in flight): only requests sent afterwards must get version 1
        while sum(sent > returned for sent in sent_at) < 20:
            time.sleep(0.01)
    finally:
        stop.set()
        worker.join()
    assert result.exit_code == 0, result.output
    assert "champion version 2 -> 1" in result.output
    assert "now serves version 1" in result.output
    assert set(statuses) == {200}  # nothing failed while the model changed
    assert versions[0] == 2 and versions[-1] == 1
    after = [v for sent, v in zip(sent_at, versions, strict=True) if sent > returned]
    assert len(after) >= 20 and set(after) == {1}  # served 1 once it returned

    settings = service.settings
    history = DeltaEngine(settings.lake_root).read(ALIAS_HISTORY_TABLE).sort("changed_at")
    last = history.row(-1, named=True)
    assert (last["alias"], last["from_version"], last["to_version"]) == (CHAMPION, 2, 1)
    assert last["changed_by"].startswith("lakehouse rollback")
    assert "rollback from version 2: canary complaints" in last["reason"]
    registry = mlflow_resource(settings)
    registry.activate(RISK.name)
    client = registry.client()
    assert client.get_model_version("return_risk", "2").tags[ROLLED_BACK_TAG] == "canary complaints"
    assert int(alias_version(client, "return_risk", CHAMPION).version) == 1
    assert alias_version(client, "return_risk", CHALLENGER) is None
    mlflow.set_tracking_uri(None)
    again = CliRunner().invoke(main, ["rollback"], env=env)
    assert again.exit_code == 1 and "no champion before version 1" in again.output
    missing = CliRunner().invoke(main, ["rollback", "--to", "9"], env=env)
    assert missing.exit_code == 1 and "no version 9" in missing.output
