"""`lakehouse monitor-ui` serves the Evidently workspace the monitors write, on 127.0.0.1."""

import os
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import polars as pl

from lakehouse_assets.monitoring.drift import data_drift
from lakehouse_assets.monitoring.monitors import publish, workspace_project
from lakehouse_assets.runtime import child_env
from tests.test_ui_integration import free_port, listening_addresses


def test_monitor_ui_shows_the_monitoring_snapshots(settings):
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"amount": rng.normal(0, 1, 500)})
    result = data_drift(frame, frame.with_columns(pl.col("amount") + 1), ["amount"], [])
    report = publish(
        result.snapshot, settings.home_dir / "monitoring", "feature_drift", "test", "return_risk"
    )
    assert report.exists() and report.stat().st_size > 0
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "lakehouse_assets.cli", "monitor-ui", "--port", str(port)],
        env=child_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                projects = httpx.get(f"http://127.0.0.1:{port}/api/projects", timeout=5).json()
                break
            except httpx.TransportError:
                assert process.poll() is None, "monitor-ui exited"
                assert time.monotonic() < deadline, "monitor-ui did not start"
                time.sleep(0.5)
        (project,) = [p for p in projects if p["name"] == workspace_project("return_risk")]
        runs = httpx.get(f"http://127.0.0.1:{port}/api/projects/{project['id']}/snapshots", timeout=10)
        assert runs.status_code == 200 and len(runs.json()) == 1
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
