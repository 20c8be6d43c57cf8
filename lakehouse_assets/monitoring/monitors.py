"""The monitors behind the monitoring assets: feature and prediction drift of the served traffic
(and of the newest gold orders) against the champion's training data, model quality once labels
arrive, and the serving system's health. Each appends its results to a Delta table under
lake/monitoring, a time series the sensors, dashboards and the Evidently UI read."""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import polars as pl
from mlflow import MlflowClient

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.registry.promotion import CHAMPION, require_skops
from lakehouse_assets.serving.inference_log import SCHEMA
from lakehouse_assets.settings import MonitoringSettings
from lakehouse_assets.tables import (
    DRIFT_TABLE,
    FCT_ORDERS_TABLE,
    HEALTH_TABLE,
    INFERENCE_LOG_TABLE,
    QUALITY_TABLE,
    TRAINING_SET_TABLE,
)
from lakehouse_assets.training.dataset import (
    CATEGORICAL_FEATURES,
    LABEL,
    NUMERIC_FEATURES,
    model_input,
)
from lakehouse_assets.training.metrics import classification_metrics

if TYPE_CHECKING:  # Evidently takes seconds to import: only the monitors that run load it
    from evidently.core.report import Snapshot

    from lakehouse_assets.monitoring.drift import DriftResult
GOLD_DRIFT_COLUMNS = {
    "amount": "amount",
    "discount": "discount",
    "n_lines": "basket_lines",
    "n_items": "basket_units",
}  # gold fct_orders column -> model feature


