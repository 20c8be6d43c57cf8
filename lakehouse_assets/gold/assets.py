"""Gold: the dbt project's models as Dagster assets downstream of silver; dbt tests as checks.

dbt-duckdb reads the silver Delta tables through the platform's plugin and writes the marts as
Delta tables under <lake>/gold/ (see ``dbt_delta_plugin.py``).
"""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, AssetKey, AssetSpec, Output
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets
from dbt.cli.main import dbtRunner

from lakehouse_assets.metadata import OWNERS, table_metadata
from lakehouse_assets.resources import LakeResource
from lakehouse_assets.resources.sources import DBT_PROJECT_DIR
from lakehouse_assets.settings import TELEMETRY_OFF_ENV, export_dbt_env

MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"


def _newest_source_mtime() -> float:
    files = [p for folder in ("models", "macros", "tests") for p in (DBT_PROJECT_DIR / folder).rglob("*")
             if p.is_file()]
    return max(p.stat().st_mtime for p in [*files, DBT_PROJECT_DIR / "dbt_project.yml"])


def ensure_manifest() -> Path:
    """Parse the dbt project when its manifest is missing or older than a model, macro or test."""
    if MANIFEST.exists() and MANIFEST.stat().st_mtime >= _newest_source_mtime():
        return MANIFEST
    os.environ.update(TELEMETRY_OFF_ENV)
    result = dbtRunner().invoke(["parse", "--quiet", "--project-dir", str(DBT_PROJECT_DIR),
                                 "--profiles-dir", str(DBT_PROJECT_DIR)])
    if not result.success:
        raise RuntimeError(f"dbt parse failed for {DBT_PROJECT_DIR}: {result.exception}")
    return MANIFEST


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


@dbt_assets(manifest=ensure_manifest(), dagster_dbt_translator=GoldTranslator())
def gold_dbt_models(context: AssetExecutionContext, dbt: DbtCliResource, lake: LakeResource):
    export_dbt_env(lake.root, lake.gold_dir, lake.spark_config)
    engine = lake.engine()
    for event in dbt.cli(["build"], context=context).stream():
        if isinstance(event, Output):
            spec = context.assets_def.specs_by_key[context.asset_key_for_output(event.output_name)]
            table = spec.metadata.get("table")
            if table and engine.exists(table):  # a mart: add the lake table's metadata
                event = event.with_metadata({**event.metadata, **table_metadata(engine, table)})
        yield event
