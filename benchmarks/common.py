"""Helpers the benchmark scripts share (run as `python benchmarks/<name>.py`, so this folder is on
the import path)."""

import multiprocessing
from collections.abc import Callable
from typing import Any


def in_child(target: Callable[..., None], *args: Any) -> Any:
    """Run ``target(*args, queue)`` in a fresh (spawned) process and return what it put on the
    queue: each measured run gets its own memory high-water mark."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    outcome = queue.get()
    process.join()
    return outcome


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds of durations in seconds."""
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] * 1e3, ordered[int(len(ordered) * 0.99)] * 1e3
