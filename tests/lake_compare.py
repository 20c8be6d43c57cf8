"""Comparing lake tables written by two different paths (engines, sources)."""

import os
from pathlib import Path

import polars as pl


def stable(frame: pl.DataFrame, ignore: set[str]) -> pl.DataFrame:
    """The table without the ``ignore`` columns, columns and rows in a fixed order."""
    frame = frame.drop([c for c in frame.columns if c in ignore])
    return frame.select(sorted(frame.columns)).sort(sorted(frame.columns), nulls_last=True)


def delta_tables(lake_root: str | Path) -> list[str]:
    """Every Delta table folder under a local lake, found by walking the folders: an oracle
    independent of the engine's own listing."""
    root = Path(lake_root)
    found = []
    for current, dirs, _ in os.walk(root):
        if "_delta_log" in dirs:
            found.append(Path(current).relative_to(root).as_posix())
            dirs[:] = []
    return sorted(t for t in found if "/" in t)
