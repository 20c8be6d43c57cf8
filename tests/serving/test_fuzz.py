"""Fuzzing the scoring API from its own OpenAPI schema: no input gives a server error."""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.reliability.report import record
from tests.serving.conftest import TOKEN, start_service

# `make verify` raises it for the full run
EXAMPLES = int(os.environ.get("LAKEHOUSE_TEST_VERIFY_FUZZ_EXAMPLES", "40"))

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fuzzed_service(service_home):
    running = start_service(service_home)
    yield running
    running.stop()


def test_no_input_gives_a_server_error(fuzzed_service):
    schema = schemathesis.openapi.from_url(f"{fuzzed_service.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/predict", "/v1/predict/batch"}
    seen = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def no_server_error(case) -> None:
            response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
            seen.append(response.status_code)
            assert response.status_code < 500, (case.path, case.body, response.text)

        try:
            no_server_error()
        finally:
            record(
                "api_fuzz",
                {
                    "trials": len(seen),
                    "requests": len(seen),
                    "server_errors": sum(code >= 500 for code in seen),
                },
            )
    assert len(seen) >= EXAMPLES * 2  # the scoring operations got their examples
