import polars as pl
import pytest

from lakehouse_assets.engine import AppTransaction, DeltaEngine, LakeEngine, MergeClause

pytestmark = pytest.mark.spark


def test_spark_engine_implements_the_protocol(spark_engine):
    assert isinstance(spark_engine, LakeEngine)


def test_append_with_transaction_identifiers_is_idempotent(spark_engine):
    frame = pl.DataFrame({"id": [1, 2], "v": ["a", "b"]})
    spark_engine.append("t", frame, transactions=[AppTransaction("cursor", 5)])
    spark_engine.append("t", frame, transactions=[AppTransaction("cursor", 5)])  # a replay
    assert spark_engine.row_count("t") == 2
    assert spark_engine.app_transaction_version("t", "cursor") == 5
    assert spark_engine.read("t", where_in={"id": [2]})["v"].to_list() == ["b"]
    assert spark_engine.read("t", columns=["v"]).columns == ["v"]
    assert spark_engine.head("t", 1).height == 1
    # An empty append still commits its identifier (a batch with nothing to change).
    spark_engine.append("t", frame.clear(), transactions=[AppTransaction("cursor", 6)])
    assert spark_engine.app_transaction_version("t", "cursor") == 6


def test_merge_clauses_metrics_and_change_feed(spark_engine):
    schema = pl.DataFrame({"id": [1], "v": ["a"], "seq": [1]}).to_arrow().schema
    spark_engine.ensure_table("m", schema, configuration={"delta.enableChangeDataFeed": "true"})
    spark_engine.append("m", pl.DataFrame({"id": [1, 2], "v": ["a", "b"], "seq": [1, 1]}))
    newer = "source.seq > target.seq"
    result = spark_engine.merge(
        "m",
        pl.DataFrame({"id": [1, 2, 3], "v": ["A", "old", "c"], "seq": [2, 0, 1]}),
        keys=["id"],
        transactions=[AppTransaction("apply", 1)],
        clauses=(MergeClause("matched", "update", newer), MergeClause("not_matched", "insert")),
    )
    assert spark_engine.read("m").sort("id").rows() == [(1, "A", 2), (2, "b", 1), (3, "c", 1)]
    assert result.metrics["num_target_rows_inserted"] == 1
    assert result.metrics["num_target_rows_updated"] == 1
    assert spark_engine.app_transaction_version("m", "apply") == 1
    changes, end = spark_engine.changes("m", after_version=1)
    assert end == result.version
    assert set(changes["_change_type"]) == {"insert", "update_preimage", "update_postimage"}


def test_tables_written_by_either_engine_are_read_by_the_other(spark_engine, settings):
    embedded = DeltaEngine(settings.lake_root)
    embedded.append(
        "from_rust",
        pl.DataFrame({"id": [1, 2], "ts": [None, None]}, schema={"id": pl.Int64, "ts": pl.Datetime("us")}),
    )
    assert spark_engine.read("from_rust").sort("id")["id"].to_list() == [1, 2]
    spark_engine.append("from_spark", pl.DataFrame({"id": [3]}), transactions=[AppTransaction("x", 1)])
    assert embedded.read("from_spark")["id"].to_list() == [3]
    assert embedded.app_transaction_version("from_spark", "x") == 1


def test_maintenance_on_spark(spark_engine):
    for i in range(3):
        spark_engine.append("small", pl.DataFrame({"id": [i]}))
    stats = spark_engine.optimize("small", ["id"])
    assert stats["numFilesRemoved"] >= 2
    spark_engine.vacuum("small", 0)
    assert spark_engine.row_count("small") == 3


@pytest.mark.parametrize("kind", ["spark", "embedded"])
def test_ensure_table_adds_the_columns_a_table_lacks(spark_engine, settings, kind):
    engine = spark_engine if kind == "spark" else DeltaEngine(settings.lake_root)
    engine.append("evolving", pl.DataFrame({"id": [1], "v": ["a"]}))
    wider = pl.DataFrame(schema={"id": pl.Int64, "v": pl.String, "added": pl.String})
    before = engine.version("evolving")
    assert engine.ensure_table("evolving", wider.to_arrow().schema) == before + 1
    engine.append("evolving", pl.DataFrame({"id": [2], "v": ["b"], "added": ["x"]}))
    assert engine.read("evolving").sort("id").select("id", "added").rows() == [(1, None), (2, "x")]
    assert engine.ensure_table("evolving", wider.to_arrow().schema) == before + 2  # no change


@pytest.mark.parametrize("kind", ["spark", "embedded"])
def test_delete_opens_an_append_only_table_for_one_commit(spark_engine, settings, kind):
    engine = spark_engine if kind == "spark" else DeltaEngine(settings.lake_root)
    config = {"delta.appendOnly": "true", "delta.enableChangeDataFeed": "true"}
    schema = pl.DataFrame({"id": [1], "name": ["a"]}).to_arrow().schema
    engine.ensure_table("log", schema, configuration=config)
    engine.append("log", pl.DataFrame({"id": [1, 2, 2, 3], "name": ["a", "b", "b'", "O'Hara"]}))
    before = engine.version("log")
    assert engine.delete("log", "id", [2, 9], commit_metadata={"gdpr_erasure": True}) == 2
    assert engine.delete("log", "name", ["O'Hara"]) == 1  # quotes in text are escaped
    assert engine.read("log")["id"].to_list() == [1]
    assert engine.read("log", version=before).height == 4  # time travel until VACUUM
    assert engine.delete("log", "id", []) == 0 and engine.delete("missing", "id", [1]) == 0
    changes, _ = engine.changes("log", before)
    assert sorted(changes.filter(pl.col("_change_type") == "delete")["id"].to_list()) == [2, 2, 3]
    engine.append("log", pl.DataFrame({"id": [4], "name": ["d"]}))  # still appendable...
    with pytest.raises(Exception, match="(?i)append.?only"):  # ...and append-only again
        engine.merge("log", pl.DataFrame({"id": [1], "name": ["z"]}), keys=["id"])


def test_a_spark_connect_master_is_refused_with_the_reason():
    from pydantic import ValidationError

    from lakehouse_assets.settings import LakehouseSettings

    with pytest.raises(ValidationError, match="Spark Connect is not supported.*delta-connect"):
        LakehouseSettings(engine="spark", spark_master="sc://127.0.0.1:15002")
    assert LakehouseSettings(spark_master="spark://127.0.0.1:7077").spark_config()["spark.master"] == (
        "spark://127.0.0.1:7077"
    )
