"""Micro-batching: concurrent requests share one call, each gets its own results."""

import asyncio

import pytest

from lakehouse_assets.serving.batching import MicroBatcher


def test_concurrent_requests_are_scored_together_and_answered_in_order():
    calls = []

    def run(items):
        calls.append(list(items))
        return [i * 10 for i in items]

    async def scenario():
        batcher = MicroBatcher(run, window_seconds=0.01, max_items=100)
        return await asyncio.gather(batcher.submit([1, 2]), batcher.submit([3]), batcher.submit([4, 5, 6]))

    assert asyncio.run(scenario()) == [[10, 20], [30], [40, 50, 60]]
    assert calls == [[1, 2, 3, 4, 5, 6]]  # one call for all three requests


def test_a_full_batch_runs_at_once_and_errors_reach_every_caller():
    def run(items):
        if 0 in items:
            raise ValueError("bad item 0")
        return items

    async def scenario():
        batcher = MicroBatcher(run, window_seconds=60, max_items=3)  # full before the window
        first = await asyncio.wait_for(batcher.submit([1, 2, 3]), timeout=5)
        failing = await asyncio.gather(batcher.submit([0]), batcher.submit([4, 5]), return_exceptions=True)
        return first, failing

    first, failing = asyncio.run(scenario())
    assert first == [1, 2, 3]
    assert all(isinstance(e, ValueError) for e in failing)


@pytest.mark.parametrize("window", [0.0, 0.002])
def test_a_lone_request_waits_at_most_the_window(window):
    async def scenario():
        batcher = MicroBatcher(lambda items: items, window_seconds=window, max_items=100)
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await batcher.submit(["x"])
        return result, loop.time() - started

    result, waited = asyncio.run(scenario())
    assert result == ["x"] and waited < window + 0.05