def now() -> datetime:
    """The current UTC time without a time zone, as the lake's tables store it."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Champion:
    """The model being monitored: its version and the metrics it had on its holdout."""

    name: str
    version: int
    training_set_version: int
    train_from: str
    train_to: str
    holdout_metrics: dict[str, float]
    model_uri: str


def champion(client: MlflowClient, name: str) -> Champion | None:
    """The champion's version, its training data (table version and window) and its holdout
    metrics, from the registry; None before the first promotion."""
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None
    tags = version.tags
    missing = [t for t in ("training_set_version", "window_train_from", "window_train_to") if t not in tags]
    if missing:
        raise ValueError(
            f"{name} version {version.version} (the champion) lacks the tags "
            f"{missing}: monitoring needs to know its training data; register "
            "models through the return_risk_challenger asset"
        )
    metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
    return Champion(
        name,
        int(version.version),
        int(tags["training_set_version"]),
        tags["window_train_from"],
        tags["window_train_to"],
        dict(metrics),
        f"models:/{name}/{version.version}",
    )


def reference_data(engine: LakeEngine, model: Champion) -> pl.DataFrame:
    """The rows the champion was trained on: its training set version, its training window."""
    frame = engine.read(TRAINING_SET_TABLE, version=model.training_set_version)
    start, end = datetime.fromisoformat(model.train_from), datetime.fromisoformat(model.train_to)
    return frame.filter(pl.col("order_ts").is_between(start, end))


@dataclass
class Window:
    """The slice of a log a monitor judges, and why (for the metadata)."""

    frame: pl.DataFrame
    start: datetime | None
    end: datetime | None
    note: str


def read_inference_log(engine: LakeEngine) -> pl.DataFrame:
    """The inference log with every current column (rows logged before a column was added
    have it as null)."""
    frame = engine.read(INFERENCE_LOG_TABLE)
    return frame.with_columns(
        pl.lit(None, dtype).alias(name) for name, dtype in SCHEMA.items() if name not in frame.columns
    )


def last_window_end(engine: LakeEngine, table: str, monitor: str) -> datetime | None:
    """Where this monitor's previous traffic window ended (rows of other sources, e.g. the gold
    window of feature_drift, end at other clocks and do not count)."""
    if engine.version(table) is None:
        return None
    rows = engine.read(table).filter(pl.col("monitor") == monitor)
    if "source" in rows.columns:
        rows = rows.filter(pl.col("source") == "inference_log")
    return rows["window_end"].max() if rows.height else None  # type: ignore[return-value]


def traffic_window(engine: LakeEngine, monitor: str, table: str, min_rows: int) -> Window:
    """Inference log rows served since this monitor's previous window, extended back to at least
    ``min_rows`` rows; empty when the whole log is shorter."""
    if engine.version(INFERENCE_LOG_TABLE) is None:
        return Window(pl.DataFrame(), None, None, "no inference log yet")
    log = read_inference_log(engine).sort("served_at")
    if log.height < min_rows:
        return Window(
            pl.DataFrame(), None, None, f"{log.height} predictions logged; at least {min_rows} needed"
        )
    previous = last_window_end(engine, table, monitor)
    new = log if previous is None else log.filter(pl.col("served_at") > previous)
    frame = new if new.height >= min_rows else log.tail(min_rows)
    note = f"{new.height} predictions since the last check" + (
        "" if new.height >= min_rows else f", extended to the latest {min_rows}"
    )
    start, end = frame["served_at"].min(), frame["served_at"].max()
    return Window(frame, start, end, note)  # type: ignore[arg-type]


def drift_rows(
    monitor: str, source: str, result: DriftResult, window: Window, model_version: int, report: Path
) -> pl.DataFrame:
    """Rows of the drift time series for one evaluation, one per column."""
    computed = now()
    return pl.DataFrame(
        [
            {
                "computed_at": computed,
                "monitor": monitor,
                "source": source,
                "model_version": model_version,
                "column": c.column,
                "method": c.method,
                "threshold": c.threshold,
                "score": c.score,
                "drifted": c.drifted,
                "dataset_drift": result.dataset_drift,
                "reference_rows": result.reference_rows,
                "current_rows": result.current_rows,
                "sampled_rows": result.sampled_rows,
                "window_start": window.start,
                "window_end": window.end,
                "report": str(report),
            }
            for c in result.columns
        ],
        schema_overrides={"window_start": pl.Datetime("us"), "window_end": pl.Datetime("us")},
    )


@dataclass
class MonitorOutcome:
    """What one monitor found: passed (None: skipped, nothing to judge), a summary per source
    and the report files."""

    passed: bool | None
    summary: dict[str, Any] = field(default_factory=dict)
    reports: dict[str, Path] = field(default_factory=dict)
    note: str = ""


WORKSPACE_PROJECT = "return_risk monitoring"


def publish(snapshot: Snapshot, reports_dir: Path, monitor: str, source: str) -> Path:
    """The report as HTML under ``reports_dir/monitor``, and the snapshot in the local Evidently
    workspace (``reports_dir/workspace``) that `lakehouse monitor-ui` shows."""
    path = reports_dir / monitor / f"{now():%Y%m%dT%H%M%S%f}_{source}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    from evidently.ui.workspace import Workspace

    workspace = Workspace.create(str(reports_dir / "workspace"))
    found = workspace.search_project(WORKSPACE_PROJECT)
    project = (
        found[0]
        if found
        else workspace.create_project(
            WORKSPACE_PROJECT, description="Drift and quality of the return-risk champion"
        )
    )
    workspace.add_run(project.id, snapshot, name=f"{monitor} {source}")
    return path


def feature_drift(
    engine: LakeEngine, model: Champion, settings: MonitoringSettings, reports_dir: Path
) -> MonitorOutcome:
    """Drift of the served features (and of the newest gold orders) from the training data."""
    from lakehouse_assets.monitoring.drift import data_drift

    reference = reference_data(engine, model)
    window = traffic_window(engine, "feature_drift", DRIFT_TABLE, settings.min_window_rows)
    sources: dict[str, tuple[pl.DataFrame, Window, list[str], list[str]]] = {}
    if window.frame.height:
        sources["inference_log"] = (window.frame, window, NUMERIC_FEATURES, CATEGORICAL_FEATURES)
    gold = newest_gold_orders(engine, settings.gold_window_days)
    if gold.frame.height:
        sources["gold"] = (gold.frame, gold, list(GOLD_DRIFT_COLUMNS.values()), [])
    outcome = MonitorOutcome(None, note=window.note)
    for source, (current, part, numeric, categorical) in sources.items():
        result = data_drift(
            reference, current, numeric, categorical, settings.sample_rows, drift_share=settings.drift_share
        )
        path = publish(result.snapshot, reports_dir, "feature_drift", source)
        engine.append(DRIFT_TABLE, drift_rows("feature_drift", source, result, part, model.version, path))
        outcome.summary[source] = result.summary()
        outcome.reports[source] = path
        outcome.passed = (outcome.passed is not False) and not result.dataset_drift
    return outcome


def newest_gold_orders(engine: LakeEngine, days: int) -> Window:
    """The newest ``days`` days of gold orders, in the model's feature names."""
    if engine.version(FCT_ORDERS_TABLE) is None:
        return Window(pl.DataFrame(), None, None, "no gold orders")
    orders = engine.read(FCT_ORDERS_TABLE, columns=["order_ts", *GOLD_DRIFT_COLUMNS])
    end = orders["order_ts"].max()
    start = end - timedelta(days=days)  # type: ignore[operator]
    frame = orders.filter(pl.col("order_ts") > start).rename(GOLD_DRIFT_COLUMNS)
    return Window(frame, start, end, f"gold orders after {start}")  # type: ignore[arg-type]


