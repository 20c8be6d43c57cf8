from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from lakehouse_assets.cli import main
from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.runtime import disable_telemetry, ensure_dirs
from lakehouse_assets.settings import LakehouseSettings, SimulatorSettings
from lakehouse_assets.sources.simulator import ShopSimulator

disable_telemetry()

SMALL_SIMULATION = SimulatorSettings(
    days=20,
    initial_customers=80,
    initial_products=40,
    orders_per_day=25,
    promotion_start_day=5,
    promotion_days=3,
    new_category_day=8,
    customer_mix_shift_day=10,
    gdpr_erasures_per_day=0.5,
    malformed_row_share=0.05,
    malformed_file_share=0.15,
)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LakehouseSettings:
    home = tmp_path / "home"
    monkeypatch.setenv("LAKEHOUSE_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    settings = LakehouseSettings(home=home, simulator=SMALL_SIMULATION)
    ensure_dirs(settings)
    return settings


@pytest.fixture
def simulator(settings: LakehouseSettings) -> ShopSimulator:
    return ShopSimulator(settings.source_db, settings.landing, settings.simulator)


@pytest.fixture
def simulated(simulator: ShopSimulator) -> ShopSimulator:
    simulator.run()
    return simulator


@pytest.fixture
def engine(settings: LakehouseSettings) -> DeltaEngine:
    return DeltaEngine(settings.lake_root)


@pytest.fixture(scope="session")
def spark_session():
    """One Spark session (local[2], real Delta jars) for every Spark test of the run."""
    from lakehouse_assets.resources.connections import build_engine

    config = LakehouseSettings(
        engine="spark", spark_master="local[2]", spark_driver_memory="2g"
    ).spark_config()
    engine = build_engine("unused", "spark", config)
    yield engine.spark  # type: ignore[attr-defined]
    engine.spark.stop()  # type: ignore[attr-defined]


@pytest.fixture
def spark_engine(spark_session, settings):
    from lakehouse_assets.engine.spark import SparkEngine

    return SparkEngine(spark_session, settings.lake_root)


@pytest.fixture
def webhook():
    """A Slack-like webhook on 127.0.0.1 that records what it receives."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(json.loads(body))
            self.send_response(200 if "fail" not in self.path else 500)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()


@dataclass
class DemoHome:
    """A home folder after `lakehouse simulate` and `lakehouse demo` (checkout traffic too)."""

    home: Path
    env: dict[str, str]
    simulated: Result
    demo: Result

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(main, list(args), env=self.env)

    @property
    def settings(self) -> LakehouseSettings:
        return LakehouseSettings(home=self.home)


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> DemoHome:
    """The end-to-end command once per test session, on a small shop with enough days for
    labels to mature (a champion is trained and serves the replayed checkout traffic)."""
    home = tmp_path_factory.mktemp("demo") / "home"
    env = {
        "LAKEHOUSE_HOME": str(home),
        "LAKEHOUSE_SIMULATOR__INITIAL_CUSTOMERS": "60",
        "LAKEHOUSE_SIMULATOR__ORDERS_PER_DAY": "20",
    }
    runner = CliRunner()
    simulated = runner.invoke(main, ["simulate", "--days", "40", "--seed", "3"], env=env)
    demo = runner.invoke(main, ["demo", "--days", "5", "--requests", "260"], env=env)
    return DemoHome(home, env, simulated, demo)
