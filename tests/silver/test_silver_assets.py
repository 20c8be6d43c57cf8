import polars as pl
from dagster import DagsterInstance, materialize

from lakehouse_assets.automation import lake_maintenance_job
from lakehouse_assets.bronze.assets import BRONZE_CDC_ASSETS
from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.resources.sources import build_resources
from lakehouse_assets.silver.assets import SILVER_ASSETS
from lakehouse_assets.silver.maintenance import maintained_tables
from lakehouse_assets.sources.schema import SOURCE_TABLES_BY_NAME
from tests.sources.test_cdc import source_rows


def test_silver_matches_the_source_after_several_incremental_runs(simulated, settings):
    resources = build_resources(settings)
    instance = DagsterInstance.ephemeral()
    for days in (0, 4, 3):
        if days:
            simulated.run(days)
        result = materialize([*BRONZE_CDC_ASSETS, *SILVER_ASSETS], resources=resources, instance=instance)
        assert result.success
        failed = [c.check_name for c in result.get_asset_check_evaluations() if not c.passed]
        assert failed == []
    engine = DeltaEngine(settings.lake_root)
    for name in ("orders", "order_items", "products", "returns"):
        table = SOURCE_TABLES_BY_NAME[name]
        silver = engine.read(f"silver/{name}").select(table.column_names).sort(table.key)
        assert silver.equals(source_rows(simulated.db_path, table), null_equal=True), name
    customers = SOURCE_TABLES_BY_NAME["customers"]
    current = (
        engine.read("silver/customers")
        .filter("is_current")
        .select(customers.column_names)
        .sort("customer_id")
    )
    assert current.equals(source_rows(simulated.db_path, customers), null_equal=True)
    history = engine.read("silver/customers")
    assert history.filter(~pl.col("is_current")).height > 0  # address changes and erasures
    assert history.group_by("customer_id").agg(pl.col("is_current").sum())["is_current"].max() == 1

    # Re-running with no new bronze rows changes no silver table.
    versions = {n: engine.version(f"silver/{n}") for n in SOURCE_TABLES_BY_NAME}
    assert materialize(SILVER_ASSETS, resources=resources, instance=instance).success
    assert versions == {n: engine.version(f"silver/{n}") for n in SOURCE_TABLES_BY_NAME}

    # Maintenance compacts and vacuums without changing any table's rows.
    counts = {t: engine.row_count(t) for t in maintained_tables(engine)}
    assert "silver/orders" in counts and "bronze/orders" in counts
    assert lake_maintenance_job.execute_in_process(resources=resources, instance=instance).success
    assert counts == {t: engine.row_count(t) for t in counts}
    assert engine.history("silver/orders")[0]["operation"] == "OPTIMIZE"
