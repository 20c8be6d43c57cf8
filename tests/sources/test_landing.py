import io
import json

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.sources.landing import (
    PAYMENTS,
    ingest_files,
    is_ingested,
    list_landing_files,
    parse_landing_file,
    reconcile_files,
)
from lakehouse_assets.tables import LANDING_QUARANTINE_TABLE

GOOD = {"payment_id": "p1", "order_id": 1, "amount": 10.5, "method": "card", "paid_at": "2026-01-01 10:00:00"}
HEADER = "payment_id,order_id,amount,method,paid_at\n"


@pytest.fixture
def landing(tmp_path):
    folder = tmp_path / "landing"
    (folder / "payments").mkdir(parents=True)
    return folder


def write(landing, name, data: bytes | str):
    path = landing / "payments" / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def parse(landing, path):
    return parse_landing_file(path, path.relative_to(landing).as_posix(), PAYMENTS)


def reasons(parsed) -> dict[int | None, str]:
    return dict(
        zip(parsed.quarantine["row_number"].to_list(), parsed.quarantine["reason"].to_list(), strict=True)
    )


def test_csv_bad_types_missing_keys_and_truncation_are_quarantined_with_reasons(landing):
    path = write(
        landing,
        "a.csv",
        HEADER
        + "p1,1,10.5,card,2026-01-01 10:00:00\n"
        + "p2,ORD-??,3.0,card,2026-01-01 10:00:00\n"
        + ",3,twelve euros,card,yesterday\n"
        + "p4,4,1.0,card,2026-01-01 10:00:00\n"
        + "p5,5,7.2",
    )
    parsed = parse(landing, path)
    assert parsed.rows_read == 5
    assert parsed.valid["payment_id"].to_list() == ["p1", "p4"]
    assert parsed.valid.schema["amount"] == pl.Float64
    assert parsed.valid.schema["paid_at"] == pl.Datetime("us")
    why = reasons(parsed)
    assert why[2] == "order_id: expected an integer, got 'ORD-??'"
    assert "missing key payment_id" in why[3] and "amount: expected a number" in why[3]
    assert "paid_at: expected a timestamp" in why[3]
    assert "truncated record" in why[5]
    raw = json.loads(parsed.quarantine.filter(pl.col("row_number") == 2)["raw"][0])
    assert raw["order_id"] == "ORD-??"


def test_jsonl_invalid_lines_are_quarantined_and_the_rest_land(landing):
    lines = [
        json.dumps(GOOD),
        '{"payment_id": "p2", "order_id": 2, "amo',
        json.dumps({**GOOD, "payment_id": "p3", "order_id": None}),
        "[1, 2]",
        json.dumps({**GOOD, "x": 1}),
    ]
    parsed = parse(landing, write(landing, "b.jsonl", "\n".join(lines) + "\n"))
    assert parsed.rows_read == 5
    assert parsed.valid.height == 2
    why = reasons(parsed)
    assert why[2].startswith("invalid JSON") and why[4].startswith("invalid JSON")
    assert why[3] == "missing key order_id"
    # An unknown column is kept, not silently dropped.
    assert json.loads(parsed.valid.filter(pl.col("_row_number") == 5)["_extra_columns"][0]) == {"x": "1"}


def test_truncated_parquet_is_quarantined_as_a_whole_file(landing):
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([GOOD] * 50), sink)
    parsed = parse(landing, write(landing, "c.parquet", sink.getvalue()[:300]))
    assert parsed.valid.height == 0
    assert parsed.quarantine.height == parsed.rows_read == 1
    assert parsed.quarantine["row_number"][0] is None
    assert parsed.quarantine["reason"][0].startswith("unreadable parquet file")


def test_unsupported_and_headerless_files_are_quarantined_not_dropped(landing):
    assert reasons(parse(landing, write(landing, "d.xlsx", b"PK")))[None].startswith("unsupported")
    parsed = parse(landing, write(landing, "e.csv", "id,amount\n1,2\n3,4\n"))
    assert parsed.rows_read == parsed.quarantine.height == 2
    assert "no column(s) payment_id, order_id, method, paid_at" in parsed.quarantine["reason"][0]


def test_typed_parquet_lands_without_conversion_loss(landing):
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([GOOD, {**GOOD, "payment_id": "p2", "amount": 0.1}]), sink)
    parsed = parse(landing, write(landing, "f.parquet", sink.getvalue()))
    assert parsed.valid["amount"].to_list() == [10.5, 0.1]


