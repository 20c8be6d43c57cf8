import subprocess
import sys

from dagster import AssetKey, Definitions

from lakehouse_assets.definitions import defs
from lakehouse_assets.monitoring.assets import MONITORING_CHECKS
from lakehouse_assets.sources.schema import SOURCE_TABLES


def test_definitions_load_with_bronze_assets_checks_jobs_and_sensor():
    Definitions.validate_loadable(defs)
    keys = {spec.key for spec in defs.resolve_all_asset_specs()}
    expected = {AssetKey(f"bronze_{t.name}") for t in SOURCE_TABLES} | {
        AssetKey("bronze_payments"),
        AssetKey("bronze_landing_quarantine"),
        AssetKey("shop_source_db"),
        AssetKey("landing_payments_files"),
    }
    assert expected <= keys
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    # One lineage graph: source -> bronze -> silver -> dbt staging -> marts.
    assert AssetKey("shop_source_db") in {d.asset_key for d in specs[AssetKey("bronze_orders")].deps}
    assert AssetKey("bronze_orders") in {d.asset_key for d in specs[AssetKey("silver_orders")].deps}
    assert AssetKey("silver_orders") in {d.asset_key for d in specs[AssetKey("stg_orders")].deps}
    assert AssetKey("stg_orders") in {d.asset_key for d in specs[AssetKey("fct_orders")].deps}
    assert AssetKey("customer_daily_features") in {
        d.asset_key for d in specs[AssetKey("feature_registry")].deps
    }
    assert AssetKey("fct_orders") in {d.asset_key for d in specs[AssetKey("return_risk_training_set")].deps}
    assert AssetKey("product_demand_daily") in {
        d.asset_key for d in specs[AssetKey("demand_forecast_training_set")].deps
    }
    # every declared product's assets, grouped under its name, with the gate check on its evaluation
    for name in ("return_risk", "demand_forecast"):
        for stage in ("training_set", "challenger", "evaluation", "champion"):
            assert specs[AssetKey(f"{name}_{stage}")].group_name == name
        assert defs.resolve_job_def(f"{name}_retrain_job")
    assert AssetKey("demand_forecast_batch_scores") in specs  # batch serving declared
    assert AssetKey("return_risk_batch_scores") not in specs  # online only
    assert defs.resolve_schedule_def("demand_forecast_batch_scoring").cron_schedule == "0 6 * * *"
    assert specs[AssetKey("online_features")].group_name == "features"
    for key in ("fct_orders", "customer_daily_features", "product_daily_features"):
        assert specs[AssetKey(key)].group_name == "gold"
        assert "delta" in specs[AssetKey(key)].kinds
    for spec in defs.resolve_all_asset_specs():
        assert spec.group_name and spec.owners and spec.description and spec.kinds, spec.key
    checks = [
        spec for node in defs.get_repository_def().assets_defs_by_key.values() for spec in node.check_specs
    ]
    checks += [
        spec
        for node in defs.get_repository_def().asset_checks_defs_by_key.values()
        for spec in node.check_specs
    ]
    names = {(spec.asset_key.to_user_string(), spec.name) for spec in checks}
    assert ("bronze_payments", "records_reconciled") in names
    assert {("bronze_orders", "no_duplicate_changes"), ("bronze_orders", "all_changes_captured")} <= names
    assert ("silver_orders", "expect_has_customer") in names
    assert ("silver_customers", "events_reconciled") in names
    monitoring = MONITORING_CHECKS
    assert {("feature_drift", "no_dataset_drift"), ("model_quality", "quality_above_floor")} <= names
    # monitoring checks and saved-query alerts are signals, and the promotion gate reports a
    # decision (the champion asset carries it out), not gates; the others block
    assert all(
        spec.blocking
        for spec in checks
        if not spec.name.startswith(("expect_", "alert_"))
        and spec.name not in monitoring
        and "freshness" not in spec.name
        and spec.name != "promotion_gate"
    )
    assert ("query_business_daily_orders", "alert_return_rate_spike") in names
    assert ("customer_erasure", "erased_customers_unreadable") in names
    daily = defs.resolve_job_def("daily_pipeline_job").asset_layer.asset_graph
    assert AssetKey("customer_erasure") in daily.get_all_asset_keys()
    assert AssetKey("inference_log") in {d.asset_key for d in specs[AssetKey("feature_drift")].deps}
    assert defs.resolve_job_def("daily_pipeline_job")
    daily_keys = daily.get_all_asset_keys()
    assert {AssetKey("return_risk_training_set"), AssetKey("demand_forecast_training_set")} <= daily_keys
    assert defs.resolve_sensor_def("landing_payments_sensor")
    assert defs.resolve_job_def("landing_ingest_job")
    assert defs.resolve_schedule_def("bronze_cdc_every_15_minutes")


def test_workspace_validates_with_the_dagster_cli(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "DAGSTER_HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr
