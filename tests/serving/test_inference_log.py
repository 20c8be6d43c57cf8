"""The inference log's writer: one commit per interval under load, nothing lost on failure or
shutdown."""

import threading
import time
from datetime import datetime

import pytest

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.serving.inference_log import INFERENCE_LOG_TABLE, InferenceLog, record


def rows(start: int, count: int) -> list[dict]:
    return [record(f"r{i}", datetime(2026, 1, 1), "predict", "m", 1,
                   {"customer_id": i, "items": []}, {"amount": 1.0, "segment": "regular"},
                   {}, 0.5, 1.0) for i in range(start, start + count)]


def test_a_busy_service_commits_once_per_interval_and_close_writes_the_rest(tmp_path):
    engine = DeltaEngine(str(tmp_path))
    log = InferenceLog(engine, flush_seconds=0.5)
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
    log = InferenceLog(engine, flush_seconds=3600)
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
