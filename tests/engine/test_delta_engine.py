import polars as pl
import pytest

from lakehouse_assets.engine import AppTransaction, ConcurrentWriteError, DeltaEngine, LakeEngine
from lakehouse_assets.engine.base import TableNotFoundError


def test_engine_implements_protocol(tmp_path):
    assert isinstance(DeltaEngine(str(tmp_path)), LakeEngine)


def test_append_read_version_history_and_row_count(tmp_path):
    engine = DeltaEngine(str(tmp_path))
    assert engine.version("t") is None
    assert engine.row_count("t") == 0
    first = engine.append("t", pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}))
    second = engine.append("t", pl.DataFrame({"id": [3], "v": ["c"]}))
    assert (first.version, second.version) == (0, 1)
    assert engine.row_count("t") == 3
    assert engine.read("t").sort("id")["id"].to_list() == [1, 2, 3]
    assert engine.read("t", version=0).height == 2  # time travel
    assert engine.read("t", columns=["v"]).columns == ["v"]
    assert [h["version"] for h in engine.history("t")] == [1, 0]
    assert engine.head("t", 1).height == 1


def test_reading_a_missing_table_names_it(tmp_path):
    with pytest.raises(TableNotFoundError, match="missing"):
        DeltaEngine(str(tmp_path)).read("missing")


def test_transaction_identifiers_commit_with_the_data(tmp_path):
    engine = DeltaEngine(str(tmp_path))
    engine.append("t", pl.DataFrame({"id": [1]}), transactions=[AppTransaction("cursor", 7)])
    assert engine.app_transaction_version("t", "cursor") == 7
    assert engine.app_transaction_version("t", "other") is None
    # An empty append still commits the identifier (a file with no valid rows is still done).
    engine.append("t", pl.DataFrame(schema={"id": pl.Int64}), transactions=[AppTransaction("cursor", 9)])
    assert engine.app_transaction_version("t", "cursor") == 9
    assert engine.app_transaction_version("t", "cursor", at_version=0) == 7
    assert engine.row_count("t") == 1


def test_concurrent_commit_of_same_identifier_is_refused_not_duplicated(tmp_path):
    engine = DeltaEngine(str(tmp_path))
    engine.append("t", pl.DataFrame({"id": [0]}))
    read_version = engine.version("t")
    # Another writer consumes the same input first.
    engine.append(
        "t", pl.DataFrame({"id": [1]}), transactions=[AppTransaction("cdc", 1)], read_version=read_version
    )
    with pytest.raises(ConcurrentWriteError, match="nothing was written"):
        engine.append(
            "t", pl.DataFrame({"id": [1]}), transactions=[AppTransaction("cdc", 1)], read_version=read_version
        )
    assert engine.read("t")["id"].to_list().count(1) == 1
    # An unrelated concurrent append does not conflict.
    engine.append(
        "t", pl.DataFrame({"id": [2]}), transactions=[AppTransaction("other", 1)], read_version=read_version
    )
    assert engine.row_count("t") == 3


def test_merge_upserts_on_keys(tmp_path):
    engine = DeltaEngine(str(tmp_path))
    engine.merge("t", pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}), keys=["id"])
    engine.merge("t", pl.DataFrame({"id": [2, 3], "v": ["B", "c"]}), keys=["id"])
    assert engine.read("t").sort("id").rows() == [(1, "a"), (2, "B"), (3, "c")]
    assert engine.history("t")[0]["operation"] == "MERGE"


def test_tables_schema_stats_and_datasets_come_from_the_lake_itself(tmp_path):
    engine = DeltaEngine(str(tmp_path))
    assert engine.tables() == []  # an empty (or missing) lake
    for table in ("silver/orders", "silver/_tombstones/orders", "gold/fct_orders"):
        engine.append(table, pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}))
    engine.append("silver/orders", pl.DataFrame({"id": [3], "v": ["c"]}))
    (tmp_path / "silver" / ".hidden").mkdir()
    (tmp_path / "notes").mkdir()  # a folder that is not a table
    assert engine.tables() == ["gold/fct_orders", "silver/_tombstones/orders", "silver/orders"]
    assert engine.schema("silver/orders").names == ["id", "v"]
    stats = engine.stats("silver/orders")
    assert (stats.delta_version, stats.rows, stats.files) == (1, 3, 2) and stats.size_bytes > 0
    assert engine.dataset("silver/orders", version=0).to_table().num_rows == 2
    with pytest.raises(TableNotFoundError, match="nope"):
        engine.stats("silver/nope")


def test_change_files_of_marked_commits_are_listed_and_removed(tmp_path):
    engine = DeltaEngine(str(tmp_path))
    config = {"delta.enableChangeDataFeed": "true"}
    engine.append("t", pl.DataFrame({"id": [1, 2, 3]}), configuration=config)
    engine.delete("t", "id", [2], commit_metadata={"gdpr_erasure": True})
    engine.delete("t", "id", [3], commit_metadata={"other": True})
    marked = engine.remove_change_files("t", "gdpr_erasure", dry_run=True)
    assert len(marked) == 1 and (tmp_path / "t" / marked[0]).exists()
    assert engine.remove_change_files("t", "gdpr_erasure") == marked
    assert not (tmp_path / "t" / marked[0]).exists()
    assert engine.remove_change_files("t", "gdpr_erasure", dry_run=True) == []
    assert len(engine.remove_change_files("t", "other", dry_run=True)) == 1  # left alone


def test_the_kept_table_state_sees_other_writers_and_a_recreated_table(tmp_path):
    """The engine keeps each table's latest state between calls (reading only new commits): a
    commit by another engine or thread is seen at once, and a table deleted and created again
    at the same path is read afresh, not from the old log."""
    import shutil
    import threading

    ours, other = DeltaEngine(str(tmp_path)), DeltaEngine(str(tmp_path))
    ours.append("bronze/t", pl.DataFrame({"a": [1]}))
    assert ours.version("bronze/t") == 0 and ours.read("bronze/t")["a"].to_list() == [1]
    other.append("bronze/t", pl.DataFrame({"a": [2]}))
    writer = threading.Thread(target=lambda: other.append("bronze/t", pl.DataFrame({"a": [3]})))
    writer.start()
    writer.join()
    assert ours.version("bronze/t") == 2
    assert sorted(ours.read("bronze/t")["a"].to_list()) == [1, 2, 3]
    assert ours.read("bronze/t", version=0)["a"].to_list() == [1]  # a past version still reads
    shutil.rmtree(tmp_path / "bronze" / "t")
    ours_again = DeltaEngine(str(tmp_path))
    ours_again.append("bronze/t", pl.DataFrame({"a": [9]}))
    assert ours.version("bronze/t") == 0 and ours.read("bronze/t")["a"].to_list() == [9]
