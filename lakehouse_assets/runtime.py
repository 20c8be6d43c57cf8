"""What a process does with the settings before it starts work: the local folders, the
environment of the tools it starts (telemetry off, the same home), and the loopback rule of
every service. ``settings.py`` only reads settings; the side effects live here."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from lakehouse_assets.settings import LakehouseSettings

# Environment variables every tool we start reads to turn its telemetry off.
TELEMETRY_OFF_ENV = {
    "DAGSTER_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "SCARF_ANALYTICS": "false",
    "FEAST_USAGE": "False",
    "EVIDENTLY_DISABLE_TELEMETRY": "1",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
}


def disable_telemetry() -> None:
    """Turn every tool's telemetry off for this process and its children (a value the user set
    is kept)."""
    for key, value in TELEMETRY_OFF_ENV.items():
        os.environ.setdefault(key, value)


def ensure_dirs(settings: LakehouseSettings) -> None:
    """Create the local folders and a telemetry-off Dagster instance config."""
    for folder in (settings.home_dir, settings.source_db.parent, settings.landing, settings.dagster_home):
        folder.mkdir(parents=True, exist_ok=True)
    dagster_yaml = settings.dagster_home / "dagster.yaml"
    if not dagster_yaml.exists():
        dagster_yaml.write_text("telemetry:\n  enabled: false\n")


def child_env(settings: LakehouseSettings) -> dict[str, str]:
    """Environment for subprocesses (Dagster UI, tools): same home, telemetry off."""
    env = dict(os.environ)
    env.update(TELEMETRY_OFF_ENV)
    # this environment's tools (dagster, dbt) first, also when it was not activated
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["LAKEHOUSE_HOME"] = str(settings.home_dir)
    env["DAGSTER_HOME"] = str(settings.dagster_home)
    return env


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a service on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_child(command: Sequence[str], env: dict[str, str], *, grace_seconds: float = 30.0) -> int:
    """Run a long-lived tool (``dagster dev``, JupyterLab) as this command's child in its own
    process group, and return its exit code. SIGTERM and SIGINT are forwarded to the whole
    group, and whatever of the group outlives the tool (webserver, daemon, code servers,
    kernels) is stopped too: terminated, then killed after ``grace_seconds``. Nothing is left
    behind when the command is stopped."""
    child = subprocess.Popen(list(command), env=env, start_new_session=True)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        stop_group(child.pid, grace_seconds)


def stop_group(pgid: int, grace_seconds: float) -> None:
    """Terminate every process left in a process group; kill those still there after the
    grace period."""
    for signum, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, signum)
        except ProcessLookupError:
            return  # the group is empty
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
