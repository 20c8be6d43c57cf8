import dataclasses
from datetime import datetime, timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.silver.apply_changes import (
    ApplyChangesSpec,
    Expectation,
    ExpectationFailedError,
    apply_changes,
    bronze_ranges,
)
from lakehouse_assets.sources.cdc import BRONZE_TABLE_CONFIG
from lakehouse_assets.tables import EXPECTATION_RESULTS_TABLE, SILVER_QUARANTINE_TABLE, tombstones_table

T0 = datetime(2026, 1, 1)
BRONZE_SCHEMA = {
    "_seq": pl.Int64,
    "_op": pl.String,
    "_commit_ts": pl.Datetime("us"),
    "k": pl.Int64,
    "a": pl.Int64,
    "b": pl.String,
}
SCD1 = ApplyChangesSpec("t", "bronze/t", keys=("k",), columns=("k", "a", "b"))
SCD2 = ApplyChangesSpec(
    "t", "bronze/t", keys=("k",), columns=("k", "a", "b"), scd_type=2, track_history_columns=("a",)
)


def event(seq, op, k, a=0, b="x"):
    return {"_seq": seq, "_op": op, "_commit_ts": T0 + timedelta(minutes=seq), "k": k, "a": a, "b": b}


def append_bronze(engine, events):
    engine.ensure_table(
        "bronze/t", pl.DataFrame(schema=BRONZE_SCHEMA).to_arrow().schema, configuration=BRONZE_TABLE_CONFIG
    )
    engine.append("bronze/t", pl.DataFrame(events, schema=BRONZE_SCHEMA))


@pytest.fixture(params=["embedded", pytest.param("spark", marks=pytest.mark.spark)])
def lake_engine(request, tmp_path):
    """The embedded engine, then the Spark engine (apply-changes in Spark DataFrames)."""
    if request.param == "embedded":
        return DeltaEngine(str(tmp_path / "lake"))
    from lakehouse_assets.engine.spark import SparkEngine

    return SparkEngine(request.getfixturevalue("spark_session"), str(tmp_path / "lake"))


def apply_batches(engine, spec, batches):
    for batch in batches:
        append_bronze(engine, batch)
        result = apply_changes(engine, spec, batch_id="test")
        assert result.reconciled
    return engine


def scd1_reference(events):
    """Sort every event by sequence, keep the last per key, drop deleted keys."""
    state = {}
    for e in sorted({e["_seq"]: e for e in events}.values(), key=lambda e: e["_seq"]):
        state[e["k"]] = e
    return sorted((k, e["a"], e["b"], e["_seq"]) for k, e in state.items() if e["_op"] != "delete")


def scd2_reference(events, tracked=("a",)):
    """Versions by a plain loop over the events of each key in sequence order."""
    versions = []
    open_version = {}
    for e in sorted({e["_seq"]: e for e in events}.values(), key=lambda e: e["_seq"]):
        current = open_version.get(e["k"])
        if e["_op"] == "delete":
            if current:
                current.update(valid_to=e["_commit_ts"], is_current=False)
                open_version.pop(e["k"])
            continue
        if current and all(current[c] == e[c] for c in tracked):
            current.update(b=e["b"], _last_seq=e["_seq"])  # untracked change: in place
            continue
        if current:
            current.update(valid_to=e["_commit_ts"], is_current=False)
        new = {
            "k": e["k"],
            "a": e["a"],
            "b": e["b"],
            "valid_from": e["_commit_ts"],
            "valid_to": None,
            "is_current": True,
            "_seq": e["_seq"],
            "_last_seq": e["_seq"],
        }
        versions.append(new)
        open_version[e["k"]] = new
    columns = ["k", "a", "b", "valid_from", "valid_to", "is_current", "_seq", "_last_seq"]
    return sorted(tuple(v[c] for c in columns) for v in versions), columns


@st.composite
def cdc_batches(draw):
    """Random events over a few keys, then shuffled, partly duplicated and cut into batches."""
    n = draw(st.integers(1, 40))
    events = [
        event(
            seq,
            draw(st.sampled_from(["insert", "update", "update", "delete"])),
            draw(st.integers(1, 6)),
            draw(st.integers(0, 3)),
            draw(st.sampled_from("xyz")),
        )
        for seq in range(1, n + 1)
    ]
    delivered = draw(st.permutations(events))
    delivered += draw(st.lists(st.sampled_from(events), max_size=8))  # duplicates, any time
    cuts = sorted(draw(st.lists(st.integers(0, len(delivered)), max_size=3)))
    bounds = [0, *cuts, len(delivered)]
    return events, [delivered[i:j] for i, j in zip(bounds, bounds[1:], strict=False) if j > i]


FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(cdc_batches())
def test_scd1_equals_the_sorted_reference_under_shuffles_duplicates_and_late_events(tmp_path_factory, data):
    events, batches = data
    engine = apply_batches(DeltaEngine(str(tmp_path_factory.mktemp("scd1"))), SCD1, batches)
    silver = engine.read("silver/t").select("k", "a", "b", "_seq").sort("k").rows()
    assert silver == scd1_reference(events)


@FUZZ
@given(cdc_batches())
def test_scd2_history_equals_the_sorted_reference(tmp_path_factory, data):
    events, batches = data
    engine = apply_batches(DeltaEngine(str(tmp_path_factory.mktemp("scd2"))), SCD2, batches)
    expected, columns = scd2_reference(events)
    silver = engine.read("silver/t").select(columns).sort("k", "_seq").rows()
    assert sorted(silver) == expected


def test_scd1_cases_by_name(lake_engine):
    engine = apply_batches(
        lake_engine,
        SCD1,
        [
            [
                event(1, "insert", 1, 10),
                event(2, "insert", 2, 20),
                event(3, "update", 1, 11),
                event(3, "update", 1, 11),
                event(4, "update", 1, 12),
            ],  # several changes + duplicate
            [event(6, "delete", 2), event(5, "update", 2, 21)],  # delete, older update after it
            [event(7, "update", 1, 13), event(4, "update", 1, 12)],  # late duplicate of an old event
            [event(8, "update", 2, 22)],  # newer update re-creates key 2
        ],
    )
    assert engine.read("silver/t").sort("k").select("k", "a").rows() == [(1, 13), (2, 22)]


def test_scd2_delete_closes_the_open_version_and_late_event_is_placed_in_history(lake_engine):
    engine = apply_batches(
        lake_engine,
        SCD2,
        [
            [event(1, "insert", 1, a=1), event(5, "update", 1, a=2)],
            [event(3, "update", 1, a=9)],  # late: belongs between 1 and 5
            [event(7, "update", 1, a=2, b="y")],  # untracked change: in place
            [event(9, "delete", 1)],
        ],
    )
    rows = engine.read("silver/t").sort("_seq").select("a", "b", "_seq", "_end_seq", "is_current")
    assert rows.rows() == [(1, "x", 1, 3, False), (9, "x", 3, 5, False), (2, "y", 5, 9, False)]


def test_rerun_changes_nothing_and_only_new_bronze_rows_are_read(lake_engine):
    engine = apply_batches(lake_engine, SCD1, [[event(1, "insert", 1), event(2, "insert", 2)]])
    version = engine.version("silver/t")
    assert apply_changes(engine, SCD1, batch_id="again").events_read == 0
    assert engine.version("silver/t") == version
    append_bronze(engine, [event(3, "update", 1, 5)])
    result = apply_changes(engine, SCD1, batch_id="more")
    assert result.events_read == 1 and result.rows_updated == 1


def with_expectations(*expectations):
    return ApplyChangesSpec("t", "bronze/t", keys=("k",), columns=("k", "a", "b"), expectations=expectations)


def test_expectation_actions_warn_drop_fail(lake_engine):
    engine = lake_engine
    spec = with_expectations(
        Expectation("small_a", "a < 100", "warn"), Expectation("b_is_known", "b IN ('x', 'y')", "drop")
    )
    append_bronze(
        engine,
        [
            event(1, "insert", 1, a=500),
            event(2, "insert", 2, b="bad"),
            event(3, "insert", 3),
            event(4, "insert", 4, b=None),
        ],
    )
    result = apply_changes(engine, spec, batch_id="b1")
    assert result.expectations["small_a"].failed == 1
    assert result.expectations["b_is_known"].failed == 2  # NULL does not meet the predicate
    silver = engine.read("silver/t")
    assert sorted(silver["k"].to_list()) == [1, 3]  # warned row kept, dropped rows not
    quarantine = engine.read(SILVER_QUARANTINE_TABLE)
    assert sorted(quarantine["key"].to_list()) == ["2", "4"]
    assert set(quarantine["expectations"]) == {"b_is_known"}
    assert silver.height + quarantine.height == 4  # rows in = silver + quarantined

    failing = with_expectations(Expectation("a_not_negative", "a >= 0", "fail"))
    version, quarantined = engine.version("silver/t"), engine.row_count(SILVER_QUARANTINE_TABLE)
    append_bronze(engine, [event(5, "insert", 5, a=-1), event(6, "insert", 6)])
    with pytest.raises(ExpectationFailedError, match="a_not_negative.*1 row"):
        apply_changes(engine, failing, batch_id="b2")
    assert engine.version("silver/t") == version  # nothing committed
    assert engine.row_count(SILVER_QUARANTINE_TABLE) == quarantined


