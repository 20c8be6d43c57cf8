"""dbt as the platform runs it.

The project as dagster-dbt documents it: a ``DbtProject`` whose manifest is prepared (``dbt
parse``) by ``dagster dev`` on each load, and at build time otherwise (``make install`` and the
deploy image run ``dagster-dbt project prepare-and-package`` on this file).

The profile of a run is rendered from the platform settings (no environment variables): the
DuckDB target of the embedded engine and the Spark target, whose session takes the same Spark
settings as the engine's (``LakehouseSettings.spark_config``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]
from dagster_dbt import DbtCliResource, DbtProject

from lakehouse_assets.settings import DBT_PROJECT_DIR, LakehouseSettings

# The dbt of this environment, whether or not its bin folder is on PATH.
DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
dbt_project.prepare_if_dev()


def prepare_manifest() -> Path:
    """``dbt parse`` into the project's target folder, as the preparer does, with this
    environment's dbt."""
    DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE).cli(
        ["parse", "--quiet"], target_path=dbt_project.target_path
    ).wait()
    return dbt_project.manifest_path


if not dbt_project.manifest_path.exists():  # a fresh checkout that was never prepared
    prepare_manifest()

PROFILE = "lakehouse"  # dbt_project.yml's profile
DUCKDB_FILE = "gold.duckdb"
# Settings only the engine's own session takes: dbt-spark starts its session itself.
ENGINE_ONLY = {"spark.app.name"}


def dbt_profiles(lake_root: str, gold_dir: Path, spark_config: dict[str, str]) -> dict[str, Any]:
    """profiles.yml as a mapping: ``local`` (dbt-duckdb; the marts committed to Delta by the
    project's plugin) and ``spark`` (dbt-spark, session method)."""
    spark = {k: v for k, v in spark_config.items() if k not in ENGINE_ONLY}
    spark.update(
        {  # dbt-spark's own catalog and metastore live in the gold folder
            "spark.sql.warehouse.dir": str(gold_dir / "spark-warehouse"),
            "spark.hadoop.javax.jdo.option.ConnectionURL": (
                f"jdbc:derby:;databaseName={gold_dir / 'metastore_db'};create=true"
            ),
            "spark.driver.extraJavaOptions": f"-Dderby.system.home={gold_dir}",
        }
    )
    return {
        PROFILE: {
            "target": "local",
            "outputs": {
                "local": {
                    "type": "duckdb",
                    "path": str(gold_dir / DUCKDB_FILE),
                    "external_root": str(gold_dir / "external"),
                    "threads": 1,
                    "plugins": [
                        {
                            "module": "lakehouse_assets.gold.dbt_delta_plugin",
                            "alias": "lakehouse",
                            "config": {"lake_root": lake_root},
                        }
                    ],
                },
                "spark": {
                    "type": "spark",
                    "method": "session",
                    "host": "NA",
                    "schema": "gold",
                    "threads": 1,
                    "server_side_parameters": spark,
                },
            },
        }
    }


def write_dbt_profiles(folder: Path, lake_root: str, gold_dir: Path, spark_config: dict[str, str]) -> Path:
    """Write profiles.yml into ``folder`` (the dbt resource's profiles_dir); returns it. The
    file is replaced whole, so a concurrent dbt run never reads half of it."""
    folder.mkdir(parents=True, exist_ok=True)
    (gold_dir / "external").mkdir(parents=True, exist_ok=True)
    path = folder / "profiles.yml"
    partial = path.with_suffix(".yml.writing")
    partial.write_text(yaml.safe_dump(dbt_profiles(lake_root, gold_dir, spark_config), sort_keys=False))
    partial.replace(path)
    return path


def dbt_vars(lake_root: str) -> str:
    """``--vars`` of a run: where the marts' Delta tables live (dbt_project.yml's
    ``location_root``)."""
    return yaml.safe_dump({"lake_root": lake_root}, default_flow_style=True).strip()


def dbt_resource(settings: LakehouseSettings) -> DbtCliResource:
    """The dbt CLI of this environment on the project, with the target of the engine. Runs
    take it with the profile rendered from the settings (``with_run_profile``)."""
    return DbtCliResource(
        project_dir=dbt_project,
        dbt_executable=DBT_EXECUTABLE,
        # The same models: dbt-duckdb for the embedded engine, dbt-spark for Spark.
        target="spark" if settings.engine == "spark" else "local",
    )


def with_run_profile(
    dbt: DbtCliResource, lake_root: str, gold_dir: Path, spark_config: dict[str, str]
) -> DbtCliResource:
    """``dbt`` reading the profile of this lake, rendered into ``<gold_dir>/dbt_profiles``."""
    profiles = write_dbt_profiles(gold_dir / "dbt_profiles", lake_root, gold_dir, spark_config)
    return DbtCliResource(
        project_dir=dbt_project,
        profiles_dir=str(profiles.parent),
        dbt_executable=dbt.dbt_executable,
        target=dbt.target,
    )
