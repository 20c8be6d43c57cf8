"""A seeded, reproducible simulator of the shop's operational system.

It writes customers, products, orders, order items and returns into a SQLite database whose
changes are captured by triggers (see ``cdc.py``), and drops the payment provider's event files
into the landing folder. Each simulated day draws from its own random stream seeded by
``(seed, day)`` and all state lives in the database, so the same seed gives the same data whether
the days are simulated in one call or many.

What happens on a day, in time order:
- sign-ups (segment mix shifts on ``customer_mix_shift_day``), address changes (SCD2 material),
  price changes, GDPR erasures (customer row deleted);
- orders with 1-4 items; volume follows weekly/yearly seasonality and a promotion period;
- each order's lifecycle is planned when it is placed: cancelled within hours (order and items
  deleted), or shipped, delivered and - with a probability that depends on category, segment,
  discount and basket size - returned 1-28 days after delivery (a late-arriving label);
- a new product category launches on ``new_category_day``;
- one payments file per day (CSV, JSON lines or Parquet, rotating), some rows malformed and some
  files truncated mid-write.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse_assets.settings import SimulatorSettings
from lakehouse_assets.sources.cdc import install_change_capture
from lakehouse_assets.sources.schema import PAYMENT_COLUMNS, SOURCE_TABLES, SQLITE_TYPES

CATEGORIES: dict[str, tuple[float, float, float]] = {
    # category: (min price, max price, base return probability)
    "electronics": (25.0, 900.0, 0.06),
    "apparel": (8.0, 150.0, 0.22),
    "home": (12.0, 300.0, 0.07),
    "books": (5.0, 60.0, 0.03),
    "sports": (10.0, 400.0, 0.09),
    "beauty": (5.0, 80.0, 0.05),
}
NEW_CATEGORY = ("smart_home", (20.0, 350.0, 0.18))
ALL_CATEGORIES = dict([*CATEGORIES.items(), NEW_CATEGORY])
SEGMENTS = ("regular", "premium", "bargain")
SEGMENT_WEIGHTS = (0.6, 0.25, 0.15)
SEGMENT_RETURN_FACTOR = {"regular": 1.0, "premium": 0.7, "bargain": 1.6}
RETURN_REASONS = ("damaged", "wrong_size", "not_as_described", "changed_mind", "late_delivery")
PAYMENT_METHODS = ("card", "paypal", "giftcard", "bank_transfer")
CITIES = (
    ("Berlin", "DE"),
    ("Hamburg", "DE"),
    ("Munich", "DE"),
    ("Paris", "FR"),
    ("Lyon", "FR"),
    ("Madrid", "ES"),
    ("Barcelona", "ES"),
    ("Milan", "IT"),
    ("Rome", "IT"),
    ("Amsterdam", "NL"),
    ("Vienna", "AT"),
    ("Warsaw", "PL"),
    ("Lisbon", "PT"),
    ("Dublin", "IE"),
    ("Copenhagen", "DK"),
)
FIRST_NAMES = (
    "Ada",
    "Ben",
    "Chloe",
    "Dan",
    "Eva",
    "Finn",
    "Grace",
    "Hugo",
    "Iris",
    "Jon",
    "Kira",
    "Leo",
    "Mia",
    "Noah",
    "Olga",
    "Paul",
    "Rosa",
    "Sam",
    "Tara",
    "Ugo",
)
LAST_NAMES = (
    "Meyer",
    "Dubois",
    "Garcia",
    "Rossi",
    "Jansen",
    "Novak",
    "Silva",
    "Byrne",
    "Larsen",
    "Schmidt",
    "Martin",
    "Lopez",
    "Bianchi",
    "Visser",
    "Kowalski",
)
TS_FORMAT = "%Y-%m-%d %H:%M:%S"
DAY = 86_400


def _ts(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime(TS_FORMAT)


def _epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _count(rng: random.Random, mean: float) -> int:
    """A Poisson-like count: normal approximation for large means, Bernoulli sum for small."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    # Knuth's method: exact Poisson for small means.
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


@dataclass
class SimulationSummary:
    """What a simulation call produced: the days, the change events and the landing files."""

    days: int = 0
    first_day: date | None = None
    last_day: date | None = None
    change_events: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    landing_files: list[str] = field(default_factory=list)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