def prediction_drift(
    engine: LakeEngine, model: Champion, settings: MonitoringSettings, reports_dir: Path
) -> MonitorOutcome:
    """Drift of the served probabilities from the champion's scores on its training data."""
    from lakehouse_assets.monitoring.drift import data_drift

    window = traffic_window(engine, "prediction_drift", DRIFT_TABLE, settings.min_window_rows)
    if not window.frame.height:
        return MonitorOutcome(None, note=window.note)
    reference = reference_data(engine, model)
    require_skops(model.model_uri)
    pipeline = mlflow.sklearn.load_model(model.model_uri)
    scored = pl.DataFrame({"return_probability": pipeline.predict_proba(model_input(reference))[:, 1]})
    served = window.frame.select(champion_score()).drop_nulls()
    result = data_drift(scored, served, ["return_probability"], [], settings.sample_rows, drift_share=1.0)
    path = publish(result.snapshot, reports_dir, "prediction_drift", "inference_log")
    engine.append(
        DRIFT_TABLE, drift_rows("prediction_drift", "inference_log", result, window, model.version, path)
    )
    return MonitorOutcome(
        not result.dataset_drift, {"inference_log": result.summary()}, {"inference_log": path}, window.note
    )


def champion_score() -> pl.Expr:
    """The champion's score of a logged request, also where a canary challenger answered (null
    when its shadow scoring failed); rows logged before the rollout columns: the served score."""
    return (
        pl.when(pl.col("champion_version").is_null())
        .then(pl.col("return_probability"))
        .otherwise(pl.col("champion_probability"))
        .alias("return_probability")
    )


def labelled_predictions(engine: LakeEngine, model_version: int) -> pl.DataFrame:
    """The model's logged scores (as champion: also of requests a canary challenger answered)
    whose order has a known label."""
    if engine.version(INFERENCE_LOG_TABLE) is None or engine.version(FCT_ORDERS_TABLE) is None:
        return pl.DataFrame()
    log = (
        read_inference_log(engine)
        .with_columns(
            pl.coalesce("champion_version", "model_version").alias("model_version"),
            champion_score(),
        )
        .filter(
            (pl.col("model_version") == model_version)
            & pl.col("order_id").is_not_null()
            & pl.col("return_probability").is_not_null()
        )
    )
    labels = engine.read(FCT_ORDERS_TABLE, columns=["order_id", LABEL, "label_known_at"]).filter(
        pl.col(LABEL).is_not_null()
    )
    # the newest prediction per order (a retried request is one order)
    return log.sort("served_at").unique("order_id", keep="last").join(labels, on="order_id")


