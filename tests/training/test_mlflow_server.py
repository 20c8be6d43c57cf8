"""`lakehouse mlflow` serves the platform's runs and registry on 127.0.0.1, and the platform
trains and promotes through an MLflow server (the production setting: an http tracking URI)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import mlflow
import numpy as np
import pytest

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.registry.promotion import apply_decision, register_challenger
from lakehouse_assets.resources.mlflow import MlflowResource
from lakehouse_assets.settings import LakehouseSettings
from lakehouse_assets.training.candidates import candidates
from lakehouse_assets.training.dataset import model_input, time_split
from lakehouse_assets.training.evaluation import evaluate
from lakehouse_assets.training.synthetic import synthetic_training_set
from lakehouse_assets.training.train import TrainingData, train_candidate
from tests.products import product

RISK = product()

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def wait_until_up(url: str, process: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stdout.read()}")  # type: ignore[union-attr]
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


def test_train_and_promote_through_the_server_the_ui_shows_it(tmp_path):
    home = tmp_path / "home"
    port = free_port()
    env = {**os.environ, "LAKEHOUSE_HOME": str(home)}
    server = subprocess.Popen(
        [sys.executable, "-m", "lakehouse_assets.cli", "mlflow", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/health", server)
        settings = LakehouseSettings(home=home, mlflow_tracking_uri=base)
        resource = MlflowResource(
            tracking_uri=settings.tracking_uri,
            registry_uri=settings.registry_uri,
            artifact_root=str(home / "unused"),
        )
        resource.activate(RISK.name)
        client = resource.client()
        engine = DeltaEngine(str(home / "lake"))
        data = TrainingData(synthetic_training_set(), str(home / "lake/features/training_set"), 0)
        split = time_split(data.frame, RISK)
        with mlflow.start_run():  # one candidate is enough here; the search is tested elsewhere
            best = train_candidate(candidates(RISK)[0], split, data, RISK)
        register_challenger(
            client,
            engine,
            "return_risk",
            best.model_uri,
            best.run_id,
            {},
            split.window(),
            best.metrics,
            "test",
        )
        evaluation = evaluate(client, RISK, split)
        apply_decision(client, engine, evaluation, split.window(), "test")

        # What the UI reads: the runs of the experiment and the model with its aliases.
        model = get_json(f"{base}/api/2.0/mlflow/registered-models/get?name=return_risk")
        aliases = {a["alias"]: a["version"] for a in model["registered_model"]["aliases"]}
        assert aliases == {"champion": "1"}
        experiment = get_json(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=return_risk")[
            "experiment"
        ]
        runs = mlflow.search_runs([experiment["experiment_id"]])
        runs = runs[runs["run_id"] == best.run_id].reset_index()
        assert best.run_id in set(runs["run_id"])
        assert runs["metrics.roc_auc"][0] == pytest.approx(best.metrics["roc_auc"])
        with urllib.request.urlopen(base, timeout=10) as page:
            assert b"<html" in page.read().lower()
        # Artifacts went through the server (proxied), and the champion loads from it.
        card = mlflow.artifacts.load_text(f"runs:/{best.run_id}/model_card.md")
        assert "Promoted to champion" in card
        champion = mlflow.pyfunc.load_model("models:/return_risk@champion")
        holdout = model_input(split.holdout, RISK)
        assert np.allclose(champion.predict(holdout), best.model.predict_proba(holdout))
    finally:
        mlflow.set_tracking_uri(None)
        os.killpg(server.pid, signal.SIGTERM)  # the server and the workers it started
        server.wait(timeout=20)
