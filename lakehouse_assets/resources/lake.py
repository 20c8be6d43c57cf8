"""The lake: which engine reads and writes the Delta tables, and where they live."""

from __future__ import annotations

from dagster import ConfigurableResource

from lakehouse_assets.engine import DeltaEngine, LakeEngine


class LakeResource(ConfigurableResource):
    """Root of the Delta tables and the engine that writes them (``embedded`` = delta-rs)."""

    root: str
    engine_name: str = "embedded"
    cdc_chunk_rows: int = 250_000
    time_travel_retention_hours: int = 168
    gold_dir: str = "gold"  # dbt's DuckDB file and external files

    def engine(self) -> LakeEngine:
        if self.engine_name == "embedded":
            return DeltaEngine(self.root)
        raise ValueError(
            f"lake engine {self.engine_name!r} is not available in this version: "
            "set LAKEHOUSE_ENGINE=embedded (the Spark engine is a separate install, see README)"
        )
