"""Lake engines: one protocol, one implementation per engine (embedded delta-rs now, Spark later)."""

from lakehouse_assets.engine.base import (
    AppTransaction,
    CommitResult,
    ConcurrentWriteError,
    LakeEngine,
    MergeClause,
    TableNotFoundError,
)
from lakehouse_assets.engine.delta import DeltaEngine

__all__ = [
    "AppTransaction",
    "CommitResult",
    "ConcurrentWriteError",
    "DeltaEngine",
    "LakeEngine",
    "MergeClause",
    "TableNotFoundError",
]
