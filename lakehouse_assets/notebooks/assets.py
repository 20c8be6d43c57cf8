"""A notebook as a Dagster asset (dagstermill): exploratory work that became a scheduled,
observed step. Dagster runs the notebook in a fresh kernel with the run's context and resources,
keeps each executed notebook (linked from the materialization) and records what the notebook
reports (``dagstermill.yield_event``)."""

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    Field,
    ScheduleDefinition,
    define_asset_job,
)
from dagstermill import define_dagstermill_asset

from lakehouse_assets.metadata import OWNERS
from lakehouse_assets.notebooks.jupyter import EXAMPLES_DIR

RETURN_DRIVERS_TABLE = "reports/return_drivers"

return_drivers_report = define_dagstermill_asset(
    name="return_drivers_report",
    notebook_path=str(EXAMPLES_DIR / "04_return_drivers_report.ipynb"),
    group_name="notebooks",
    deps=[AssetKey("fct_orders"), AssetKey("silver_customers")],
    required_resource_keys={"lake"},
    config_schema={"window_days": Field(int, default_value=30, description=(
        "newest days of orders whose label is known to report on"))},
    metadata={"table": RETURN_DRIVERS_TABLE},
    description="The notebook 04_return_drivers_report.ipynb, run by Dagster: return rates of "
    "the newest orders with a known label by category, discount band, basket size and segment, "
    "with their lift, written to reports/return_drivers. The executed notebook of each run is "
    "kept and linked.",
).map_asset_specs(lambda spec: spec.replace_attributes(owners=OWNERS, kinds={"jupyter", "delta"}))

notebook_reports_job = define_asset_job(
    "notebook_reports_job", selection=AssetSelection.groups("notebooks"),
    description="The notebooks that are assets (dagstermill).")
notebook_reports_schedule = ScheduleDefinition(
    name="weekly_notebook_reports", job=notebook_reports_job, cron_schedule="0 6 * * 1",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Every Monday at 06:00: the notebook reports (start it in the UI).")

NOTEBOOK_ASSETS = [return_drivers_report]
