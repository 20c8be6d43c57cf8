"""The inference log: every prediction appended to a Delta table by a background thread, in
batches, off the request path; whatever is queued is written on close (shutdown)."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from datetime import datetime
from typing import Any

import polars as pl

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.products.spec import Product
from lakehouse_assets.tables import INFERENCE_LOG_TABLE

# Every row's columns, whatever the served product: ids, the request, the answer, the rollout.
SCHEMA = pl.Schema(
    {
        "request_id": pl.String(),
        "served_at": pl.Datetime("us"),
        "product": pl.String(),
        "endpoint": pl.String(),
        "model_name": pl.String(),
        "model_version": pl.Int64(),
        "request": pl.String(),
        "line_features": pl.String(),
        "prediction": pl.Float64(),
        "latency_ms": pl.Float64(),
        # the rollout: which alias answered, and both models' scores when the challenger took part
        "rollout": pl.String(),
        "served_by": pl.String(),
        "champion_version": pl.Int64(),
        "champion_prediction": pl.Float64(),
        "challenger_version": pl.Int64(),
        "challenger_prediction": pl.Float64(),
    }
)
log = logging.getLogger(__name__)


def log_schema(*products: Product) -> pl.Schema:
    """The log's columns for the served ``products``: the common columns, each product's request
    keys and every model input (so the monitors compare served inputs with training data column
    by column). Two products may share a column only with one type."""
    columns = dict(SCHEMA)
    owner: dict[str, str] = {}
    for product in products:
        own: dict[str, pl.DataType] = {
            k: pl.String() if k in product.text_keys else pl.Int64() for k in product.request_keys
        }
        own |= {name: pl.Float64() for name in product.numeric}
        own |= {name: pl.String() for name in product.categorical}
        for name, dtype in own.items():
            if name in columns and columns[name] != dtype:
                raise ValueError(
                    f"inference log column {name!r} is {columns[name]} for "
                    f"{owner.get(name, 'the log')} and {dtype} for {product.name}: serve them apart"
                )
            columns.setdefault(name, dtype)
            owner.setdefault(name, product.name)
    return pl.Schema(columns)


def record(
    product: Product,
    request_id: str,
    served_at: datetime,
    endpoint: str,
    model: Any,
    request: dict[str, Any],
    features: dict[str, Any],
    line_features: dict[Any, dict[str, Any]],
    prediction: float,
    latency_ms: float,
    *,
    rollout: str = "champion",
    served_by: str = "champion",
    shadow: Any = None,
) -> dict[str, Any]:
    """One row of the log: ids, the raw request, every model input, the prediction that was
    returned by ``model`` (a loaded version). ``shadow``: the other alias's loaded model
    (shadow, or the champion beside a canary); the writer scores it on the same features
    before the commit."""
    other = "challenger" if served_by == "champion" else "champion"
    row = {
        **features,  # the log's schema keeps the product's model inputs
        **{k: request.get(k) for k in product.request_keys},
        "request_id": request_id,
        "served_at": served_at,
        "product": product.name,
        "endpoint": endpoint,
        "model_name": model.name,
        "model_version": model.version,
        "request": json.dumps(request),
        "line_features": json.dumps(line_features, default=str),
        "prediction": prediction,
        "latency_ms": latency_ms,
        "rollout": rollout,
        "served_by": served_by,
        f"{served_by}_version": model.version,
        f"{served_by}_prediction": prediction,
        f"{other}_version": shadow.version if shadow is not None else None,
        f"{other}_prediction": None,
    }
    if shadow is not None:
        row[SHADOW_KEY] = (shadow, features, f"{other}_prediction")
    return row


SHADOW_KEY = "_shadow"  # (model, features, column) of a score still to compute


def score_shadows(rows: list[dict[str, Any]]) -> None:
    """Fill in the scores of the models that did not answer: one call per model over all the
    rows. A model that fails leaves its column null (the row is kept, the error logged)."""
    waiting: dict[int, tuple[Any, list[dict[str, Any]]]] = {}
    for row in rows:
        if SHADOW_KEY in row:
            model = row[SHADOW_KEY][0]
            waiting.setdefault(id(model), (model, []))[1].append(row)
    for model, group in waiting.values():
        try:
            scores = [float(p) for p in model.predict([r[SHADOW_KEY][1] for r in group])]
        except Exception:
            log.exception(
                "shadow scoring of %d rows by version %s failed; logged without it",
                len(group),
                getattr(model, "version", "?"),
            )
            scores = [None] * len(group)  # type: ignore[list-item]
        for row, score in zip(group, scores, strict=True):
            row[row.pop(SHADOW_KEY)[2]] = score


class InferenceLog:
    """Queue in memory, one commit per batch. A failed commit is retried with the same rows on
    the next flush, never dropped; ``close`` drains the queue."""

    def __init__(
        self, engine: LakeEngine, schema: pl.Schema, flush_seconds: float = 1.0, max_rows: int = 5000
    ):
        self.engine, self.schema = engine, schema
        self.flush_seconds, self.max_rows = flush_seconds, max_rows
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._pending: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self.rows_written = self.commits = 0
        if engine.exists(INFERENCE_LOG_TABLE):  # a log written before a column existed gains it
            engine.ensure_table(INFERENCE_LOG_TABLE, pl.DataFrame(schema=schema).to_arrow().schema)
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self._thread.start()

    def append(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self._queue.put_nowait(row)

    def _take(self, limit: int) -> int:
        taken = 0
        while taken < limit:
            try:
                self._pending.append(self._queue.get_nowait())
            except queue.Empty:
                break
            taken += 1
        return taken

    def flush(self) -> None:
        """Commit the rows queued when called, in chunks of at most ``max_rows``. Rows arriving
        meanwhile wait for the next flush: under load the log commits once per interval, not
        back to back."""
        remaining = self._queue.qsize()
        while True:
            remaining -= self._take(min(remaining, self.max_rows - len(self._pending)))
            if not self._pending:
                return
            score_shadows(self._pending)
            batch = pl.DataFrame(self._pending, schema=self.schema)
            started = time.perf_counter()
            self.engine.append(INFERENCE_LOG_TABLE, batch)
            seconds = time.perf_counter() - started
            if seconds > self.flush_seconds:
                log.warning("inference log commit of %d rows took %.2f s", batch.height, seconds)
            self.rows_written += batch.height
            self.commits += 1
            self._pending = []
            if remaining <= 0:
                return

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception:  # keep the rows and try again at the next flush
                log.exception("inference log commit failed; %d rows kept for retry", len(self._pending))

    def close(self) -> None:
        """Stop the thread and write everything still queued."""
        self._stop.set()
        self._thread.join()
        while self._pending or not self._queue.empty():
            self.flush()
