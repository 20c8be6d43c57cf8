"""The inference log's writer: one commit per interval under load, nothing lost on failure or
shutdown."""

import threading
import time
from datetime import datetime

import pytest

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.serving.inference_log import InferenceLog, log_schema, record
from lakehouse_assets.serving.scoring import LoadedModel
from lakehouse_assets.tables import INFERENCE_LOG_TABLE
from tests.products import product


def rows(start: int, count: int) -> list[dict]:
    return [
        record(
            product(),
            f"r{i}",
            datetime(2026, 1, 1),
            "predict",
            LoadedModel("m", 1, None),
            {"customer_id": i, "items": []},
            {"amount": 1.0, "segment": "regular"},
            {},
            0.5,
            1.0,
        )
        for i in range(start, start + count)
    ]


def test_a_busy_service_commits_once_per_interval_and_close_writes_the_rest(tmp_path):
    engine = DeltaEngine(str(tmp_path))
    log = InferenceLog(engine, log_schema(product()), flush_seconds=0.5)
    stop = threading.Event()
    sent = 0

    def produce() -> None:  # a steady stream of requests, as under load
        nonlocal sent
        while not stop.is_set():
            log.append(rows(sent, 5))
            sent += 5
            time.sleep(0.002)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(2.6)
    stop.set()
    producer.join()
    log.close()
    assert log.commits <= 2.6 / 0.5 + 2  # not back to back while rows keep arriving
    written = engine.read(INFERENCE_LOG_TABLE, columns=["request_id"])["request_id"]
    assert written.len() == sent == log.rows_written
    assert written.n_unique() == sent


def test_a_failed_commit_keeps_its_rows_for_the_next_flush(tmp_path, monkeypatch):
    engine = DeltaEngine(str(tmp_path))
    log = InferenceLog(engine, log_schema(product()), flush_seconds=3600)
    real_append, calls = engine.append, []

    def flaky(table, frame, **kwargs):
        calls.append(frame.height)
        if len(calls) == 1:
            raise OSError("disk full")
        return real_append(table, frame, **kwargs)

    monkeypatch.setattr(engine, "append", flaky)
    log.append(rows(0, 10))
    with pytest.raises(OSError, match="disk full"):
        log.flush()
    log.append(rows(10, 5))
    log.close()
    assert calls == [10, 15]
    assert engine.read(INFERENCE_LOG_TABLE).height == 15


class Scorer:
    def __init__(self, version: int, fail: bool = False):
        self.version, self.fail, self.calls = version, fail, 0

    def predict(self, features: list[dict]) -> list[float]:
        self.calls += 1
        if self.fail:
            raise RuntimeError("model broke")
        return [f["amount"] / 10 for f in features]


def test_the_model_that_did_not_answer_is_scored_by_the_writer_in_one_call(tmp_path):
    engine = DeltaEngine(str(tmp_path))
    shadow, broken = Scorer(2), Scorer(1, fail=True)
    logged = [
        record(
            product(),
            f"s{i}",
            datetime(2026, 1, 1),
            "predict",
            LoadedModel("m", 1, None),
            {"customer_id": i},
            {"amount": float(i)},
            {},
            0.5,
            1.0,
            rollout="shadow",
            shadow=shadow,
        )
        for i in range(4)
    ]
    logged.append(
        record(
            product(),
            "c",
            datetime(2026, 1, 1),
            "predict",
            LoadedModel("m", 3, None),
            {"customer_id": 9},
            {"amount": 9.0},
            {},
            0.7,
            1.0,
            rollout="canary",
            served_by="challenger",
            shadow=broken,
        )
    )
    log = InferenceLog(engine, log_schema(product()), flush_seconds=60)
    log.append(logged)
    log.close()
    frame = engine.read(INFERENCE_LOG_TABLE).sort("request_id")
    assert shadow.calls == 1  # every shadow row of the flush in one call
    shadowed = frame.filter(frame["rollout"] == "shadow")
    assert shadowed["champion_prediction"].to_list() == [0.5] * 4
    assert shadowed["challenger_version"].to_list() == [2] * 4
    assert shadowed["challenger_prediction"].to_list() == [0.0, 0.1, 0.2, 0.3]
    canary = frame.filter(frame["rollout"] == "canary").row(0, named=True)
    assert (
        canary["served_by"],
        canary["challenger_version"],
        canary["challenger_prediction"],
        canary["champion_version"],
    ) == ("challenger", 3, 0.7, 1)
    assert canary["champion_prediction"] is None  # the failing model: row kept, score missing
