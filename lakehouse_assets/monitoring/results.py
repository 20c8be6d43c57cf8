"""The outcomes of the monitors (drift and quality evaluations) as the retrain sensor reads
them: kept apart from the monitors, so readers do not import Evidently."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.products.spec import Product
from lakehouse_assets.tables import DRIFT_TABLE, QUALITY_TABLE

ONLINE_KINDS = ("feature_drift", "prediction_drift", "model_quality", "online_comparison")


def online_prefix(product: Product, default: Product | None) -> str:
    """What an online product's monitor names start with: nothing for the default product (its
    monitors keep the names they had before products: feature_drift, ...), else ``<product>_``."""
    return "" if default is not None and product.name == default.name else f"{product.name}_"


def batch_quality_monitor(product: Product) -> str:
    """The quality monitor's name of a batch-scored product (rows in monitoring/model_quality)."""
    return f"{product.name}_batch_quality"


def batch_drift_monitor(product: Product) -> str:
    """The drift monitor's name of a batch-scored product (rows in monitoring/drift_metrics)."""
    return f"{product.name}_batch_drift"


def product_monitors(product: Product, default: Product | None) -> list[str]:
    """The names of ``product``'s monitors: those of its online traffic and of its batch scores."""
    names = []
    if product.spec.serving.online:
        names += [f"{online_prefix(product, default)}{kind}" for kind in ONLINE_KINDS]
    if product.spec.serving.batch is not None:
        names += [batch_quality_monitor(product), batch_drift_monitor(product)]
    return names


def failed_monitor_evaluations(frame: pl.DataFrame, after: datetime | None) -> list[str]:
    """Times of monitor evaluations after ``after`` that failed (drift or quality)."""
    if after is not None:
        frame = frame.filter(pl.col("computed_at") > after)
    return sorted({str(t) for t in frame.filter(~pl.col("ok"))["computed_at"].to_list()})


def monitor_results(engine: LakeEngine) -> pl.DataFrame:
    """Every drift and quality evaluation: when, which monitor, whether it passed."""
    parts = []
    if engine.version(DRIFT_TABLE) is not None:
        parts.append(
            engine.read(DRIFT_TABLE, columns=["computed_at", "monitor", "dataset_drift"]).select(
                "computed_at", "monitor", ok=~pl.col("dataset_drift")
            )
        )
    if engine.version(QUALITY_TABLE) is not None:
        parts.append(
            engine.read(QUALITY_TABLE, columns=["computed_at", "monitor", "passed"]).select(
                "computed_at", "monitor", ok=pl.col("passed")
            )
        )
    if not parts:
        return pl.DataFrame(schema={"computed_at": pl.Datetime("us"), "monitor": pl.String, "ok": pl.Boolean})
    return pl.concat(parts)


def newest_label_time(engine: LakeEngine, table: str, known_at: str = "label_known_at") -> str | None:
    """When the newest label of ``table`` became known (its ``known_at`` column), as text."""
    if engine.version(table) is None:
        return None
    newest = engine.read(table, columns=[known_at])[known_at].max()
    return None if newest is None else str(newest)


@dataclass
class ProductStatus:
    """Where a data product stands: its aliases, its newest version's time, its monitors."""

    champion: str | None
    challenger: str | None
    last_trained: str | None
    monitoring: str


def product_status(
    client: MlflowClient, engine: LakeEngine, product: Product, monitors: list[str]
) -> ProductStatus:
    """The registry's champion and challenger of ``product``, when its newest version was
    registered, and the outcome of the newest evaluations of its ``monitors``."""
    name = product.spec.model_name
    aliases: dict[str, str | None] = {}
    for alias in ("champion", "challenger"):
        try:
            aliases[alias] = f"v{client.get_model_version_by_alias(name, alias).version}"
        except MlflowException:
            aliases[alias] = None
    try:
        versions = client.search_model_versions(f"name = '{name}'")
        newest = max((v.creation_timestamp for v in versions), default=None)
    except MlflowException:
        newest = None
    trained = None if newest is None else str(datetime.fromtimestamp(newest / 1000, UTC).replace(tzinfo=None))
    if not monitors:
        state = "not monitored (neither online nor batch)"
    else:
        results = monitor_results(engine).filter(pl.col("monitor").is_in(monitors))
        if results.height == 0:
            state = "no evaluations yet"
        else:
            latest = results.sort("computed_at").group_by("monitor").last()
            failing = sorted(latest.filter(~pl.col("ok"))["monitor"].to_list())
            state = f"failing: {', '.join(failing)}" if failing else f"{latest.height} monitors passing"
    return ProductStatus(aliases["champion"], aliases["challenger"], trained, state)
