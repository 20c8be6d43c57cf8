import hashlib
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from lakehouse_assets.settings import SimulatorSettings
from lakehouse_assets.sources.schema import SOURCE_TABLES
from lakehouse_assets.sources.simulator import ShopSimulator
from tests.conftest import SMALL_SIMULATION


def fingerprint(sim: ShopSimulator) -> str:
    """Hash of every source table, every change table and every landing file's bytes."""
    digest = hashlib.sha256()
    with sqlite3.connect(sim.db_path) as conn:
        for table in SOURCE_TABLES:
            for name in (table.name, table.change_table):
                for row in conn.execute(f"SELECT * FROM {name} ORDER BY 1"):
                    digest.update(repr(row).encode())
    for path in sorted(sim.landing_dir.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def make(tmp_path, name, cfg=SMALL_SIMULATION) -> ShopSimulator:
    return ShopSimulator(tmp_path / name / "shop.sqlite", tmp_path / name / "landing", cfg)


def test_same_seed_gives_identical_data_however_the_days_are_split(tmp_path):
    one = make(tmp_path, "one")
    one.run(12)
    two = make(tmp_path, "two")
    two.run(5)
    two.run(7)
    assert fingerprint(one) == fingerprint(two)
    other = make(tmp_path, "other", SMALL_SIMULATION.model_copy(update={"seed": 7}))
    other.run(12)
    assert fingerprint(other) != fingerprint(one)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    sim = make(tmp_path_factory.mktemp("shop"), "shop")
    summary = sim.run()
    conn = sqlite3.connect(sim.db_path)
    yield sim, summary, conn
    conn.close()


def test_activity_has_inserts_updates_and_deletes(shop):
    _, summary, conn = shop
    ops = dict(conn.execute("SELECT _op, COUNT(*) FROM _cdc_orders GROUP BY 1").fetchall())
    assert ops["insert"] > 0 and ops["update"] > 0 and ops["delete"] > 0  # lifecycle + cancels
    customer_ops = dict(conn.execute("SELECT _op, COUNT(*) FROM _cdc_customers GROUP BY 1"))
    assert customer_ops["update"] > 0  # address changes
    assert customer_ops["delete"] > 0  # GDPR erasure
    statuses = {s for (s,) in conn.execute("SELECT DISTINCT status FROM orders")}
    assert {"placed", "shipped", "delivered", "returned"} <= statuses
    total = conn.execute("SELECT value FROM _cdc_sequence").fetchone()[0]
    assert summary.change_events > 0 and total >= summary.change_events


def test_sequence_is_global_gapless_and_commit_times_never_go_back(shop):
    _, _, conn = shop
    rows = conn.execute(
        " UNION ALL ".join(f"SELECT _seq, _commit_ts FROM {t.change_table}" for t in SOURCE_TABLES)
        + " ORDER BY 1"
    ).fetchall()
    seqs = [s for s, _ in rows]
    assert seqs == list(range(1, len(seqs) + 1))
    times = [t for _, t in rows]
    assert all(a <= b for a, b in zip(times, times[1:], strict=False))


def test_deleted_rows_keep_their_image_and_cancelled_orders_lose_their_items(shop):
    _, _, conn = shop
    deleted = conn.execute(
        "SELECT order_id, customer_id, amount FROM _cdc_orders WHERE _op = 'delete'"
    ).fetchall()
    assert deleted and all(cid is not None and amount is not None for _, cid, amount in deleted)
    ids = [order_id for order_id, _, _ in deleted]
    marks = ",".join("?" * len(ids))
    assert conn.execute(f"SELECT COUNT(*) FROM orders WHERE order_id IN ({marks})", ids).fetchone()[0] == 0
    assert (
        conn.execute(f"SELECT COUNT(*) FROM order_items WHERE order_id IN ({marks})", ids).fetchone()[0] == 0
    )


def test_returns_arrive_days_after_delivery(shop):
    _, _, conn = shop
    rows = conn.execute(
        "SELECT o.order_ts, r.return_ts FROM returns r JOIN orders o USING (order_id)"
    ).fetchall()
    assert rows
    for order_ts, return_ts in rows:
        gap = datetime.fromisoformat(return_ts) - datetime.fromisoformat(order_ts)
        assert timedelta(days=2) < gap <= timedelta(days=36)


def test_drift_knobs(shop):
    sim, _, conn = shop
    cfg = sim.cfg
    launch = (cfg.start_date + timedelta(days=cfg.new_category_day)).isoformat()
    first_new = conn.execute(
        "SELECT MIN(o.order_ts) FROM orders o JOIN order_items i USING (order_id) "
        "JOIN products p USING (product_id) WHERE p.category = 'smart_home'"
    ).fetchone()[0]
    assert first_new is not None and first_new >= launch
    shift = (cfg.start_date + timedelta(days=cfg.customer_mix_shift_day)).isoformat()
    share = dict(
        conn.execute(
            "SELECT created_at >= ?, AVG(segment = 'bargain') FROM customers "
            "WHERE created_at >= ? GROUP BY 1",
            (shift, cfg.start_date.isoformat()),
        ).fetchall()
    )
    assert share[1] > share[0] + 0.2
    promo_start = cfg.start_date + timedelta(days=cfg.promotion_start_day)
    discounts = dict(
        conn.execute(
            "SELECT date(order_ts, 'unixepoch') BETWEEN ? AND ?, AVG(discount) FROM _cdc_orders "
            "WHERE _op = 'insert' GROUP BY 1",
            (promo_start.isoformat(), (promo_start + timedelta(days=cfg.promotion_days - 1)).isoformat()),
        ).fetchall()
    )
    assert discounts[1] == pytest.approx(cfg.promotion_discount)
    assert discounts[0] < 0.05


def test_landing_files_rotate_formats_and_include_malformed_ones(shop):
    sim, summary, _ = shop
    suffixes = {p.rsplit(".", 1)[1] for p in summary.landing_files}
    assert suffixes == {"csv", "jsonl", "parquet"}
    contents = [Path(p).read_bytes() for p in summary.landing_files]
    truncated = [
        c
        for c, p in zip(contents, summary.landing_files, strict=True)
        if (p.endswith((".csv", ".jsonl")) and not c.endswith(b"\n"))
        or (p.endswith(".parquet") and not c.endswith(b"PAR1"))
    ]
    assert truncated, "expected some files truncated mid-write"
    assert any(b"twelve euros" in c or b"yesterday" in c or b"ORD-??" in c for c in contents)


def test_scale_multiplies_volume(tmp_path):
    small = make(tmp_path, "small", SimulatorSettings(days=3))
    big = make(tmp_path, "big", SimulatorSettings(days=3, scale=4))
    assert big.run().change_events > 3 * small.run().change_events
