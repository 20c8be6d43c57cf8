"""Training runs in MLflow (SQLite backend in a temporary folder, no server), the registry's
champion/challenger gate and the alias history."""

import json

import mlflow
import numpy as np
import polars as pl
import pytest
from deltalake import write_deltalake
from mlflow import MlflowClient
from sklearn.dummy import DummyClassifier

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.registry.promotion import (
    CHALLENGER,
    CHAMPION,
    alias_version,
    apply_decision,
    gate,
    register_challenger,
)
from lakehouse_assets.resources.mlflow import mlflow_resource
from lakehouse_assets.settings import LakehouseSettings
from lakehouse_assets.tables import ALIAS_HISTORY_TABLE
from lakehouse_assets.training.candidates import Candidate, pipeline
from lakehouse_assets.training.dataset import model_input, time_split
from lakehouse_assets.training.evaluation import evaluate
from lakehouse_assets.training.synthetic import synthetic_training_set
from lakehouse_assets.training.train import TrainingData, train_candidate, train_candidates
from tests.products import product, variant

METRICS = {
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "calibration_error",
    "precision_at_threshold",
    "recall_at_threshold",
}
PLOTS = {
    "plots/roc_curve.png",
    "plots/pr_curve.png",
    "plots/confusion_matrix.png",
    "plots/feature_importance.png",
}


@pytest.fixture
def ml(tmp_path):
    settings = LakehouseSettings(home=tmp_path)
    resource = mlflow_resource(settings)
    resource.activate("return_risk")
    path = str(tmp_path / "lake" / "features" / "training_set")
    write_deltalake(path, synthetic_training_set().to_arrow())
    data = TrainingData(synthetic_training_set(), path, 0, {"gold/fct_orders": 4})
    yield resource, resource.client(), DeltaEngine(str(tmp_path / "lake")), data, product()
    mlflow.set_tracking_uri(None)


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    out = set()
    for item in client.list_artifacts(run_id, path):
        out |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def test_each_candidate_is_a_tracked_run_with_lineage(ml):
    resource, client, _, data, settings = ml
    outcome = train_candidates(data, settings)
    families = {r.candidate.family for r in outcome.runs}
    assert families == {"logistic_regression", "random_forest", "lightgbm"}
    assert len(outcome.runs) == 6
    for result in outcome.runs:
        run = client.get_run(result.run_id)
        assert run.data.tags["mlflow.parentRunId"] == outcome.parent_run_id
        assert set(run.data.metrics) >= METRICS
        assert run.data.params["family"] == result.candidate.family
        assert int(run.data.params["holdout_rows"]) == outcome.split.holdout.height
        assert PLOTS | {"feature_importance.json"} <= artifact_paths(client, result.run_id)
        inputs = run.inputs.dataset_inputs
        tags = [{t.key: t.value for t in i.tags} for i in inputs]
        assert {t["mlflow.data.context"] for t in tags} == {"training", "validation"}
        assert {t["delta_version"] for t in tags} == {"0"}
        rows = {
            t["mlflow.data.context"]: json.loads(i.dataset.profile)["num_rows"]
            for t, i in zip(tags, inputs, strict=True)
        }
        assert rows == {"training": outcome.split.train.height, "validation": outcome.split.holdout.height}
        assert json.loads(tags[0]["source_delta_versions"]) == {"gold/fct_orders": 4}
        # MLflow's Delta source drops version 0 from its JSON (a falsy check): hence the tag.
        assert json.loads(inputs[0].dataset.source)["path"] == data.path
    # Signal in the fixture: the best model ranks returns well above chance.
    assert outcome.best.metrics["roc_auc"] > 0.65
    model_info = mlflow.models.get_model_info(outcome.best.model_uri)
    assert model_info.signature is not None and model_info.saved_input_example_info is not None
    assert {c.name for c in model_info.signature.inputs.inputs} >= {"amount", "segment"}


def logged(candidate: Candidate, data, declared):
    split = time_split(data.frame, declared)
    with mlflow.start_run():
        return train_candidate(candidate, split, data, declared), split


def register(client, engine, run, split, actor="test"):
    return register_challenger(
        client,
        engine,
        "return_risk",
        run.model_uri,
        run.run_id,
        tags={"candidate": run.candidate.name},
        window=split.window(),
        metrics=run.metrics,
        actor=actor,
    )


