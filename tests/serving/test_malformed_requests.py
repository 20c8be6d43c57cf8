"""Malformed requests get a 4xx naming the field, never a 5xx, and every response (a crash's
500 too) is counted in /metrics. The app runs in this process without its start-up (no model,
no store): validation answers before a handler runs, and a handler that runs fails, as a crash
would."""

import json

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from lakehouse_assets.cli import main
from lakehouse_assets.serving.app import create_app
from lakehouse_assets.settings import LakehouseSettings, ServingSettings
from tests.products import product

TOKEN = "unit-test-token"
ORDER = {"customer_id": 1, "items": [{"product_id": 2, "quantity": 1}], "amount": 10.0, "discount": 0.1}


def _features():
    raise AssertionError("the app is not started in these tests")


@pytest.fixture
def client():
    settings = ServingSettings(token=SecretStr(TOKEN), max_items=5, max_body_bytes=4096)
    app = create_app(settings, [product()], None, _features, engine=None)  # type: ignore[arg-type]
    # no `with`: the lifespan (model, store, log) does not run
    with_auth = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    return TestClient(app, headers=with_auth, raise_server_exceptions=False)


def _raw(order: dict, field: str, literal: str) -> bytes:
    """The order as JSON with ``field`` set to a literal json.dumps would not write."""
    return json.dumps({**order, field: "__X__"}).replace('"__X__"', literal).encode()


@pytest.mark.parametrize(
    ("field", "literal"),
    [
        ("amount", "NaN"),
        ("amount", "Infinity"),
        ("amount", "-Infinity"),
        ("discount", "NaN"),
        ("amount", "1e400"),
        ("customer_id", "1e400"),
        ("customer_id", "123456789012345678901234567890"),
        ("order_id", "-Infinity"),
        ("customer_id", "true"),
        ("customer_id", '"17"'),
        ("amount", '"12.5"'),
        ("amount", "false"),
        ("request_id", '"\\ud800"'),
        ("request_id", '"ok \\udfff"'),
    ],
)
def test_malformed_numbers_types_and_text_get_a_422_naming_the_field(client, field, literal):
    response = client.post("/v1/predict", content=_raw(ORDER, field, literal))
    assert response.status_code == 422, response.text
    problems = response.json()["detail"]
    assert any(field in p["loc"] for p in problems), problems


def test_a_malformed_line_and_a_boolean_quantity_are_named(client):
    line = {"product_id": 2, "quantity": True}
    response = client.post("/v1/predict", json={**ORDER, "items": [line]})
    assert response.status_code == 422
    assert ["body", "items", "0", "quantity"] in [p["loc"] for p in response.json()["detail"]]
    batch = client.post("/v1/predict/batch", content=_raw({"requests": [ORDER]}, "requests", "NaN"))
    assert batch.status_code == 422 and "requests" in batch.text


def test_bytes_that_are_not_utf8_are_a_client_error(client):
    response = client.post("/v1/predict", content=b'{"customer_id": 1, "request_id": "\xff\xfe"}')
    assert 400 <= response.status_code < 500, response.text


def test_too_many_lines_is_413_as_documented(client):
    lines = [{"product_id": p, "quantity": 1} for p in range(1, 7)]
    response = client.post("/v1/predict", json={**ORDER, "items": lines})
    assert response.status_code == 413
    assert "at most 5 (serving.max_items)" in response.text
    batch = client.post("/v1/predict/batch", json={"requests": [{**ORDER, "items": lines}]})
    assert batch.status_code == 413


def test_an_oversized_body_is_413(client):
    response = client.post("/v1/predict", content=json.dumps({**ORDER, "request_id": "x" * 5000}).encode())
    assert response.status_code == 413 and "serving.max_body_bytes" in response.text


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "1e400", '"0.5"', "true"])
def test_the_rollout_body_gets_the_same_treatment(client, literal):
    body = _raw({"mode": "canary", "canary_share": 0.1}, "canary_share", literal)
    response = client.put("/v1/rollout", content=body)
    assert response.status_code == 422, response.text
    assert any("canary_share" in p["loc"] for p in response.json()["detail"])


def test_a_token_that_is_not_ascii_is_refused_not_a_crash(client):
    response = client.post("/v1/predict", json=ORDER, headers={"Authorization": "Bearer tök€n".encode()})
    assert response.status_code == 401


def _requests(client, status: int) -> float:
    """The /metrics count of /v1/predict requests answered with ``status``."""
    client.app.state.service.metrics.requests.labels("/v1/predict", str(status))  # see below
    prefix = f'lakehouse_serving_requests_total{{path="/v1/predict",status="{status}"}} '
    lines = [line for line in client.get("/metrics").text.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


def test_a_request_that_crashes_is_counted_as_a_5xx(client):
    # Counted as differences, the label created first: Feast, imported by the test session
    # before prometheus_client, puts it in multiprocess mode, where same-named counters of the
    # apps of one process share a value (the service's own process imports it first).
    crashes, refusals = _requests(client, 500), _requests(client, 422)
    crashed = client.post("/v1/predict", json=ORDER)  # the handler fails: the app never started
    assert crashed.status_code == 500
    refused = client.post("/v1/predict", content=_raw(ORDER, "amount", "NaN"))
    assert refused.status_code == 422, refused.text
    assert (_requests(client, 500) - crashes, _requests(client, 422) - refusals) == (1.0, 1.0)


def test_an_empty_token_is_refused_at_start(tmp_path):
    with pytest.raises(ValidationError, match="LAKEHOUSE_SERVING__TOKEN is set but empty"):
        ServingSettings(token=SecretStr("  "))
    env = {"LAKEHOUSE_HOME": str(tmp_path), "LAKEHOUSE_SERVING__TOKEN": ""}
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0"], env=env)
    assert result.exit_code != 0
    assert "LAKEHOUSE_SERVING__TOKEN is set but empty" in result.output
    with pytest.raises(ValidationError, match="LAKEHOUSE_NOTEBOOK_TOKEN is set but empty"):
        LakehouseSettings(home=tmp_path, notebook_token=SecretStr(""))