class ShopSimulator:
    """The shop's operational system, simulated day by day from a seed into its database and the landing
    folder."""

    def __init__(self, db_path: Path, landing_dir: Path, cfg: SimulatorSettings):
        self.db_path = Path(db_path)
        self.landing_dir = Path(landing_dir)
        self.cfg = cfg

    # ----------------------------------------------------------------- database set-up
    def connect(self) -> sqlite3.Connection:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.db_path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN")
        for table in SOURCE_TABLES:
            cols = ", ".join(
                f"{name} {SQLITE_TYPES[kind]}{' PRIMARY KEY' if name == table.key else ''}"
                for name, kind in table.columns
            )
            conn.execute(f"CREATE TABLE IF NOT EXISTS {table.name} ({cols})")
        conn.execute("CREATE INDEX IF NOT EXISTS order_items_order_id ON order_items(order_id)")
        conn.execute("CREATE TABLE IF NOT EXISTS _sim_state (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS _sim_order_plan (order_id INTEGER PRIMARY KEY, "
            "cancel_ts INTEGER, ship_ts INTEGER, deliver_ts INTEGER, return_ts INTEGER, "
            "return_reason TEXT)"
        )
        for col in ("cancel_ts", "ship_ts", "deliver_ts", "return_ts"):
            conn.execute(f"CREATE INDEX IF NOT EXISTS _sim_plan_{col} ON _sim_order_plan({col})")
        install_change_capture(conn)
        conn.execute("COMMIT")

    def _state(self, conn: sqlite3.Connection) -> dict[str, Any]:
        rows = conn.execute("SELECT key, value FROM _sim_state").fetchall()
        return {k: json.loads(v) for k, v in rows}

    def _save_state(self, conn: sqlite3.Connection, state: dict[str, Any]) -> None:
        conn.executemany(
            "INSERT OR REPLACE INTO _sim_state VALUES (?, ?)",
            [(k, json.dumps(v, sort_keys=True)) for k, v in sorted(state.items())],
        )

    # ----------------------------------------------------------------------- public API
    def run(
        self,
        days: int | None = None,
        progress: Callable[[int, int, SimulationSummary], None] | None = None,
    ) -> SimulationSummary:
        """Simulate ``days`` more days (default: the configured number), continuing any earlier run."""
        days = self.cfg.days if days is None else days
        conn = self.connect()
        try:
            self._create_schema(conn)
            state = self._state(conn)
            summary = SimulationSummary()
            seq_before = conn.execute("SELECT value FROM _cdc_sequence").fetchone()[0]
            if "next_day" not in state:
                state = self._initial_load(conn)
            world = _World.load(conn, state)
            for i in range(days):
                day_index = state["next_day"]
                self._simulate_day(conn, world, state, day_index, summary)
                summary.days += 1
                summary.first_day = summary.first_day or self.day(day_index)
                summary.last_day = self.day(day_index)
                summary.change_events = (
                    conn.execute("SELECT value FROM _cdc_sequence").fetchone()[0] - seq_before
                )
                if progress:
                    progress(i + 1, days, summary)
            return summary
        finally:
            conn.close()

    def live(
        self,
        rate: float,
        seconds: float,
        progress: Callable[[int, float], None] | None = None,
        step_seconds: float = 0.1,
    ) -> int:
        """Shop activity in real time, for the stream to follow: about ``rate`` source changes a
        second for ``seconds`` (new orders of existing customers with their lines, and the
        shipping of earlier live orders), each step one transaction committed at wall-clock
        time. Returns the changes written. Needs an earlier `simulate` (the shop's customers
        and products)."""
        conn = self.connect()
        try:
            self._create_schema(conn)
            state = self._state(conn)
            if "next_day" not in state:
                raise ValueError("no shop yet: run `lakehouse simulate` before the live mode")
            world = _World.load(conn, state)
            rng = random.Random(f"{self.cfg.seed}/live/{state['next_order_id']}")
            written, owed = 0, 0.0
            placed: list[int] = []  # live orders not shipped yet
            started = time.monotonic()
            while (elapsed := time.monotonic() - started) < seconds:
                owed += rate * step_seconds
                conn.execute("BEGIN")
                now = int(time.time())
                conn.execute("UPDATE _cdc_clock SET ts = ?", (now,))
                while owed >= 1:
                    if placed and rng.random() < 0.2:  # an earlier live order ships
                        order_id = placed.pop(0)
                        conn.execute(
                            "UPDATE orders SET status = 'shipped', updated_at = ? WHERE order_id = ?",
                            (_ts(now), order_id),
                        )
                        owed, written = owed - 1, written + 1
                        continue
                    cid = world.random_customer(rng)
                    if cid is None:
                        break
                    order_id = state["next_order_id"]
                    state["next_order_id"] += 1
                    items, gross = [], 0.0
                    for _ in range(1 + int(rng.expovariate(1.5))):
                        pid = rng.choice(world.product_ids)
                        qty = rng.choice((1, 1, 2))
                        items.append(
                            (state["next_order_item_id"], order_id, pid, qty, world.products[pid][0], 0.0)
                        )
                        state["next_order_item_id"] += 1
                        gross += qty * world.products[pid][0]
                    conn.execute(
                        "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (order_id, cid, "placed", _ts(now), round(gross, 2), 0.0, _ts(now)),
                    )
                    conn.executemany("INSERT INTO order_items VALUES (?, ?, ?, ?, ?, ?)", items)
                    placed.append(order_id)
                    owed, written = owed - 1 - len(items), written + 1 + len(items)
                self._save_state(conn, state)
                conn.execute("COMMIT")
                if progress:
                    progress(written, elapsed)
                time.sleep(max(0.0, started + elapsed + step_seconds - time.monotonic()))
            return written
        finally:
            conn.close()

    def day(self, index: int) -> date:
        return self.cfg.start_date + timedelta(days=index)

    # ------------------------------------------------------------------- initial load
    def _initial_load(self, conn: sqlite3.Connection) -> dict[str, Any]:
        cfg = self.cfg
        rng = random.Random(f"{cfg.seed}/initial")
        start = _epoch(cfg.start_date)
        n_customers = max(1, round(cfg.initial_customers * cfg.scale))
        n_products = max(1, round(cfg.initial_products * cfg.scale))
        conn.execute("BEGIN")
        conn.execute("DELETE FROM _cdc_clock")
        conn.execute("INSERT INTO _cdc_clock VALUES (?)", (start - 1,))
        conn.executemany(
            "INSERT INTO products VALUES (?, ?, ?, ?, ?, ?)",
            (
                self._new_product(rng, pid, rng.choice(list(CATEGORIES)), start - rng.randint(30, 720) * DAY)
                for pid in range(1, n_products + 1)
            ),
        )
        conn.executemany(
            "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self._new_customer(rng, cid, start - rng.randint(1, 720) * DAY, SEGMENT_WEIGHTS)
                for cid in range(1, n_customers + 1)
            ),
        )
        state = {
            "next_day": 0,
            "next_customer_id": n_customers + 1,
            "next_product_id": n_products + 1,
            "next_order_id": 1,
            "next_order_item_id": 1,
            "next_return_id": 1,
        }
        self._save_state(conn, state)
        conn.execute("COMMIT")
        return state

    @staticmethod
    def _new_product(rng: random.Random, pid: int, category: str, created: int) -> tuple:
        low, high, _ = ALL_CATEGORIES[category]
        price = round(math.exp(rng.uniform(math.log(low), math.log(high))), 2)
        ts = _ts(created)
        return (pid, f"{category.replace('_', ' ').title()} item {pid}", category, price, ts, ts)

    @staticmethod
    def _new_customer(rng: random.Random, cid: int, created: int, weights: tuple[float, ...]) -> tuple:
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        city, country = rng.choice(CITIES)
        segment = rng.choices(SEGMENTS, weights)[0]
        ts = _ts(created)
        email = f"{first.lower()}.{last.lower()}.{cid}@example.com"
        return (cid, f"{first} {last}", email, city, country, segment, ts, ts)

    # ---------------------------------------------------------------------- one day
    def _volume_factor(self, index: int) -> float:
        cfg, day = self.cfg, self.day(index)
        season = 0.5 * math.cos(2 * math.pi * (day.timetuple().tm_yday - 350) / 365.25)
        weekly = 0.6 if day.weekday() >= 5 else -0.24
        factor = 1 + cfg.seasonality_amplitude * (season + weekly)
        if self._in_promotion(index):
            factor *= 1 + cfg.promotion_uplift
        return max(factor, 0.05)

    def _in_promotion(self, index: int) -> bool:
        start = self.cfg.promotion_start_day
        return start is not None and start <= index < start + self.cfg.promotion_days

    def _simulate_day(
        self,
        conn: sqlite3.Connection,
        world: _World,
        state: dict[str, Any],
        index: int,
        summary: SimulationSummary,
    ) -> None:
        cfg = self.cfg
        rng = random.Random(f"{cfg.seed}/day/{index}")
        day_start = _epoch(self.day(index))
        day_end = day_start + DAY
        events: list[tuple[int, int, str, tuple]] = []  # (ts, tiebreak, kind, payload)

        def add(ts: int, kind: str, payload: tuple) -> None:
            events.append((ts, len(events), kind, payload))

        # Customers.
        mix_shifted = cfg.customer_mix_shift_day is not None and index >= cfg.customer_mix_shift_day
        weights = (
            (
                (1 - cfg.customer_mix_bargain_share) * 0.7,
                (1 - cfg.customer_mix_bargain_share) * 0.3,
                cfg.customer_mix_bargain_share,
            )
            if mix_shifted
            else SEGMENT_WEIGHTS
        )
        for _ in range(_count(rng, cfg.initial_customers * cfg.scale * 0.01)):
            cid = state["next_customer_id"]
            state["next_customer_id"] += 1
            row = self._new_customer(rng, cid, day_start + rng.randrange(DAY), weights)
            add(_epoch_of(row[6]), "signup", row)
        for _ in range(_count(rng, len(world.customers) * cfg.address_change_rate)):
            cid = world.random_customer(rng)
            if cid is not None:
                city, country = rng.choice(CITIES)
                add(day_start + rng.randrange(DAY), "address", (cid, city, country))
        for _ in range(_count(rng, cfg.gdpr_erasures_per_day)):
            cid = world.random_customer(rng)
            if cid is not None:
                add(day_start + rng.randrange(DAY), "erase", (cid,))
        # Products.
        if cfg.new_category_day == index:
            launch = day_start + 9 * 3600
            for _ in range(max(3, round(cfg.initial_products * cfg.scale * 0.08))):
                pid = state["next_product_id"]
                state["next_product_id"] += 1
                add(launch, "product", self._new_product(rng, pid, NEW_CATEGORY[0], launch))
        for _ in range(_count(rng, len(world.products) * cfg.price_change_rate)):
            pid = rng.choice(world.product_ids)
            add(day_start + rng.randrange(DAY), "price", (pid, rng.uniform(0.85, 1.15)))
        # Lifecycle transitions planned by earlier days.
        for kind, col in (
            ("cancel", "cancel_ts"),
            ("ship", "ship_ts"),
            ("deliver", "deliver_ts"),
            ("return", "return_ts"),
        ):
            due = conn.execute(
                f"SELECT order_id, {col}, return_reason, return_ts FROM _sim_order_plan "
                f"WHERE {col} >= ? AND {col} < ? ORDER BY order_id",
                (day_start, day_end),
            ).fetchall()
            for order_id, ts, reason, return_ts in due:
                add(ts, kind, (order_id, reason, return_ts))
        # New orders.
        n_orders = _count(rng, cfg.orders_per_day * cfg.scale * self._volume_factor(index))
        promo = self._in_promotion(index)
        payments: list[dict[str, Any]] = []
        for _ in range(n_orders):
            cid = world.random_customer(rng)
            if cid is None:
                break
            ts = day_start + int(rng.triangular(6 * 3600, DAY - 1, 19 * 3600))
            order_id = state["next_order_id"]
            state["next_order_id"] += 1
            discount = cfg.promotion_discount if promo else (0.1 if rng.random() < 0.08 else 0.0)
            items, gross, risk = [], 0.0, 0.0
            for _ in range(min(4, 1 + int(rng.expovariate(1.2)))):
                pid = rng.choice(world.product_ids)
                price, category = world.products[pid]
                qty = rng.choices((1, 2, 3), (0.75, 0.18, 0.07))[0]
                items.append((state["next_order_item_id"], order_id, pid, qty, price, discount))
                state["next_order_item_id"] += 1
                gross += qty * price
                risk = max(risk, world.return_rate(category))
            amount = round(gross * (1 - discount), 2)
            p_return = min(
                0.9,
                risk * SEGMENT_RETURN_FACTOR[world.customers[cid]]
                + 0.4 * discount
                + (0.05 if amount > 300 else 0.0),
            )
            plan = self._plan(rng, order_id, ts, p_return)
            add(
                ts,
                "order",
                ((order_id, cid, "placed", _ts(ts), amount, discount, _ts(ts)), tuple(items), plan),
            )
            if plan[1] is not None and plan[1] < day_end:  # cancelled the same day
                add(plan[1], "cancel", (order_id, None, None))
            payments.append(
                {
                    "payment_id": f"pay_{order_id:09d}",
                    "order_id": order_id,
                    "amount": amount,
                    "method": rng.choice(PAYMENT_METHODS),
                    "paid_at": _ts(ts + rng.randint(5, 300)),
                }
            )
        events.sort()

        # Apply in time order, in one transaction with the simulator's state.
        conn.execute("BEGIN")
        clock = None
        for ts, _, kind, payload in events:
            if ts != clock:
                conn.execute("UPDATE _cdc_clock SET ts = ?", (ts,))
                clock = ts
            self._apply(conn, world, state, kind, payload, ts, summary)
        state["next_day"] = index + 1
        self._save_state(conn, state)
        landing = self._write_payments(rng, index, payments)
        conn.execute("COMMIT")
        if landing:
            summary.landing_files.append(landing)

    def _plan(self, rng: random.Random, order_id: int, ts: int, p_return: float) -> tuple:
        if rng.random() < self.cfg.cancellation_rate:
            return (order_id, ts + rng.randint(600, 20 * 3600), None, None, None, None)
        ship = ts + rng.randint(18, 40) * 3600
        deliver = ship + rng.randint(1, 4) * DAY + rng.randint(0, 8) * 3600
        if rng.random() < p_return:
            return (
                order_id,
                None,
                ship,
                deliver,
                deliver + rng.randint(1, 28) * DAY,
                rng.choice(RETURN_REASONS),
            )
        return (order_id, None, ship, deliver, None, None)

    def _apply(
        self,
        conn: sqlite3.Connection,
        world: _World,
        state: dict[str, Any],
        kind: str,
        payload: tuple,
        ts: int,
        summary: SimulationSummary,
    ) -> None:
        now = _ts(ts)
        if kind == "signup":
            conn.execute("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?, ?)", payload)
            world.customers[payload[0]] = payload[5]
            world.max_customer_id = max(world.max_customer_id, payload[0])
        elif kind == "address":
            cid, city, country = payload
            if cid not in world.customers:  # erased earlier today
                return
            conn.execute(
                "UPDATE customers SET city = ?, country = ?, updated_at = ? WHERE customer_id = ?",
                (city, country, now, cid),
            )
        elif kind == "erase":
            if world.customers.pop(payload[0], None) is None:
                return
            conn.execute("DELETE FROM customers WHERE customer_id = ?", payload)
        elif kind == "product":
            conn.execute("INSERT INTO products VALUES (?, ?, ?, ?, ?, ?)", payload)
            world.products[payload[0]] = (payload[3], payload[2])
            world.product_ids.append(payload[0])
        elif kind == "price":
            pid, factor = payload
            price = round(world.products[pid][0] * factor, 2)
            world.products[pid] = (price, world.products[pid][1])
            conn.execute(
                "UPDATE products SET price = ?, updated_at = ? WHERE product_id = ?",
                (price, now, pid),
            )
        elif kind == "order":
            order, items, plan = payload
            conn.execute("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?)", order)
            conn.executemany("INSERT INTO order_items VALUES (?, ?, ?, ?, ?, ?)", items)
            conn.execute("INSERT INTO _sim_order_plan VALUES (?, ?, ?, ?, ?, ?)", plan)
        elif kind == "cancel":
            order_id = payload[0]
            conn.execute("DELETE FROM order_items WHERE order_id = ?", (order_id,))
            conn.execute("DELETE FROM orders WHERE order_id = ?", (order_id,))
            conn.execute("DELETE FROM _sim_order_plan WHERE order_id = ?", (order_id,))
        elif kind in ("ship", "deliver"):
            order_id, _, return_ts = payload
            status = "shipped" if kind == "ship" else "delivered"
            conn.execute(
                "UPDATE orders SET status = ?, updated_at = ? WHERE order_id = ?",
                (status, now, order_id),
            )
            if kind == "deliver" and return_ts is None:
                conn.execute("DELETE FROM _sim_order_plan WHERE order_id = ?", (order_id,))
        elif kind == "return":
            order_id, reason, _ = payload
            amount = conn.execute("SELECT amount FROM orders WHERE order_id = ?", (order_id,)).fetchone()
            if amount is not None:
                conn.execute(
                    "INSERT INTO returns VALUES (?, ?, ?, ?, ?)",
                    (state["next_return_id"], order_id, reason, now, amount[0]),
                )
                state["next_return_id"] += 1
                conn.execute(
                    "UPDATE orders SET status = 'returned', updated_at = ? WHERE order_id = ?",
                    (now, order_id),
                )
            conn.execute("DELETE FROM _sim_order_plan WHERE order_id = ?", (order_id,))
        summary.add(kind)

    # ------------------------------------------------------------------ landing files
    def _write_payments(self, rng: random.Random, index: int, payments: list[dict[str, Any]]) -> str | None:
        if not payments or not self.cfg.landing_formats:
            return None
        fmt = self.cfg.landing_formats[index % len(self.cfg.landing_formats)]
        for row in payments:
            if rng.random() < self.cfg.malformed_row_share:
                corrupt_payment(rng, row)
        truncate = rng.random() < self.cfg.malformed_file_share
        path = self.landing_dir / "payments" / f"payments_{self.day(index).isoformat()}.{fmt}"
        write_payment_file(path, payments, fmt, truncate=truncate)
        return str(path)


