"""The deployment files parse and hang together; the production dagster.yaml runs against a real
PostgreSQL on 127.0.0.1."""

import re
import shutil
from pathlib import Path
from urllib.parse import urlparse

import psycopg2
import pytest
import yaml
from dagster import DagsterInstance, asset, materialize

from lakehouse_assets.settings import unknown_variables
from tests.postgres_server import postgres_server

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_compose_file_is_a_consistent_stack():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "code-location", "dagster-webserver", "dagster-daemon", "mlflow"} <= set(
        services
    )
    declared_volumes = set(compose["volumes"])
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared_volumes, f"{name} uses undeclared volume {source}"
    build = services["code-location"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    # Every variable the stack needs is in the example environment file.
    needed = set(re.findall(r"\$\{(\w+)", (DEPLOY / "docker-compose.yml").read_text()))
    example = {
        line.split("=")[0]
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert needed <= example, needed - example


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "serving.Dockerfile"])
def test_dockerfiles_run_as_non_root_with_a_dependency_layer_first(dockerfile):
    text = (DEPLOY / dockerfile).read_text()
    assert text.index("COPY pyproject.toml uv.lock") < text.index("COPY lakehouse_assets")
    assert "uv sync --frozen --no-install-project" in text
    assert re.search(r"^USER (?!root)\w+", text, re.MULTILINE)


def test_serving_container_is_read_only_token_protected_and_on_loopback():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    serving = compose["services"]["serving"]
    assert serving["read_only"] is True and "/tmp" in serving["tmpfs"]
    assert serving["environment"]["LAKEHOUSE_SERVING__TOKEN"].startswith("${SERVING_TOKEN:?")
    assert serving["ports"] == ["127.0.0.1:8000:8000"]
    assert serving["build"]["dockerfile"] == "deploy/serving.Dockerfile"
    # Every service reaches the same MLflow server and Feast registry.
    assert serving["environment"]["LAKEHOUSE_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "LAKEHOUSE_FEAST_REGISTRY_URL" in serving["environment"]


def test_helm_values_configure_the_code_location_for_dagsters_chart():
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "lakehouse_assets.definitions"]
    assert deployment["image"]["repository"] and deployment["port"] == 4000
    assert deployment["securityContext"]["runAsNonRoot"] is True
    assert values["dagsterDaemon"]["runRetries"]["enabled"] is True
    assert values["telemetry"]["enabled"] is False


@pytest.mark.integration
def test_production_dagster_yaml_loads_and_stores_runs_in_postgres(tmp_path, monkeypatch):
    with postgres_server() as url:
        conn = psycopg2.connect(url)
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE dagster")
        conn.close()
        parts = urlparse(url)
        for key, value in {
            "DAGSTER_PG_HOST": parts.hostname,
            "DAGSTER_PG_PORT": str(parts.port),
            "DAGSTER_PG_USER": "postgres",
            "DAGSTER_PG_PASSWORD": "unused",
            "DAGSTER_PG_DB": "dagster",
        }.items():
            monkeypatch.setenv(key, value)
        shutil.copy(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
        instance = DagsterInstance.from_config(str(tmp_path))
        try:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
            assert instance.run_retries_enabled and instance.run_retries_max_retries == 2

            @asset
            def tiny() -> int:
                return 1

            run = materialize([tiny], instance=instance)
            assert run.success
            with psycopg2.connect(url.rsplit("/", 1)[0] + "/dagster") as conn:
                cursor = conn.cursor()
                cursor.execute("SELECT COUNT(*) FROM runs WHERE run_id = %s", (run.run_id,))
                assert cursor.fetchone()[0] == 1
        finally:
            instance.dispose()


def test_every_setting_the_deployment_names_exists():
    named = {
        name
        for path in DEPLOY.rglob("*")
        if path.is_file()
        for name in re.findall(r"LAKEHOUSE_[A-Z0-9_]+", path.read_text(errors="ignore"))
    }
    assert {"LAKEHOUSE_ENGINE", "LAKEHOUSE_SERVING__TOKEN"} <= named
    assert unknown_variables(dict.fromkeys(named, "x")) == []
    assert unknown_variables({"LAKEHOUSE_SERVING__TOKNE": "x"}) != []  # the check can fail
