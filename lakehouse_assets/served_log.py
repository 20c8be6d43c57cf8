"""Reading the scoring service's inference log (lake/serving/inference_log), which every served
product appends to: one product's rows, with every current column. Rows logged before a column
existed have it as null; rows logged before products had their own routes (no `product`
column, the score in `return_probability`) are read as their model's rows with that score."""

from __future__ import annotations

import polars as pl

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.tables import INFERENCE_LOG_TABLE

# columns of the log before it served several products, and what they are called now
RENAMED = {
    "return_probability": "prediction",
    "champion_probability": "champion_prediction",
    "challenger_probability": "challenger_prediction",
    "product_features": "line_features",
}


def current_names(frame: pl.DataFrame) -> pl.DataFrame:
    """Log rows with the columns of their first names (``RENAMED``) under the current ones."""
    for old, new in RENAMED.items():
        if old in frame.columns:
            current = pl.col(new) if new in frame.columns else pl.lit(None, frame.schema[old])
            frame = frame.with_columns(pl.coalesce(current, pl.col(old)).alias(new)).drop(old)
    return frame


def read_served(
    engine: LakeEngine, product: str | None = None, columns: list[str] | None = None
) -> pl.DataFrame:
    """The log's rows of ``product`` (all rows when None), ``columns`` only when given (each
    must exist in the current schema); empty with no columns when nothing was served yet."""
    if engine.version(INFERENCE_LOG_TABLE) is None:
        return pl.DataFrame()
    stored = engine.schema(INFERENCE_LOG_TABLE).names
    wanted = None
    if columns is not None:
        old = [o for o, new in RENAMED.items() if new in columns and o in stored]
        wanted = sorted(
            {*(c for c in columns if c in stored), *old, *({"product", "model_name"} & set(stored))}
        )
    frame = current_names(engine.read(INFERENCE_LOG_TABLE, columns=wanted))
    if product is not None:
        owner = (
            pl.coalesce("product", "model_name")
            if "product" in frame.columns
            else pl.col("model_name")
            if "model_name" in frame.columns
            else pl.lit(product)
        )
        frame = frame.filter(owner == product)
    if columns is not None:
        frame = frame.select([c for c in columns if c in frame.columns])
    return frame
