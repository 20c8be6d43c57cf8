"""The lake: which engine reads and writes the Delta tables, and where they live."""

from __future__ import annotations

from dagster import ConfigurableResource

from lakehouse_assets.engine import DeltaEngine, LakeEngine


class LakeResource(ConfigurableResource):
    """Root of the Delta tables and the engine that writes them: ``embedded`` (delta-rs +
    polars) or ``spark`` (PySpark + delta-spark, session from dagster-pyspark's resource)."""

    root: str
    engine_name: str = "embedded"
    spark_config: dict[str, str] = {}
    cdc_chunk_rows: int = 250_000
    time_travel_retention_hours: int = 168
    gold_dir: str = "gold"  # dbt's DuckDB file and external files

    def engine(self) -> LakeEngine:
        if self.engine_name == "embedded":
            return DeltaEngine(self.root)
        if self.engine_name == "spark":
            return spark_engine(self.root, self.spark_config)
        raise ValueError(f"unknown lake engine {self.engine_name!r}: use 'embedded' or 'spark'")


def spark_engine(root: str, spark_config: dict[str, str]) -> LakeEngine:
    """A Spark engine on the session dagster-pyspark's resource builds from ``spark_config``
    (one session per process: Spark reuses it)."""
    try:
        from dagster_pyspark import PySparkResource

        from lakehouse_assets.engine.spark import SparkEngine
    except ImportError as exc:
        raise RuntimeError(
            "the Spark engine needs the spark extra: `uv sync --extra spark` and "
            "`make spark-jars`"
        ) from exc
    jars = spark_config.get("spark.jars")
    if "spark.master" in spark_config and not jars:
        raise RuntimeError(
            "no Delta Lake jars for Spark: run `make spark-jars` (or point "
            "LAKEHOUSE_SPARK_JARS_DIR at a folder of pre-fetched jars)"
        )
    resource = PySparkResource(spark_config=spark_config)
    resource.setup_for_execution(None)  # type: ignore[arg-type]
    return SparkEngine(resource.spark_session, root)