def test_first_model_becomes_champion_better_is_promoted_worse_is_not(ml):
    _, client, engine, data, _ = ml
    # The constant baseline is perfectly calibrated on average; the guard is tested below.
    settings = variant(gate={"guards": {"log_loss": 0.01, "calibration_error": 0.2}})
    weak = Candidate("constant", {}, pipeline(settings, False, DummyClassifier(strategy="prior")))
    strong = train_candidates(data, settings).best

    def decide():
        evaluation = evaluate(client, settings, split)
        apply_decision(client, engine, evaluation, split.window(), "test")
        return evaluation

    weak_run, split = logged(weak, data, settings)
    v1 = int(register(client, engine, weak_run, split).version)
    first = decide()
    assert (first.decision, first.gate_passed) == ("promote", True)
    assert int(alias_version(client, "return_risk", CHAMPION).version) == v1

    v2 = int(register(client, engine, strong, split).version)
    better = decide()
    assert better.decision == "promote", better.reason
    assert better.challenger_metrics["roc_auc"] > better.champion_metrics["roc_auc"]
    assert int(alias_version(client, "return_risk", CHAMPION).version) == v2
    assert alias_version(client, "return_risk", CHALLENGER) is None
    assert client.get_model_version("return_risk", str(v1)).tags["lifecycle"] == "archived"

    weak_again, _ = logged(weak, data, settings)
    v3 = int(register(client, engine, weak_again, split).version)
    worse = decide()
    assert (worse.decision, worse.gate_passed) == ("keep", False)
    assert "below the margin" in worse.reason
    assert int(alias_version(client, "return_risk", CHAMPION).version) == v2
    assert int(alias_version(client, "return_risk", CHALLENGER).version) == v3
    assert client.get_model_version("return_risk", str(v3)).tags["gate_decision"].startswith("kept")
    card = mlflow.artifacts.load_text(f"runs:/{weak_again.run_id}/model_card.md")
    assert "Not promoted" in card and "Data window" in card

    history = engine.read(ALIAS_HISTORY_TABLE).sort("changed_at")
    assert history.select("alias", "from_version", "to_version").rows() == [
        (CHALLENGER, None, v1),
        (CHAMPION, None, v1),
        (CHALLENGER, v1, None),
        (CHALLENGER, None, v2),
        (CHAMPION, v1, v2),
        (CHALLENGER, v2, None),
        (CHALLENGER, None, v3),
    ]
    assert history["changed_by"].unique().to_list() == ["test"]
    assert json.loads(history.filter(pl.col("alias") == CHAMPION)["metrics"][1])["roc_auc"] > 0.65

    # The served champion gives the in-memory model's probabilities.
    champion = mlflow.pyfunc.load_model("models:/return_risk@champion")
    x = model_input(split.holdout, settings)
    assert np.allclose(np.asarray(champion.predict(x)), strong.model.predict_proba(x))


def test_gate_margin_and_guards():
    settings = variant(gate={"margin": 0.01, "guards": {"log_loss": 0.01, "calibration_error": 0.02}}).spec
    champion = {"roc_auc": 0.70, "log_loss": 0.40, "calibration_error": 0.05}
    assert gate(champion, {**champion, "roc_auc": 0.715}, settings)[0]
    assert not gate(champion, {**champion, "roc_auc": 0.705}, settings)[0]  # under the margin
    passed, reason = gate(champion, {**champion, "roc_auc": 0.75, "log_loss": 0.45}, settings)
    assert not passed and "log_loss" in reason
    passed, reason = gate(champion, {**champion, "roc_auc": 0.75, "calibration_error": 0.1}, settings)
    assert not passed and "calibration_error" in reason


def test_a_lower_is_better_primary_metric_must_fall_by_the_margin():
    settings = variant("demand_forecast", gate={"margin": 0.01, "guards": {"abs_bias": 0.05}}).spec
    champion = {"wape": 0.40, "abs_bias": 0.02}
    assert gate(champion, {"wape": 0.38, "abs_bias": 0.02}, settings)[0]
    passed, reason = gate(champion, {"wape": 0.395, "abs_bias": 0.02}, settings)
    assert not passed and "below the margin" in reason  # improved, but by less than the margin
    assert not gate(champion, {"wape": 0.45, "abs_bias": 0.02}, settings)[0]  # worse
    passed, reason = gate(champion, {"wape": 0.30, "abs_bias": 0.09}, settings)
    assert not passed and "abs_bias" in reason


def test_only_what_shapes_the_models_changes_the_fingerprint():
    from lakehouse_assets.training.train import fingerprint

    data = TrainingData(synthetic_training_set(orders=50), "somewhere", 3, {"gold/fct_orders": 4})
    base = fingerprint(data, product())
    assert fingerprint(data, variant(gate={"margin": 0.5})) == base  # a new gate re-decides, not retrains
    assert fingerprint(data, variant(serving={"batch": {"cron": "0 1 * * *"}})) == base
    assert (
        fingerprint(data, variant(candidates=[{"family": "lightgbm", "search": {"num_leaves": [7]}}])) != base
    )
    assert fingerprint(data, variant(split={"holdout_fraction": 0.3})) != base
    assert fingerprint(TrainingData(data.frame, "somewhere", 4, data.source_versions), product()) != base
