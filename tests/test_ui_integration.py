"""Starts the real Dagster UI (webserver + daemon) with `lakehouse ui` on 127.0.0.1."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from lakehouse_assets.runtime import child_env

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a listening socket on ``port`` (from /proc/net/tcp)."""
    found = set()
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]


def test_ui_serves_the_lineage_graph_checks_and_sensor(settings):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "lakehouse_assets.cli", "ui", "--port", str(port)],
        env=child_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                data = graphql(
                    port,
                    "{ assetNodes { assetKey { path } "
                    "assetChecksOrError { ... on AssetChecks { checks { name } } } } }",
                )
                break
            except OSError:
                assert process.poll() is None, "lakehouse ui exited"
                assert time.monotonic() < deadline, "UI did not start in time"
                time.sleep(1)
        checks = {
            tuple(a["assetKey"]["path"]): {c["name"] for c in a["assetChecksOrError"]["checks"]}
            for a in data["assetNodes"]
        }
        assert checks[("bronze_orders",)] == {"no_duplicate_changes", "all_changes_captured"}
        assert checks[("bronze_payments",)] == {"records_reconciled"}
        assert "expect_has_customer" in checks[("silver_orders",)]
        assert any("unique" in name for name in checks[("fct_orders",)])  # a dbt test
        sensors = graphql(
            port,
            "{ sensorsOrError(repositorySelector: {repositoryLocationName: "
            '"lakehouse", repositoryName: "__repository__"}) '
            "{ ... on Sensors { results { name } } } }",
        )
        assert {
            "landing_payments_sensor",
            "return_risk_retrain_on_degradation",
            "return_risk_label_arrival",
            "source_changes_sensor",
            "run_failure_alert",
            "pipeline_freshness",
        } <= {s["name"] for s in sensors["sensorsOrError"]["results"]}
        # the monitoring assets and their checks, the freshness checks, the schedules
        assert checks[("feature_drift",)] == {"no_dataset_drift"}
        assert checks[("prediction_drift",)] == {"no_prediction_drift"}
        assert checks[("model_quality",)] == {"quality_above_floor"}
        assert checks[("system_health",)] == {"serving_within_objectives"}
        assert any("freshness" in name for name in checks[("return_risk_training_set",)])
        schedules = graphql(
            port,
            "{ schedulesOrError(repositorySelector: "
            '{repositoryLocationName: "lakehouse", repositoryName: '
            '"__repository__"}) { ... on Schedules { results { name } } } }',
        )
        assert {"daily_pipeline", "hourly_monitoring", "lake_maintenance_weekly"} <= {
            s["name"] for s in schedules["schedulesOrError"]["results"]
        }
        assert listening_addresses(port) == {"127.0.0.1"}  # loopback only by default

        # SIGTERM to the command alone (what a service manager sends) stops everything it
        # started: dagster dev, the webserver, the daemon and the code servers
        started = psutil.Process(process.pid).children(recursive=True)
        assert len(started) >= 3, [p.cmdline() for p in started]
        process.send_signal(signal.SIGTERM)
        assert process.wait(90) is not None
        _, alive = psutil.wait_procs(started, timeout=30)
        assert alive == [], [p.cmdline() for p in alive]
        assert listening_addresses(port) == set()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
