from dagster import AssetKey, DagsterInstance, materialize

from lakehouse_assets.bronze.assets import BRONZE_CDC_ASSETS, ingest_payments_files
from lakehouse_assets.bronze.checks import BRONZE_CDC_CHECKS
from lakehouse_assets.resources.sources import build_resources

ALL = [*BRONZE_CDC_ASSETS, ingest_payments_files, *BRONZE_CDC_CHECKS]


def materialization(result, name):
    mats = result.asset_materializations_for_node(
        "ingest_payments_files" if name in ("bronze_payments", "bronze_landing_quarantine") else name
    )
    (mat,) = [m for m in mats if m.asset_key == AssetKey(name)]
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def test_bronze_assets_materialize_with_metadata_and_passing_checks(simulated, settings):
    resources = build_resources(settings)
    instance = DagsterInstance.ephemeral()
    result = materialize(ALL, resources=resources, instance=instance)
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 2 * len(BRONZE_CDC_ASSETS) + 1
    assert all(c.passed for c in checks), [c.check_name for c in checks if not c.passed]
    orders = materialization(result, "bronze_orders")
    assert orders["dagster/row_count"] == orders["changes_captured"] > 0
    assert orders["delta_version"] == 1  # the empty table created at 0, then one capture commit
    assert orders["path"].endswith("lake/bronze/orders")
    assert "| _seq | _op |" in orders["preview"]
    payments = materialization(result, "bronze_payments")
    assert payments["records_read"] == payments["rows_landed"] + payments["rows_quarantined"]
    assert materialization(result, "bronze_landing_quarantine")["dagster/row_count"] > 0

    # Idempotent: a second run with no new input changes no table.
    again = materialize(ALL, resources=resources, instance=instance)
    assert again.success
    second = materialization(again, "bronze_orders")
    assert second["changes_captured"] == 0
    assert second["dagster/row_count"] == orders["dagster/row_count"]
    assert second["delta_version"] == orders["delta_version"]
    assert materialization(again, "bronze_payments")["files_ingested"] == 0


def test_missing_landing_file_fails_with_its_name(simulated, settings):
    result = materialize(
        [ingest_payments_files],
        resources=build_resources(settings),
        raise_on_error=False,
        run_config={"ops": {"ingest_payments_files": {"config": {"files": ["payments/gone.csv"]}}}},
    )
    assert not result.success
    assert "payments/gone.csv" in str(result.all_events)