def test_crash_after_quarantine_before_merge_is_repaired_without_duplicates(lake_engine, monkeypatch):
    engine = lake_engine
    spec = with_expectations(Expectation("b_is_x", "b = 'x'", "drop"))
    append_bronze(engine, [event(1, "insert", 1), event(2, "insert", 2, b="y")])
    real_merge = type(engine).merge

    def crash(self, table, *args, **kwargs):
        raise OSError("killed before the silver MERGE")

    monkeypatch.setattr(type(engine), "merge", crash)
    with pytest.raises(OSError, match="killed before the silver MERGE"):
        apply_changes(engine, spec, batch_id="b1")
    assert engine.row_count(SILVER_QUARANTINE_TABLE) == 1
    monkeypatch.setattr(type(engine), "merge", real_merge)
    apply_changes(engine, spec, batch_id="b2")
    assert engine.row_count(SILVER_QUARANTINE_TABLE) == 1
    assert engine.read("silver/t")["k"].to_list() == [1]


@pytest.mark.parametrize("spec", [SCD1, SCD2], ids=["scd1", "scd2"])
def test_a_batch_of_only_stale_events_still_moves_the_cursor(lake_engine, spec):
    engine = apply_batches(lake_engine, spec, [[event(5, "insert", 1, 10)]])
    before = engine.read("silver/t").sort("k", "_seq")
    append_bronze(engine, [event(3, "update", 1, 9), event(5, "insert", 1, 10)])  # older + dup
    assert apply_changes(engine, spec, batch_id="stale").events_read == 2
    assert apply_changes(engine, spec, batch_id="rerun").events_read == 0
    if spec.scd_type == 1:  # stale for the current state (SCD2 files the late event in history)
        assert engine.read("silver/t").sort("k", "_seq").equals(before)


CHECKED = (Expectation("b_not_z", "b <> 'z'", "drop"), Expectation("a_small", "a < 3", "warn"))
SPECS = {
    "scd1": dataclasses.replace(SCD1, expectations=CHECKED),
    "scd2": dataclasses.replace(SCD2, expectations=CHECKED),
}


def lake_tables(engine):
    """Every table apply-changes writes, sorted, without the columns that hold the run's time."""
    tables = {}
    for table in ("silver/t", tombstones_table("t"), SILVER_QUARANTINE_TABLE, EXPECTATION_RESULTS_TABLE):
        if engine.exists(table):
            frame = engine.read(table).drop("_quarantined_at", "checked_at", strict=False)
            tables[table] = frame.sort(frame.columns, nulls_last=True)
    return tables


# Bronze commits of 3, 4, 10, 2 and 2 events (versions 1..5; version 0 creates the table), over
# keys 1..6 with updates, deletes, late and duplicated events, and rows the expectations drop.
BACKLOG = [
    [event(1, "insert", 1), event(2, "insert", 2), event(3, "insert", 3, b="z")],
    [event(5, "update", 1, 2), event(4, "delete", 2), event(6, "insert", 4), event(2, "insert", 2)],
    [event(s, "update", 1 + s % 6, a=s % 5, b="xyz"[s % 3]) for s in range(7, 17)],
    [event(17, "delete", 1), event(3, "update", 4, 1)],  # a late update, older than its key's insert
    [event(18, "insert", 1, 9), event(19, "update", 3)],
]


def written_backlog(engine):
    for batch in BACKLOG:
        append_bronze(engine, batch)
    return engine


def test_a_backlog_is_cut_into_ranges_of_at_most_max_events(tmp_path):
    engine = written_backlog(DeltaEngine(str(tmp_path / "lake")))
    assert bronze_ranges(engine, SCD1, 6) == [1, 2, 3, 5]  # the 10-event commit is a range alone
    assert bronze_ranges(engine, SCD1, 100) == [5]
    assert bronze_ranges(engine, SCD1, 6, up_to=2) == [1, 2]
    apply_changes(engine, SCD1, batch_id="first", up_to_bronze_version=2)
    assert bronze_ranges(engine, SCD1, 6) == [3, 5]  # from the cursor on
    apply_changes(engine, SCD1, batch_id="rest")
    assert bronze_ranges(engine, SCD1, 6) == [5]  # nothing new: one empty run


