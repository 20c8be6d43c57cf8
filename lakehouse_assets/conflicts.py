"""Retrying exactly-once writes that lost a commit race to a concurrent writer."""

from collections.abc import Callable
from typing import TypeVar

from dagster import AssetExecutionContext

from lakehouse_assets.engine import ConcurrentWriteError

T = TypeVar("T")


def retry_on_conflict(context: AssetExecutionContext, write: Callable[[], T], attempts: int = 3) -> T:
    """Run an exactly-once write again when a concurrent writer won the commit: the retry re-reads
    what is already committed, so it continues where the other writer stopped."""
    for attempt in range(1, attempts + 1):
        try:
            return write()
        except ConcurrentWriteError as exc:
            if attempt == attempts:
                raise
            context.log.warning(f"concurrent writer committed first, retrying ({exc})")
    raise AssertionError("unreachable")
