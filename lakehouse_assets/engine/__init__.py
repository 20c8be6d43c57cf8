"""Lake engines: one protocol, one implementation per engine (embedded delta-rs now, Spark later)."""

from lakehouse_assets.engine.base import AppTransaction, CommitResult, LakeEngine, TableNotFoundError
from lakehouse_assets.engine.delta import DeltaEngine

__all__ = ["AppTransaction", "CommitResult", "DeltaEngine", "LakeEngine", "TableNotFoundError"]