def _epoch_of(text: str) -> int:
    return int(datetime.strptime(text, TS_FORMAT).replace(tzinfo=UTC).timestamp())


def corrupt_payment(rng: random.Random, row: dict[str, Any]) -> None:
    """Damage one payment row the way real feeds do: a bad type, a missing key, a bad date."""
    damage = rng.choice(
        ("bad_amount", "missing_payment_id", "missing_order_id", "bad_order_id", "bad_timestamp")
    )
    if damage == "bad_amount":
        row["amount"] = "twelve euros"
    elif damage == "missing_payment_id":
        row["payment_id"] = None
    elif damage == "missing_order_id":
        row["order_id"] = None
    elif damage == "bad_order_id":
        row["order_id"] = "ORD-??"
    else:
        row["paid_at"] = "yesterday"


def write_payment_file(path: Path, rows: list[dict[str, Any]], fmt: str, *, truncate: bool = False) -> None:
    """Write payment rows as CSV, JSON lines or Parquet, atomically (temp name, then rename).

    ``truncate`` keeps only the first 60% of the bytes, as an interrupted upload would.
    """
    names = [name for name, _ in PAYMENT_COLUMNS]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([["" if r[n] is None else r[n] for n in names] for r in rows])
        data = buffer.getvalue().encode()
    elif fmt == "jsonl":
        data = "".join(json.dumps({n: r[n] for n in names}) + "\n" for r in rows).encode()
    elif fmt == "parquet":
        # A file whose rows carry a wrong type is written with string columns, as a sloppy
        # exporter would; otherwise the columns are typed.
        typed = all(
            isinstance(r["amount"], float | int) and isinstance(r["order_id"], int | None) for r in rows
        )
        if typed:
            table = pa.table(
                {
                    "payment_id": pa.array([r["payment_id"] for r in rows], pa.string()),
                    "order_id": pa.array([r["order_id"] for r in rows], pa.int64()),
                    "amount": pa.array([r["amount"] for r in rows], pa.float64()),
                    "method": pa.array([r["method"] for r in rows], pa.string()),
                    "paid_at": pa.array([r["paid_at"] for r in rows], pa.string()),
                }
            )
        else:
            table = pa.table(
                {n: pa.array([None if r[n] is None else str(r[n]) for r in rows], pa.string()) for n in names}
            )
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="snappy")
        data = sink.getvalue()
    else:
        raise ValueError(f"unknown landing format {fmt!r}: expected csv, jsonl or parquet")
    if truncate:
        data = data[: max(1, int(len(data) * 0.6))]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass
class _World:
    """The part of the source state the simulator keeps in memory while it runs."""

    customers: dict[int, str]  # live customer id -> segment
    products: dict[int, tuple[float, str]]  # product id -> (price, category)
    product_ids: list[int]
    max_customer_id: int

    @classmethod
    def load(cls, conn: sqlite3.Connection, state: dict[str, Any]) -> _World:
        customers = dict(conn.execute("SELECT customer_id, segment FROM customers ORDER BY 1"))
        products = {
            pid: (price, category)
            for pid, price, category in conn.execute(
                "SELECT product_id, price, category FROM products ORDER BY 1"
            )
        }
        return cls(customers, products, sorted(products), state["next_customer_id"] - 1)

    def random_customer(self, rng: random.Random) -> int | None:
        """A uniformly drawn live customer (erased ids are skipped)."""
        for _ in range(20):
            cid = rng.randint(1, max(1, self.max_customer_id))
            if cid in self.customers:
                return cid
        return None

    @staticmethod
    def return_rate(category: str) -> float:
        return ALL_CATEGORIES[category][2]
