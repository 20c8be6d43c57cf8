"""The alert notifier against a local webhook server, and the sensors' cursors and run keys."""

from datetime import datetime, timedelta

import polars as pl
from dagster import (
    DagsterInstance,
    EnvVar,
    build_run_status_sensor_context,
    build_sensor_context,
    define_asset_job,
)

from lakehouse_assets.automation import (
    label_arrival_sensor,
    retrain_on_degradation,
    source_changes_sensor,
)
from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.monitoring.assets import product_alerts
from lakehouse_assets.resources.monitoring import WEBHOOK_ENV, AlertNotifier, monitoring_resources
from lakehouse_assets.resources.sources import SOURCE_URL_ENV, build_resources
from lakehouse_assets.tables import DRIFT_TABLE, QUALITY_TABLE
from tests.products import product, variant


def test_alerts_reach_the_webhook_and_a_broken_webhook_never_raises(webhook):
    url, received = webhook
    assert AlertNotifier(webhook_url=f"{url}/hook").send("drift", "segment drifted")
    assert received == [{"text": "[error] drift\nsegment drifted"}]
    assert not AlertNotifier(webhook_url=f"{url}/fail").send("x", "y")
    assert not AlertNotifier(webhook_url="http://127.0.0.1:9/nothing", timeout_seconds=1).send("x", "y")
    assert not AlertNotifier().send("x", "no webhook: logged only")


def test_a_product_declaring_its_webhook_alerts_there_and_the_others_through_the_platform(
    webhook, monkeypatch
):
    url, received = webhook
    platform = AlertNotifier(webhook_url=f"{url}/platform")
    growth = variant("return_risk", monitoring={"alert_webhook_env": "GROWTH_ALERTS"})
    monkeypatch.delenv("GROWTH_ALERTS", raising=False)
    assert product_alerts(growth, platform) is platform  # declared but unset: not lost
    monkeypatch.setenv("GROWTH_ALERTS", f"{url}/growth")
    assert product_alerts(growth, platform).webhook_url == f"{url}/growth"
    assert product_alerts(growth, platform).send("return_risk_feature_drift", "segment drifted")
    assert product_alerts(product(), platform) is platform  # declares none
    assert received == [{"text": "[error] return_risk_feature_drift\nsegment drifted"}]


def test_the_webhook_secret_comes_from_the_environment_not_the_config(settings, monkeypatch):
    monkeypatch.setenv(WEBHOOK_ENV, "https://hooks.example/secret-token")
    notifier = monitoring_resources(settings)["alerts"]
    # the resource's config holds the variable's name (what the UI shows), not the URL
    assert isinstance(notifier.webhook_url, EnvVar) and notifier.webhook_url == WEBHOOK_ENV
    assert "secret-token" not in repr(notifier) and "secret-token" not in str(
        monitoring_resources(settings)["monitoring"]
    )
    # the PostgreSQL source URL (with its password) goes the same way
    monkeypatch.setenv(SOURCE_URL_ENV, "postgresql://shop:pg-secret@db/shop")
    source_db = build_resources(settings)["source_db"]
    assert source_db.url == SOURCE_URL_ENV and "pg-secret" not in repr(source_db)


def test_run_failure_sends_an_alert(webhook, settings):
    url, received = webhook
    from dagster import job, op

    @op
    def broken():
        raise RuntimeError("boom in the op")

    @job
    def failing():
        broken()

    instance = DagsterInstance.ephemeral()
    result = failing.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    from lakehouse_assets.automation import run_failure_alert

    context = build_run_status_sensor_context(
        sensor_name="run_failure_alert",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"alerts": AlertNotifier(webhook_url=url)},
    ).for_run_failure()
    run_failure_alert(context)
    assert len(received) == 1 and "run" in received[0]["text"] and "failing" in received[0]["text"]


def drift_rows(at: datetime, drifted: bool) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "computed_at": [at, at],
            "monitor": ["feature_drift"] * 2,
            "column": ["amount", "segment"],
            "dataset_drift": [drifted] * 2,
        }
    )


def test_retrain_sensor_launches_one_run_per_failed_evaluation(settings):
    engine = DeltaEngine(settings.lake_root)
    resources = {"lake": build_resources(settings)["lake"]}
    t0 = datetime(2026, 3, 1)

    def tick(cursor):
        with build_sensor_context(cursor=cursor, resources=resources) as context:
            return retrain_on_degradation(product())(context)

    assert not tick(None).run_requests  # no monitoring table yet
    engine.append(DRIFT_TABLE, drift_rows(t0, drifted=False))
    first = tick(None)
    assert not first.run_requests and first.cursor == str(t0)
    engine.append(DRIFT_TABLE, drift_rows(t0 + timedelta(hours=1), drifted=True))
    engine.append(
        QUALITY_TABLE,
        pl.DataFrame(
            {"computed_at": [t0 + timedelta(hours=2)], "monitor": ["model_quality"], "passed": [False]}
        ),
    )
    second = tick(first.cursor)
    (request,) = second.run_requests
    assert request.run_key == f"retrain:{t0 + timedelta(hours=2)}"
    # the same tick evaluated again (daemon restart) asks for the same run key: launched once
    assert tick(first.cursor).run_requests[0].run_key == request.run_key
    assert not tick(second.cursor).run_requests  # nothing new after the cursor


def test_label_and_source_sensors_keep_cursors(settings, simulator):
    resources = build_resources(settings)
    engine = DeltaEngine(settings.lake_root)
    labels_arrived = label_arrival_sensor(product(), define_asset_job("quality", selection=["model_quality"]))
    labels = pl.DataFrame({"order_id": [1, 2], "label_known_at": [datetime(2026, 1, 5), None]})
    engine.append("gold/fct_orders", labels)
    with build_sensor_context(resources={"lake": resources["lake"]}) as context:
        first = labels_arrived(context)
    assert first.run_requests[0].run_key == "labels:2026-01-05 00:00:00"
    with build_sensor_context(cursor=first.cursor, resources={"lake": resources["lake"]}) as c:
        assert not labels_arrived(c).run_requests

    simulator.run(1)
    with build_sensor_context(resources={"source_db": resources["source_db"]}) as context:
        changes = source_changes_sensor(context)
    assert changes.run_requests[0].run_key.startswith("source:")
    with build_sensor_context(
        cursor=changes.cursor, resources={"source_db": resources["source_db"]}
    ) as context:
        assert not source_changes_sensor(context).run_requests
    simulator.run(1)
    with build_sensor_context(
        cursor=changes.cursor, resources={"source_db": resources["source_db"]}
    ) as context:
        assert source_changes_sensor(context).run_requests