@pytest.mark.parametrize(
    ("lake_engine", "scd"),
    [("embedded", "scd1"), ("embedded", "scd2"), pytest.param("spark", "scd2", marks=pytest.mark.spark)],
    indirect=["lake_engine"],
)
def test_a_backlog_applied_range_by_range_writes_the_tables_of_one_apply(lake_engine, tmp_path, scd):
    spec = SPECS[scd]
    whole = written_backlog(DeltaEngine(str(tmp_path / "whole")))
    once = apply_changes(whole, spec, batch_id="b")
    ranged = apply_changes(written_backlog(lake_engine), spec, batch_id="b", max_events=6)
    assert (ranged.bronze_from, ranged.bronze_to) == (once.bronze_from, once.bronze_to) == (-1, 5)
    # the inserts, updates and supersessions differ: a key can be inserted in one range and
    # updated in the next
    assert (
        (ranged.events_read, ranged.events_quarantined)
        == (once.events_read, once.events_quarantined)
        == (21, 4)
    )
    assert ranged.reconciled
    expected, actual = lake_tables(whole), lake_tables(DeltaEngine(lake_engine.root))
    # one row per expectation per range (4 ranges), with the counts of the single run summed
    results = actual.pop(EXPECTATION_RESULTS_TABLE)
    assert results.height == 4 * len(CHECKED)
    assert results["bronze_to_version"].unique().sort().to_list() == [1, 2, 3, 5]
    totals = (
        results.group_by("expectation").agg(pl.col("rows_checked", "rows_failed").sum()).sort("expectation")
    )
    expected_totals = expected.pop(EXPECTATION_RESULTS_TABLE).sort("expectation").select(totals.columns)
    assert_frame_equal(totals, expected_totals, check_dtypes=False)
    # a range can end between a key's delete and its re-insert: the delete leaves a tombstone
    # that the single run never needed (older than the key's row, so it changes nothing)
    tombstones = actual.pop(tombstones_table("t"), None)
    if tombstones is not None:
        once_tombstones = expected.pop(tombstones_table("t"), tombstones.clear())
        assert once_tombstones.join(tombstones, on=["k", "_seq"], how="anti").height == 0
        newer = tombstones.join(actual["silver/t"], on="k", how="left", suffix="_row")
        extra = newer.join(once_tombstones, on=["k", "_seq"], how="anti")
        assert extra.filter(pl.col("_seq_row").is_null() | (pl.col("_seq_row") < pl.col("_seq"))).height == 0
    assert actual.keys() == expected.keys()
    for table, frame in expected.items():
        assert_frame_equal(actual[table], frame, check_dtypes=False)


def test_a_crash_between_ranges_keeps_the_ranges_done_and_a_rerun_finishes(tmp_path, monkeypatch):
    import lakehouse_assets.silver.apply_changes as module

    spec = SPECS["scd1"]
    whole = written_backlog(DeltaEngine(str(tmp_path / "whole")))
    apply_changes(whole, spec, batch_id="b")
    engine = written_backlog(DeltaEngine(str(tmp_path / "lake")))
    real, calls = module._apply_range, []

    def crash_on_the_third_range(*args):
        calls.append(args[3])
        if len(calls) == 3:
            raise OSError("killed between ranges")
        return real(*args)

    monkeypatch.setattr(module, "_apply_range", crash_on_the_third_range)
    with pytest.raises(OSError, match="killed between ranges"):
        apply_changes(engine, spec, batch_id="b", max_events=6)
    assert engine.app_transaction_version("silver/t", spec.app_id) == 2  # two ranges committed
    monkeypatch.setattr(module, "_apply_range", real)
    rest = apply_changes(engine, spec, batch_id="b", max_events=6)
    assert (rest.bronze_from, rest.bronze_to) == (2, 5)
    assert rest.events_read == 14  # only the ranges not yet applied
    expected, actual = lake_tables(whole), lake_tables(engine)
    for table in ("silver/t", SILVER_QUARANTINE_TABLE):
        assert_frame_equal(actual[table], expected[table], check_dtypes=False)


@pytest.mark.spark
@pytest.mark.parametrize("scd", ["scd1", "scd2"])
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=cdc_batches())
def test_spark_writes_the_same_tables_as_the_embedded_engine(tmp_path_factory, spark_session, scd, data):
    from lakehouse_assets.engine.spark import SparkEngine

    _, batches = data
    spec = SPECS[scd]
    embedded = apply_batches(DeltaEngine(str(tmp_path_factory.mktemp("embedded"))), spec, batches)
    spark = apply_batches(SparkEngine(spark_session, str(tmp_path_factory.mktemp("spark"))), spec, batches)
    expected, actual = lake_tables(embedded), lake_tables(spark)
    assert actual.keys() == expected.keys()
    for table, frame in expected.items():
        assert_frame_equal(actual[table], frame, check_dtypes=False)