def model_quality(
    engine: LakeEngine, model: Champion, settings: MonitoringSettings, reports_dir: Path, threshold: float
) -> MonitorOutcome:
    """Classification quality of the champion on its labelled live predictions, against the
    floor and against its own holdout value."""
    frame = labelled_predictions(engine, model.version)
    if frame.height < settings.min_labelled_rows or frame[LABEL].n_unique() < 2:
        return MonitorOutcome(
            None,
            note=f"{frame.height} labelled predictions of version "
            f"{model.version}; at least {settings.min_labelled_rows} with both "
            "outcomes needed",
        )
    y = frame[LABEL].cast(pl.Int64).to_numpy()
    metrics = classification_metrics(y, frame["return_probability"].to_numpy(), threshold)
    metric = settings.quality_metric
    value, baseline = metrics[metric], model.holdout_metrics.get(metric, np.nan)
    passed = value >= settings.quality_floor and not (baseline - value > settings.quality_max_drop)
    path = publish(classification_report(frame), reports_dir, "model_quality", "labels")
    engine.append(
        QUALITY_TABLE,
        pl.DataFrame(
            [
                {
                    "computed_at": now(),
                    "monitor": "model_quality",
                    "model_version": model.version,
                    "window_start": frame["served_at"].min(),
                    "window_end": frame["served_at"].max(),
                    "labelled_rows": frame.height,
                    **metrics,
                    "metric": metric,
                    "holdout_value": baseline,
                    "floor": settings.quality_floor,
                    "max_drop": settings.quality_max_drop,
                    "passed": passed,
                    "report": str(path),
                }
            ]
        ),
    )
    return MonitorOutcome(
        passed,
        {"labels": {**metrics, "labelled_rows": frame.height, f"holdout_{metric}": baseline}},
        {"labels": path},
    )


def classification_report(frame: pl.DataFrame) -> Snapshot:
    """Evidently's classification preset over the labelled predictions."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    data = frame.select(
        pl.col(LABEL).cast(pl.Int64).alias("target"), pl.col("return_probability").alias("prediction")
    ).to_pandas()
    definition = DataDefinition(
        classification=[BinaryClassification(target="target", prediction_probas="prediction", pos_label=1)]
    )
    return Report([ClassificationPreset()]).run(Dataset.from_pandas(data, data_definition=definition), None)


_SAMPLE = re.compile(r'^lakehouse_serving_requests_total\{path="([^"]*)",status="(\d+)"\} (\S+)$')


def scrape_requests(url: str, timeout: float = 3.0) -> dict[str, float] | str:
    """Requests by status class from the service's /metrics, or why they could not be read."""
    if not url.startswith(("http://", "https://")):
        return f"monitoring.serving_url {url!r} is not an http(s) URL"
    try:
        with urllib.request.urlopen(  # noqa: S310 (an http(s) URL, checked above)
            f"{url.rstrip('/')}/metrics", timeout=timeout
        ) as response:
            text = response.read().decode()
    except OSError as error:
        return f"service metrics unreachable at {url}: {error}"
    counts: dict[str, float] = {"2xx": 0.0, "4xx": 0.0, "5xx": 0.0}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match.group(1).startswith("/v1/"):
            key = f"{match.group(2)[0]}xx"
            counts[key] = counts.get(key, 0.0) + float(match.group(3))
    return counts


def system_health(engine: LakeEngine, settings: MonitoringSettings) -> MonitorOutcome:
    """Latency percentiles of the recent traffic (inference log) and the service's error rate
    (its /metrics, when reachable), against the objectives."""
    window = traffic_window(engine, "system_health", HEALTH_TABLE, settings.min_window_rows)
    if not window.frame.height:
        return MonitorOutcome(None, note=window.note)
    latency = window.frame["latency_ms"]
    p50, p95, p99 = (float(latency.quantile(q, "nearest")) for q in (0.5, 0.95, 0.99))  # type: ignore[arg-type]
    counts = scrape_requests(settings.serving_url)
    errors = None if isinstance(counts, str) else counts["5xx"] / max(sum(counts.values()), 1.0)
    passed = p99 <= settings.latency_p99_ms and (errors is None or errors <= settings.max_error_rate)
    engine.append(
        HEALTH_TABLE,
        pl.DataFrame(
            [
                {
                    "computed_at": now(),
                    "monitor": "system_health",
                    "window_start": window.start,
                    "window_end": window.end,
                    "requests": window.frame.height,
                    "p50_ms": p50,
                    "p95_ms": p95,
                    "p99_ms": p99,
                    "error_rate": errors,
                    "passed": passed,
                }
            ],
            schema_overrides={"error_rate": pl.Float64},
        ),
    )
    summary = {
        "requests": window.frame.height,
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "error_rate": errors if errors is not None else counts,
    }
    return MonitorOutcome(passed, {"serving": summary}, note=window.note)
