"""A real scoring service on 127.0.0.1 over a filled online store and a registered champion."""

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import pytest

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.features.pipeline import materialize_online
from lakehouse_assets.features.store import feature_store
from lakehouse_assets.registry.promotion import apply_decision, register_challenger
from lakehouse_assets.resources.mlflow import mlflow_resource
from lakehouse_assets.runtime import ensure_dirs
from lakehouse_assets.settings import LakehouseSettings
from lakehouse_assets.training.candidates import candidates
from lakehouse_assets.training.dataset import time_split
from lakehouse_assets.training.evaluation import evaluate
from lakehouse_assets.training.synthetic import synthetic_training_set
from lakehouse_assets.training.train import TrainingData, train_candidate
from tests.features.gold_fixture import write_gold_features
from tests.products import product

RISK = product()

TOKEN = "test-token-123"


@dataclass
class Service:
    url: str
    home: Path
    settings: LakehouseSettings
    process: subprocess.Popen
    env: dict

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def stop(self) -> str:
        """SIGTERM (what a container stop sends) and wait: the app flushes its log."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)
        return self.process.stdout.read()  # type: ignore[union-attr]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_synthetic(settings: LakehouseSettings, candidate: int, seed: int = 3):
    """One candidate (index into the search grid) trained and logged on the synthetic training
    set, in the home's MLflow (left active: callers register it, then reset the URI)."""
    mlflow_resource(settings).activate(RISK.name)
    frame = synthetic_training_set(seed=seed)
    split = time_split(frame, RISK)
    with mlflow.start_run():
        run = train_candidate(candidates(RISK)[candidate], split, TrainingData(frame, "synthetic", 0), RISK)
    return run, split


def prepare_home(home: Path, entities: int = 30) -> LakehouseSettings:
    """Gold feature tables (``entities`` customers and products), a filled online store and a
    champion model."""
    settings = LakehouseSettings(home=home)
    ensure_dirs(settings)
    store, definitions = feature_store(settings)
    write_gold_features(settings.lake_root, definitions, entities=entities)
    store.apply(definitions.all())
    engine = DeltaEngine(settings.lake_root)
    materialize_online(store, engine, definitions)
    registry = mlflow_resource(settings)
    run, split = train_synthetic(settings, candidate=0)
    client = registry.client()
    register_challenger(
        client, engine, "return_risk", run.model_uri, run.run_id, {}, split.window(), run.metrics, "test"
    )
    apply_decision(client, engine, evaluate(client, RISK, split), split.window(), "test")
    mlflow.set_tracking_uri(None)
    return settings


def start_service(home: Path, extra_env: dict[str, str] | None = None, host: str = "127.0.0.1") -> Service:
    port = free_port()
    env = {
        **os.environ,
        "LAKEHOUSE_HOME": str(home),
        "LAKEHOUSE_SERVING__TOKEN": TOKEN,
        "LAKEHOUSE_SERVING__RELOAD_SECONDS": "3600",
        **(extra_env or {}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "lakehouse_assets.cli", "serve", "--host", host, "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(process.stdout.read())  # type: ignore[union-attr]
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return Service(url, home, LakehouseSettings(home=home), process, env)
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise TimeoutError("service did not become ready")


@pytest.fixture(scope="module")
def service_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("serving") / "home"
    prepare_home(home)
    return home


@pytest.fixture(scope="module")
def service(service_home):
    running = start_service(service_home)
    yield running
    running.stop()
