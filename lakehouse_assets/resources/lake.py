"""The lake: which engine reads and writes the Delta tables, and where they live."""

from __future__ import annotations

from dagster import ConfigurableResource

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.resources.connections import build_engine


class LakeResource(ConfigurableResource):
    """Root of the Delta tables and the engine that writes them: ``embedded`` (delta-rs +
    polars) or ``spark`` (PySpark + delta-spark, session from dagster-pyspark's resource)."""

    root: str
    engine_name: str = "embedded"
    spark_config: dict[str, str] = {}
    cdc_chunk_rows: int = 250_000
    silver_max_events_per_apply: int = 10_000_000  # 0: a backlog at once
    training_set_max_rows: int = 2_000_000  # embedded; 0: all at once
    time_travel_retention_hours: int = 168
    gold_dir: str = "gold"  # dbt's DuckDB file and external files

    def engine(self) -> LakeEngine:
        """The engine of this lake (one Spark session per process on the Spark engine)."""
        return build_engine(self.root, self.engine_name, self.spark_config)
