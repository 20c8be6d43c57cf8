"""A notebook as a Dagster asset (dagstermill): exploratory work that became a scheduled,
observed step. Dagster runs the notebook in a fresh kernel with the run's context and resources,
keeps each executed notebook (linked from the materialization) and records what the notebook
reports (``dagstermill.yield_event``)."""

import warnings

from dagster import AssetKey, AutomationCondition, BetaWarning, Field
from dagstermill import define_dagstermill_asset

from lakehouse_assets.metadata import OWNERS
from lakehouse_assets.notebooks.jupyter import EXAMPLES_DIR
from lakehouse_assets.tables import RETURN_DRIVERS_TABLE

with warnings.catch_warnings():  # dagstermill's API is marked beta; we pin its version
    warnings.simplefilter("ignore", BetaWarning)
    return_drivers_report = define_dagstermill_asset(
        name="return_drivers_report",
        notebook_path=str(EXAMPLES_DIR / "04_return_drivers_report.ipynb"),
        group_name="notebooks",
        deps=[AssetKey("fct_orders"), AssetKey("silver_customers")],
        required_resource_keys={"lake"},
        config_schema={
            "window_days": Field(
                int, default_value=30, description=("newest days of orders whose label is known to report on")
            )
        },
        metadata={"table": RETURN_DRIVERS_TABLE},
        description="The notebook 04_return_drivers_report.ipynb, run by Dagster: return rates of "
        "the newest orders with a known label by category, discount band, basket size and segment, "
        "with their lift, written to reports/return_drivers. The executed notebook of each run is "
        "kept and linked.",
    ).map_asset_specs(
        lambda spec: spec.replace_attributes(
            owners=OWNERS,
            kinds={"jupyter", "delta"},
            # due after Monday 06:00 once its inputs updated (automation.notebook_reports_automation)
            automation_condition=AutomationCondition.on_cron("0 6 * * 1"),
        )
    )

NOTEBOOK_ASSETS = [return_drivers_report]
