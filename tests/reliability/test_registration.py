"""A registration cut short by a crash is finished by the next run, once."""

import mlflow
import pytest
from sklearn.linear_model import LogisticRegression

from lakehouse_assets.registry import promotion
from lakehouse_assets.registry.promotion import (
    CHALLENGER,
    REGISTERED_TAG,
    alias_version,
    finish_registration,
    register_challenger,
)
from lakehouse_assets.resources.mlflow import mlflow_resource
from lakehouse_assets.tables import ALIAS_HISTORY_TABLE


def test_a_pending_registration_is_finished_once(settings, engine, monkeypatch):
    registry = mlflow_resource(settings)
    registry.activate("return_risk")
    client = registry.client()
    with mlflow.start_run() as run:
        logged = mlflow.sklearn.log_model(
            LogisticRegression().fit([[0.0], [1.0]], [0, 1]), name="model", serialization_format="skops"
        )

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed after the version was created")

    monkeypatch.setattr(promotion, "_complete", crash)
    with pytest.raises(KeyboardInterrupt):
        register_challenger(
            client,
            engine,
            "return_risk",
            logged.model_uri,
            run.info.run_id,
            {"fingerprint": "f1"},
            {"train_from": "a"},
            {"roc_auc": 0.7},
            "test",
        )
    monkeypatch.undo()
    (version,) = client.search_model_versions("name = 'return_risk'")
    assert (
        version.tags[REGISTERED_TAG] == "pending" and alias_version(client, "return_risk", CHALLENGER) is None
    )

    assert finish_registration(client, engine, version, "next run")
    finished = client.get_model_version("return_risk", version.version)
    assert finished.tags[REGISTERED_TAG] == "complete"
    assert alias_version(client, "return_risk", CHALLENGER).version == version.version
    assert not finish_registration(client, engine, finished, "again")  # nothing left to do
    history = engine.read(ALIAS_HISTORY_TABLE)
    assert history.select("alias", "to_version").rows() == [(CHALLENGER, 1)]
    assert "model_card.md" in [a.path for a in client.list_artifacts(version.run_id)]
    mlflow.set_tracking_uri(None)
