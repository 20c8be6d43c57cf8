"""Checkout traffic for the scoring service: the shop's orders as the checkout sends them (before
they reach the lake), and a replay of them through the real app (the demo fills the inference log
this way, so monitoring and the ML dashboard have traffic to show)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from lakehouse_assets.settings import LakehouseSettings


def checkout_requests(source_db: Path, after_order_id: int = 0, last: int | None = None) -> list[dict]:
    """``/v1/predict`` (return-risk) bodies for the source orders after ``after_order_id`` (only the ``last``
    ones when given), in order id order."""
    with closing(sqlite3.connect(f"file:{source_db}?mode=ro", uri=True)) as conn:
        orders = conn.execute(
            "SELECT order_id, customer_id, amount, discount FROM orders WHERE order_id > ? ORDER BY order_id",
            (after_order_id,),
        ).fetchall()
        items = conn.execute(
            "SELECT order_id, product_id, quantity FROM order_items "
            "WHERE order_id > ? ORDER BY order_item_id",
            (after_order_id,),
        ).fetchall()
    lines: dict[int, list[dict]] = {}
    for order_id, product_id, quantity in items:
        lines.setdefault(order_id, []).append({"product_id": product_id, "quantity": quantity})
    requests = [
        {"order_id": o, "customer_id": c, "amount": a, "discount": d, "items": lines[o]}
        for o, c, a, d in orders
        if o in lines
    ]
    return requests[-last:] if last else requests


def replay(settings: LakehouseSettings, requests: list[dict]) -> dict[int, int]:
    """POST every request to the scoring app in this process (champion, online store and
    inference log as `lakehouse serve` runs them; the log is flushed when the app stops).
    Returns the count of answers by status: 404 for customers the online store does not know."""
    from fastapi.testclient import TestClient

    from lakehouse_assets.serving.server import build_app

    statuses: dict[int, int] = {}
    headers = (
        {"Authorization": f"Bearer {settings.serving.token.get_secret_value()}"}
        if settings.serving.token
        else {}
    )
    with TestClient(build_app(settings), headers=headers) as client:
        for body in requests:
            status = client.post("/v1/predict", json=body).status_code
            statuses[status] = statuses.get(status, 0) + 1
    return statuses
