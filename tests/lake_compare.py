"""Comparing lake tables written by two different paths (engines, sources)."""

import polars as pl


def stable(frame: pl.DataFrame, ignore: set[str]) -> pl.DataFrame:
    """The table without the ``ignore`` columns, columns and rows in a fixed order."""
    frame = frame.drop([c for c in frame.columns if c in ignore])
    return frame.select(sorted(frame.columns)).sort(sorted(frame.columns), nulls_last=True)
