"""The same simulator input through the embedded engine and through Spark on a standalone cluster
(a master and two workers on 127.0.0.1: bronze and silver on the Spark engine, gold on
dbt-spark) gives identical bronze, silver and gold tables, and each engine reads what the other
wrote."""

import json
import subprocess
import sys

import pytest

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.engine.spark import SparkEngine
from lakehouse_assets.resources.spark_cluster import StandaloneCluster
from lakehouse_assets.runtime import ensure_dirs
from lakehouse_assets.settings import LakehouseSettings
from lakehouse_assets.silver.maintenance import maintained_tables
from lakehouse_assets.sources.simulator import ShopSimulator
from tests.conftest import SMALL_SIMULATION
from tests.lake_compare import stable
from tests.pipeline_run import run_pipeline

pytestmark = pytest.mark.spark

VOLATILE = {"_ingested_at", "_batch_id", "_quarantined_at"}
# Records of the runs rather than data: the bronze versions each batch covered differ between
# engines (Spark commits one transaction identifier per write, so bronze has more versions).
RUN_BOOKKEEPING = {"silver/expectation_results"}


def test_embedded_and_a_spark_cluster_give_identical_bronze_silver_and_gold(tmp_path, spark_session):
    cfg = SMALL_SIMULATION.model_copy(update={"days": 8})
    homes = {}
    for engine in ("embedded", "spark"):
        settings = LakehouseSettings(home=tmp_path / engine, engine=engine, simulator=cfg)
        ensure_dirs(settings)
        ShopSimulator(settings.source_db, settings.landing, cfg).run()
        homes[engine] = settings.lake_root
    run_pipeline(LakehouseSettings(home=tmp_path / "embedded", simulator=cfg))
    cluster = StandaloneCluster(tmp_path / "cluster", workers=2, cores=2, memory="2g")
    with cluster as master:
        conf = json.dumps(cluster.app_conf())
        child = subprocess.run(
            [sys.executable, "-m", "tests.pipeline_run", str(tmp_path / "spark"), master, conf],
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-3000:]
        state = cluster.state()
    apps = {a["name"]: a for a in [*state["completedapps"], *state["activeapps"]]}
    assert "lakehouse" in apps, state  # the engine's session ran on the cluster
    assert len(state["workers"]) == 2 and all(w["state"] == "ALIVE" for w in state["workers"])
    executors = list((tmp_path / "cluster").glob("worker-*/app-*/*"))  # each worker ran executors
    assert {p.parts[-3] for p in executors} == {"worker-0", "worker-1"}, executors
    embedded = DeltaEngine(homes["embedded"])
    spark = SparkEngine(spark_session, homes["spark"])
    compared = 0
    gold = ["gold/fct_orders", "gold/customer_daily_features", "gold/product_daily_features"]
    for table in [*maintained_tables(embedded), *gold]:
        if not embedded.exists(table) or table in RUN_BOOKKEEPING:
            continue
        # Each engine reads the other's table: Delta is the contract.
        written_by_embedded = stable(spark.__class__(spark_session, homes["embedded"]).read(table), VOLATILE)
        written_by_spark = stable(DeltaEngine(homes["spark"]).read(table), VOLATILE)
        assert written_by_spark.equals(written_by_embedded, null_equal=True), table
        compared += 1
    assert compared >= 13
    assert stable(spark.read("silver/orders"), VOLATILE).height > 0
