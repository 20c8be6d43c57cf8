"""Helpers the benchmark scripts share (run as `python benchmarks/<name>.py`, so this folder is on
the import path)."""

import asyncio
import multiprocessing
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from queue import Empty
from typing import Any

import httpx


def in_child(target: Callable[..., None], *args: Any) -> Any:
    """Run ``target(*args, queue)`` in a fresh (spawned) process and return what it put on the
    queue: each measured run gets its own memory high-water mark."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    while True:
        try:
            outcome = queue.get(timeout=1.0)
            break
        except Empty:
            if process.exitcode is not None and queue.empty():  # died without an answer (OOM kill)
                code = process.exitcode
                raise ChildDied(f"{target.__name__} exited with {code} before it reported") from None
    process.join()
    return outcome


class ChildDied(RuntimeError):
    """A measured run's process ended without a result (killed for memory, for example)."""


def measured(label: str, target: Callable[..., None], *args: Any) -> Any:
    """``in_child``'s outcome, or None (printing why) when the process died: killed for memory,
    the point of a scale curve where an engine stops fitting."""
    try:
        return in_child(target, *args)
    except ChildDied as died:
        print(f"{label}: did not complete: {died}", flush=True)
        return None


def executor_peaks() -> int:
    """The summed memory high-water marks of this machine's Spark standalone executors."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if b"CoarseGrainedExecutorBackend" in (status.parent / "cmdline").read_bytes():
                total += peak_bytes(status.parent.name)
        except OSError:  # the process ended meanwhile
            continue
    return total


def peak_bytes(pid: int | str = "self") -> int:
    """A process's memory high-water mark (VmHWM). Not ``ru_maxrss``: a spawned child's carries
    the parent's RSS at the fork over the exec."""
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return int(fields["VmHWM"].split()[0]) * 1024


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds of durations in seconds."""
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] * 1e3, ordered[int(len(ordered) * 0.99)] * 1e3


CLIENTS = 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], env: dict[str, str], ready_url: str) -> subprocess.Popen:
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[:4]} exited with {process.returncode}")
        try:
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(ready_url)


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=60)


async def closed_loop(call, bodies: list[dict]) -> tuple[float, list[float]]:
    """CLIENTS workers take the next body as soon as their last call returns."""
    queue = list(reversed(bodies))
    latencies: list[float] = []

    async def worker() -> None:
        while queue:
            body = queue.pop()
            started = time.perf_counter()
            await call(body)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return len(bodies) / (time.perf_counter() - started), latencies


async def open_loop(call, bodies: list[dict], rate: float) -> tuple[float, list[float]]:
    """Requests start on a fixed schedule (rate per second), whatever the replies do."""
    latencies: list[float] = []
    limit = asyncio.Semaphore(CLIENTS * 8)

    async def one(body: dict, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        async with limit:
            started = time.perf_counter()
            await call(body)
            latencies.append(time.perf_counter() - started)

    begin = time.perf_counter() + 0.1
    await asyncio.gather(*(one(b, begin + i / rate) for i, b in enumerate(bodies)))
    return len(bodies) / (time.perf_counter() - begin), latencies
