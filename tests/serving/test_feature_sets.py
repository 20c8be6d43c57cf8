"""A challenger trained with another feature set than the champion's, served beside it: the
service fetches the features of both versions (from their `feature_spec` tags), each model scores
the columns it was fitted on, in shadow and in canary; a version needing request columns the
declaration does not send is refused while the loaded one keeps serving."""

import json
import uuid

import mlflow
import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.features.store import feature_store
from lakehouse_assets.registry.promotion import register_challenger
from lakehouse_assets.resources.mlflow import mlflow_resource
from lakehouse_assets.serving.server import build_app
from lakehouse_assets.settings import LakehouseSettings, ServingSettings
from lakehouse_assets.tables import INFERENCE_LOG_TABLE
from lakehouse_assets.training.candidates import candidates
from lakehouse_assets.training.dataset import model_input, time_split
from lakehouse_assets.training.synthetic import synthetic_training_set
from lakehouse_assets.training.train import TrainingData, train_candidate
from tests.products import variant
from tests.serving.conftest import RISK, prepare_home

# The challenger also takes each line's product price (the highest on the order): a feature the
# declaration (return_risk_v2) does not name, fetched only because the challenger needs it.
PRICED = variant(
    features={
        "service": None,
        "views": [*RISK.row_features, *RISK.line_features, "product_daily_features:price"],
    }
)
ENTITIES = 40


def order(customer: int) -> dict:
    return {
        "customer_id": customer,
        "items": [{"product_id": 1 + customer % 7, "quantity": 1}, {"product_id": 2, "quantity": 2}],
        "amount": 30.0 + customer,
        "discount": 0.1,
        "request_id": uuid.uuid4().hex,
    }


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """Champion v1 on the declared features, challenger v2 on PRICED's (one more feature)."""
    home = tmp_path_factory.mktemp("feature_sets") / "home"
    settings = prepare_home(home, entities=ENTITIES)
    registry = mlflow_resource(settings)
    registry.activate(RISK.name)
    frame = synthetic_training_set(seed=5)
    frame = frame.with_columns(
        basket_max_price=pl.Series(np.random.default_rng(1).uniform(5, 90, frame.height))
    )
    split = time_split(frame, PRICED)
    with mlflow.start_run():
        run = train_candidate(candidates(PRICED)[0], split, TrainingData(frame, "synthetic", 0), PRICED)
    tags = {"feature_spec": json.dumps(PRICED.feature_spec(), sort_keys=True)}
    register_challenger(
        registry.client(),
        DeltaEngine(settings.lake_root),
        RISK.name,
        run.model_uri,
        run.run_id,
        tags,
        split.window(),
        run.metrics,
        "test",
    )
    mlflow.set_tracking_uri(None)
    return home


def serve(home, rollout: str, share: float = 0.0) -> TestClient:
    """The app in this process with the given rollout (its log is flushed when it stops)."""
    settings = LakehouseSettings(home=home)
    serving = ServingSettings(rollout=rollout, canary_share=share, reload_seconds=3600, log_flush_seconds=0.2)
    return TestClient(build_app(settings.model_copy(update={"serving": serving})))


def load(home, version: int):
    mlflow.set_tracking_uri(LakehouseSettings(home=home).tracking_uri)
    try:
        return mlflow.sklearn.load_model(f"models:/{RISK.name}/{version}")
    finally:
        mlflow.set_tracking_uri(None)


def expected(model, product, features: list[dict]) -> np.ndarray:
    """What ``model`` scores for the served features, prepared as in training for ``product``."""
    return model.predict_proba(model_input(pl.DataFrame(features), product))[:, 1]


def test_shadow_and_canary_score_each_model_on_its_own_feature_set(home):
    champion, challenger = load(home, 1), load(home, 2)
    assert "basket_max_price" in challenger.feature_names_in_
    assert "basket_max_price" not in champion.feature_names_in_
    bodies = [order(c) for c in range(1, 21)]
    with serve(home, "shadow") as client:
        shadow = [client.post("/v1/predict", json=b).json() for b in bodies]
    with serve(home, "canary", 1.0) as client:  # the challenger answers every customer
        canary = [
            client.post("/v1/predict", json={**b, "request_id": uuid.uuid4().hex}).json() for b in bodies
        ]

    # the price is looked up online for the challenger: the highest price on the order's lines
    store, _ = feature_store(LakehouseSettings(home=home))
    for body, answer in zip(bodies, shadow, strict=True):
        ids = [line["product_id"] for line in body["items"]]
        prices = store.get_online_features(
            features=["product_daily_features:price"], entity_rows=[{"product_id": i} for i in ids]
        ).to_dict()["price"]
        assert answer["features"]["basket_max_price"] == max(prices)
    features = [a["features"] for a in shadow]
    assert {a["served_by"] for a in shadow} == {"champion"} and {a["model_version"] for a in shadow} == {1}
    assert np.allclose([a["prediction"] for a in shadow], expected(champion, RISK, features), atol=1e-12)
    assert {a["served_by"] for a in canary} == {"challenger"} and {a["model_version"] for a in canary} == {2}
    assert np.allclose([a["prediction"] for a in canary], expected(challenger, PRICED, features), atol=1e-12)

    # the model that did not answer scored the same requests on its own columns, in the log
    log = DeltaEngine(LakehouseSettings(home=home).lake_root).read(INFERENCE_LOG_TABLE)
    by_id = {r["request_id"]: r for r in log.iter_rows(named=True)}
    shadow_scores = [by_id[b["request_id"]]["challenger_prediction"] for b in bodies]
    assert np.allclose(shadow_scores, expected(challenger, PRICED, features), atol=1e-9)
    beside_canary = [by_id[a["request_id"]]["champion_prediction"] for a in canary]
    assert np.allclose(beside_canary, [a["prediction"] for a in shadow], atol=1e-9)
    assert set(log["product"]) == {"return_risk"}


def test_a_version_needing_request_columns_the_declaration_lacks_is_refused(home):
    client = mlflow_resource(LakehouseSettings(home=home)).client()
    client.set_model_version_tag(
        RISK.name, "2", "feature_spec", json.dumps({**PRICED.feature_spec(), "request": ["amount", "coupon"]})
    )
    try:
        with serve(home, "shadow") as served:
            state = served.get("/v1/models").json()[0]
            answer = served.post("/v1/models/return_risk/predict", json=order(3))
            reload = served.post("/v1/models/return_risk/reload")
    finally:
        client.set_model_version_tag(RISK.name, "2", "feature_spec", json.dumps(PRICED.feature_spec()))
        mlflow.set_tracking_uri(None)
    assert state["champion_version"] == 1 and state["challenger_version"] is None  # refused at start
    assert answer.status_code == 200 and answer.json()["model_version"] == 1
    assert reload.status_code == 409 and "['coupon']" in reload.text