def test_ingestion_is_exactly_once_and_keeps_the_files(simulated, engine, settings):
    landing = settings.landing
    files = [f.path for f in list_landing_files(landing, PAYMENTS)]
    before = {p: p.read_bytes() for p in files}
    first = ingest_files(engine, landing, PAYMENTS, files, batch_id="1")
    assert first.files_ingested == len(files) > 0
    assert first.rows_read == first.rows_landed + first.rows_quarantined
    assert first.rows_quarantined > 0 and first.rows_landed > 0
    assert engine.row_count(PAYMENTS.table) == first.rows_landed
    assert engine.row_count(LANDING_QUARANTINE_TABLE) == first.rows_quarantined
    assert reconcile_files(engine, PAYMENTS, first.rows_read_by_file) == {}
    versions = (engine.version(PAYMENTS.table), engine.version(LANDING_QUARANTINE_TABLE))
    second = ingest_files(engine, landing, PAYMENTS, files + files[:2], batch_id="2")
    assert second.files_skipped == len(files) + 2 and second.rows_read == 0
    assert versions == (engine.version(PAYMENTS.table), engine.version(LANDING_QUARANTINE_TABLE))
    assert all(is_ingested(engine, PAYMENTS, landing, p) for p in files)
    assert before == {p: p.read_bytes() for p in files}  # originals untouched
    ids = engine.read(PAYMENTS.table, columns=["payment_id"])["payment_id"]
    assert ids.n_unique() == ids.len()


def test_a_rewritten_file_is_ingested_as_a_new_version(landing, tmp_path):
    engine = DeltaEngine(str(tmp_path / "lake"))
    path = write(landing, "g.csv", HEADER + "p1,1,10.5,card,2026-01-01 10:00:00\n")
    ingest_files(engine, landing, PAYMENTS, [path], batch_id="1")
    write(landing, "g.csv", HEADER + "p9,9,1.5,card,2026-01-02 10:00:00\n")
    result = ingest_files(engine, landing, PAYMENTS, [path], batch_id="2")
    assert result.files_ingested == 1
    assert sorted(engine.read(PAYMENTS.table)["payment_id"].to_list()) == ["p1", "p9"]


def test_crash_between_the_two_table_commits_is_repaired_by_a_retry(simulated, engine, settings, monkeypatch):
    landing = settings.landing
    files = [f.path for f in list_landing_files(landing, PAYMENTS)]
    real_append = DeltaEngine.append

    def crash_on_quarantine(self, table, *args, **kwargs):
        if table == LANDING_QUARANTINE_TABLE:
            raise OSError("killed before the quarantine commit")
        return real_append(self, table, *args, **kwargs)

    monkeypatch.setattr(DeltaEngine, "append", crash_on_quarantine)
    with pytest.raises(OSError, match="killed before the quarantine commit"):
        ingest_files(engine, landing, PAYMENTS, files, batch_id="1")
    landed = engine.row_count(PAYMENTS.table)
    assert landed > 0 and engine.row_count(LANDING_QUARANTINE_TABLE) == 0
    monkeypatch.setattr(DeltaEngine, "append", real_append)
    retry = ingest_files(engine, landing, PAYMENTS, files, batch_id="2")
    assert retry.rows_landed == 0 and retry.rows_quarantined > 0
    assert engine.row_count(PAYMENTS.table) == landed
    total_read = sum(
        parse_landing_file(p, p.relative_to(landing).as_posix(), PAYMENTS).rows_read for p in files
    )
    assert total_read == landed + engine.row_count(LANDING_QUARANTINE_TABLE)


def test_two_concurrent_ingestions_of_the_same_files_never_duplicate(simulated, settings):
    from concurrent.futures import ThreadPoolExecutor

    from lakehouse_assets.engine import ConcurrentWriteError

    landing = settings.landing
    files = [f.path for f in list_landing_files(landing, PAYMENTS)]

    def ingest(batch):
        engine = DeltaEngine(settings.lake_root)
        try:
            return ingest_files(engine, landing, PAYMENTS, files, batch_id=batch).files_ingested
        except ConcurrentWriteError:
            return "conflict"

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(ingest, ["a", "b"]))
    engine = DeltaEngine(settings.lake_root)
    retry = ingest_files(engine, landing, PAYMENTS, files, batch_id="retry")  # finishes any loser
    # Either the second writer lost its commit, or it ran after the first and found nothing new.
    assert "conflict" in outcomes or 0 in outcomes, outcomes
    assert retry.files_ingested == 0  # the winner ingested every file; the loser wrote nothing
    ids = engine.read(PAYMENTS.table, columns=["payment_id"])["payment_id"]
    assert ids.n_unique() == ids.len() > 0
    quarantined = engine.read(LANDING_QUARANTINE_TABLE, columns=["file_id", "row_number"])
    assert quarantined.unique().height == quarantined.height
