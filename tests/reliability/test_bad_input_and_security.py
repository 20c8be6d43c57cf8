"""Bad input at every entry point gets a clear error naming the problem; nothing reads outside
its folder; no model is unpickled; secrets stay out of output. Each refused input is counted in
the verification report."""

import mlflow
import pytest
from click.testing import CliRunner
from dagster import materialize
from sklearn.linear_model import LogisticRegression

from lakehouse_assets.bronze.assets import ingest_payments_files
from lakehouse_assets.cli import main
from lakehouse_assets.registry.promotion import UntrustedModelError, require_skops
from lakehouse_assets.resources.mlflow import mlflow_resource
from lakehouse_assets.resources.sources import build_resources
from lakehouse_assets.serving.scoring import AliasedModel
from tests.reliability.report import record

REFUSED: list[str] = []  # inputs refused with a clear error, for the report


def refused(name: str) -> None:
    REFUSED.append(name)
    record("bad_input", {"trials": len(REFUSED), "failed": 0})


@pytest.mark.parametrize("path", ["../source/shop.db", "/etc/passwd", "payments/../../source/shop.db"])
def test_landing_files_outside_the_landing_folder_are_refused(simulated, settings, path):
    result = materialize(
        [ingest_payments_files],
        resources=build_resources(settings),
        raise_on_error=False,
        run_config={"ops": {"ingest_payments_files": {"config": {"files": [path]}}}},
    )
    assert not result.success
    assert f"refused {path}" in str(result.all_events)
    refused(f"landing path {path}")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["features"],
            {"LAKEHOUSE_SERVING__PORT": "abc"},
            "LAKEHOUSE_SERVING__PORT: Input should be a valid integer",
        ),
        (["features"], {"LAKEHOUSE_ENGINE": "oracle"}, "LAKEHOUSE_ENGINE"),
        (
            ["features"],
            {"LAKEHOUSE_SERVING__TOKN": "x"},
            "unknown setting(s) LAKEHOUSE_SERVING__TOKN (did you mean LAKEHOUSE_SERVING__TOKEN",
        ),
        (["features"], {"LAKEHOUSE_ENGNE": "spark"}, "LAKEHOUSE_ENGNE (did you mean LAKEHOUSE_ENGINE"),
        (["simulate", "--days", "0"], {}, "0 is not in the range x>=1"),
        (["demo", "--requests", "-5"], {}, "-5 is not in the range x>=0"),
        (["query", "business_daily_orders", "--param", "days"], {}, "--param takes NAME=VALUE"),
        (["lineage"], {}, "Missing argument 'REQUEST_ID'"),
        (["dashboards", "--host", "0.0.0.0"], {}, "no login"),
        (["ui", "--host", "0.0.0.0"], {}, "no login"),
    ],
)
def test_bad_command_lines_and_settings_are_named(settings, args, env, message):
    result = CliRunner().invoke(main, args, env={"LAKEHOUSE_HOME": str(settings.home_dir), **env})
    assert result.exit_code != 0
    assert message in result.output + str(result.exception or ""), result.output
    assert "Traceback" not in result.output
    refused(" ".join(args))


def test_a_pickled_model_is_never_loaded(settings):
    registry = mlflow_resource(settings)
    registry.activate("return_risk")
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    with mlflow.start_run():
        pickled = mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle")
    version = mlflow.register_model(pickled.model_uri, "return_risk")
    registry.client().set_registered_model_alias("return_risk", "champion", version.version)
    with pytest.raises(UntrustedModelError, match="'cloudpickle'.*skops models only"):
        require_skops(f"models:/return_risk/{version.version}")
    champion = AliasedModel(registry.client(), "return_risk")
    with pytest.raises(UntrustedModelError):
        champion.refresh()
    assert champion.current is None  # nothing was unpickled
    mlflow.set_tracking_uri(None)
    refused("pickled model")
