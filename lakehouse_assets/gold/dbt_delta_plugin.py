"""dbt-duckdb plugin: read lake Delta tables as dbt sources, write dbt models as Delta tables.

Reading registers ``DeltaTable(...).to_pyarrow_dataset()`` with DuckDB (no DuckDB extension is
downloaded; filters and projections push down). Writing: models materialized ``external`` with
``plugin='lakehouse'`` are first written by dbt-duckdb to a Parquet file; ``store`` then commits
that file's rows to ``<lake_root>/<delta_table>`` as a Delta table version (overwrite), readable by
delta-rs and Spark.

Profile (``plugins:`` of the duckdb target)::

    - module: lakehouse_assets.gold.dbt_delta_plugin
      alias: lakehouse
      config: {lake_root: "..."}
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import SourceConfig, TargetConfig
from deltalake import DeltaTable, write_deltalake

from lakehouse_assets.engine.delta import nullable
from lakehouse_assets.tables import gold_table


class Plugin(BasePlugin):
    """dbt-duckdb plugin: reads silver Delta tables as Arrow datasets and commits external marts as Delta
    tables."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.lake_root = str(plugin_config["lake_root"]).rstrip("/")

    def path(self, table: str) -> str:
        return f"{self.lake_root}/{table}"

    def load(self, source_config: SourceConfig) -> Any:
        table = source_config.get("delta_table")
        if not table:
            raise ValueError(
                f"source {source_config.table_name()} needs meta.delta_table "
                f"(a table path relative to the lake root)"
            )
        return DeltaTable(self.path(table)).to_pyarrow_dataset()

    def default_materialization(self) -> str:
        return "view"

    def store(self, target_config: TargetConfig) -> None:
        if target_config.location is None:
            raise ValueError(
                f"{target_config.relation.identifier}: the lakehouse plugin stores "
                "external materializations only (no location given)"
            )
        data = pq.read_table(target_config.location.path)
        table = target_config.config.get("delta_table") or gold_table(str(target_config.relation.identifier))
        data = data.cast(nullable(data.schema))  # so Spark can read it too
        write_deltalake(
            self.path(table), _without_empty_marker(data), mode="overwrite", schema_mode="overwrite"
        )


def _without_empty_marker(data: pa.Table) -> pa.Table:
    """dbt-duckdb writes one all-NULL row for an empty model (to keep the columns): drop it."""
    if data.num_rows == 1 and all(pc.all(pc.is_null(c)).as_py() for c in data.columns):
        return data.slice(0, 0)
    return data
