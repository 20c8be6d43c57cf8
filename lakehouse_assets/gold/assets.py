"""Gold: the dbt project's models as Dagster assets downstream of silver; dbt tests as checks.

dbt-duckdb reads the silver Delta tables through the platform's plugin and writes the marts as
Delta tables under <lake>/gold/ (see ``dbt_delta_plugin.py``).
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, AssetKey, AssetSpec, Output
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from lakehouse_assets.metadata import OWNERS, table_metadata
from lakehouse_assets.resources.dbt import dbt_project, dbt_vars, with_run_profile
from lakehouse_assets.resources.lake import LakeResource


class GoldTranslator(DagsterDbtTranslator):
    """Every dbt model lands in the `gold` group; marts are Delta tables in the lake."""

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: Any) -> AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props.get("resource_type") != "model":
            return spec
        table = props.get("config", {}).get("delta_table")  # set on marts only
        return spec.replace_attributes(
            key=AssetKey(props["name"]),  # model names are unique: no schema prefix
            group_name="gold",
            owners=OWNERS,
            kinds={"dbt", "duckdb", "spark", *({"delta"} if table else set())},
            metadata={**spec.metadata, **({"table": table} if table else {})},
        )


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=GoldTranslator())
def gold_dbt_models(context: AssetExecutionContext, dbt: DbtCliResource, lake: LakeResource):
    # the profile of this run, rendered from the same settings as the lake's
    dbt = with_run_profile(dbt, lake.root, Path(lake.gold_dir), lake.spark_config)
    engine = lake.engine()
    for event in dbt.cli(["build", "--vars", dbt_vars(lake.root)], context=context).stream():
        if isinstance(event, Output):
            spec = context.assets_def.specs_by_key[context.asset_key_for_output(event.output_name)]
            table = spec.metadata.get("table")
            if table and engine.exists(table):  # a mart: add the lake table's metadata
                event = event.with_metadata({**event.metadata, **table_metadata(engine, table)})
        yield event
