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
from lakehouse_assets.monitoring.results import batch_drift_monitor, batch_quality_monitor
from lakehouse_assets.products.spec import Product
from lakehouse_assets.registry.promotion import CHAMPION, require_skops
from lakehouse_assets.served_log import read_served
from lakehouse_assets.serving.inference_log import SCHEMA
from lakehouse_assets.settings import MonitoringSettings
from lakehouse_assets.tables import (
    DRIFT_TABLE,
    HEALTH_TABLE,
    INFERENCE_LOG_TABLE,
    QUALITY_TABLE,
    gold_table,
    scores_table,
    training_set_table,
)
from lakehouse_assets.training.dataset import model_input
from lakehouse_assets.training.metrics import task_metrics

if TYPE_CHECKING:  # Evidently takes seconds to import: only the monitors that run load it
    from evidently.core.report import Snapshot

    from lakehouse_assets.monitoring.drift import DriftResult


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
            f"models through the {name}_challenger asset"
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


def reference_data(engine: LakeEngine, model: Champion, product: Product) -> pl.DataFrame:
    """The rows the champion was trained on: its training set version, its training window."""
    frame = engine.read(training_set_table(product.name), version=model.training_set_version)
    start, end = datetime.fromisoformat(model.train_from), datetime.fromisoformat(model.train_to)
    return frame.filter(pl.col(product.time).is_between(start, end))


@dataclass
class Window:
    """The slice of a log a monitor judges, and why (for the metadata)."""

    frame: pl.DataFrame
    start: datetime | None
    end: datetime | None
    note: str


def read_inference_log(engine: LakeEngine, product: str | None = None) -> pl.DataFrame:
    """The inference log's rows of ``product`` (all when None) with every current common column
    (rows logged before a column was added have it as null); empty when nothing was served."""
    frame = read_served(engine, product)
    if not frame.columns:
        return frame
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


def traffic_window(
    engine: LakeEngine, monitor: str, table: str, min_rows: int, product: str | None = None
) -> Window:
    """Inference log rows (of ``product``; all when None) served since this monitor's previous
    window, extended back to at least ``min_rows`` rows; empty when the whole log is shorter."""
    if engine.version(INFERENCE_LOG_TABLE) is None:
        return Window(pl.DataFrame(), None, None, "no inference log yet")
    log = read_inference_log(engine, product).sort("served_at")
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


def workspace_project(product: str) -> str:
    """The Evidently UI project of a product's reports."""
    return f"{product} monitoring"


def publish(snapshot: Snapshot, reports_dir: Path, monitor: str, source: str, product: str) -> Path:
    """The report as HTML under ``reports_dir/monitor``, and the snapshot in the local Evidently
    workspace (``reports_dir/workspace``) that `lakehouse monitor-ui` shows."""
    path = reports_dir / monitor / f"{now():%Y%m%dT%H%M%S%f}_{source}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    from evidently.ui.workspace import Workspace

    workspace = Workspace.create(str(reports_dir / "workspace"))
    found = workspace.search_project(workspace_project(product))
    project = (
        found[0]
        if found
        else workspace.create_project(
            workspace_project(product), description=f"Drift and quality of the {product} champion"
        )
    )
    workspace.add_run(project.id, snapshot, name=f"{monitor} {source}")
    return path


def feature_drift(
    engine: LakeEngine,
    model: Champion,
    product: Product,
    settings: MonitoringSettings,
    reports_dir: Path,
    monitor: str = "feature_drift",
) -> MonitorOutcome:
    """Drift of the served features (and of the newest gold rows) from the training data."""
    from lakehouse_assets.monitoring.drift import data_drift

    reference = reference_data(engine, model, product)
    numeric, categorical = drift_columns(product)
    window = traffic_window(engine, monitor, DRIFT_TABLE, settings.min_window_rows, product.name)
    sources: dict[str, tuple[pl.DataFrame, Window, list[str], list[str]]] = {}
    if window.frame.height:
        sources["inference_log"] = (window.frame, window, numeric, categorical)
    gold = newest_gold_rows(engine, product, settings.gold_window_days)
    request = [c for c in product.spec.features.request if c in numeric]
    if gold.frame.height and request:
        sources["gold"] = (gold.frame, gold, request, [])
    outcome = MonitorOutcome(None, note=window.note)
    for source, (current, part, numeric, categorical) in sources.items():
        result = data_drift(
            reference,
            current,
            numeric,
            categorical,
            settings.sample_rows,
            drift_share=product.spec.monitoring.drift_share,
        )
        path = publish(result.snapshot, reports_dir, monitor, source, product.name)
        engine.append(DRIFT_TABLE, drift_rows(monitor, source, result, part, model.version, path))
        outcome.summary[source] = result.summary()
        outcome.reports[source] = path
        outcome.passed = (outcome.passed is not False) and not result.dataset_drift
    return outcome


def drift_columns(product: Product) -> tuple[list[str], list[str]]:
    """The declared drift columns (default: every model input), numeric and categorical."""
    watched = product.spec.monitoring.drift_columns or product.features
    return [c for c in product.numeric if c in watched], [c for c in product.categorical if c in watched]


def newest_gold_rows(engine: LakeEngine, product: Product, days: int) -> Window:
    """The newest ``days`` days of the product's gold label table: its request columns."""
    table = gold_table(product.spec.label.table)
    if engine.version(table) is None:
        return Window(pl.DataFrame(), None, None, f"no {table}")
    rows = engine.read(table, columns=[product.time, *product.spec.features.request])
    end = rows[product.time].max()
    start = end - timedelta(days=days)  # type: ignore[operator]
    frame = rows.filter(pl.col(product.time) > start)
    return Window(frame, start, end, f"gold rows after {start}")  # type: ignore[arg-type]


def prediction_drift(
    engine: LakeEngine,
    model: Champion,
    product: Product,
    settings: MonitoringSettings,
    reports_dir: Path,
    monitor: str = "prediction_drift",
) -> MonitorOutcome:
    """Drift of the served scores from the champion's scores on its training data."""
    from lakehouse_assets.monitoring.drift import data_drift

    window = traffic_window(engine, monitor, DRIFT_TABLE, settings.min_window_rows, product.name)
    if not window.frame.height:
        return MonitorOutcome(None, note=window.note)
    reference = reference_data(engine, model, product)
    require_skops(model.model_uri)
    pipeline = mlflow.sklearn.load_model(model.model_uri)
    inputs = model_input(reference, product, [str(c) for c in pipeline.feature_names_in_])
    predicted = (
        pipeline.predict_proba(inputs)[:, 1]
        if product.spec.task == "binary_classification"
        else pipeline.predict(inputs)
    )
    scored = pl.DataFrame({"prediction": np.asarray(predicted, dtype=float)})
    served = window.frame.select(champion_score()).drop_nulls()
    result = data_drift(scored, served, ["prediction"], [], settings.sample_rows, drift_share=1.0)
    path = publish(result.snapshot, reports_dir, monitor, "inference_log", product.name)
    engine.append(DRIFT_TABLE, drift_rows(monitor, "inference_log", result, window, model.version, path))
    return MonitorOutcome(
        not result.dataset_drift, {"inference_log": result.summary()}, {"inference_log": path}, window.note
    )


def champion_score() -> pl.Expr:
    """The champion's score of a logged request, also where a canary challenger answered (null
    when its shadow scoring failed); rows logged before the rollout columns: the served score."""
    return (
        pl.when(pl.col("champion_version").is_null())
        .then(pl.col("prediction"))
        .otherwise(pl.col("champion_prediction"))
        .alias("prediction")
    )


def labelled_predictions(engine: LakeEngine, model_version: int, product: Product) -> pl.DataFrame:
    """The model's logged scores (as champion: also of requests a canary challenger answered)
    whose row has a known label."""
    table = gold_table(product.spec.label.table)
    served = read_inference_log(engine, product.name)
    if served.is_empty() or engine.version(table) is None:
        return pl.DataFrame()
    log = served.with_columns(
        pl.coalesce("champion_version", "model_version").alias("model_version"),
        champion_score(),
    ).filter(
        (pl.col("model_version") == model_version)
        & pl.all_horizontal(pl.col(k).is_not_null() for k in product.keys)
        & pl.col("prediction").is_not_null()
    )
    label, known_at = product.label, product.spec.label.known_at
    labels = engine.read(table, columns=[*product.keys, label, known_at]).filter(pl.col(label).is_not_null())
    # the newest prediction per row (a retried request is one row)
    return log.sort("served_at").unique(product.keys, keep="last").join(labels, on=product.keys)


def model_quality(
    engine: LakeEngine,
    model: Champion,
    product: Product,
    settings: MonitoringSettings,
    reports_dir: Path,
    monitor: str = "model_quality",
) -> MonitorOutcome:
    """Quality of the champion on its labelled live predictions (the task's metrics), against
    the floor and against its own holdout value."""
    label, declared = product.label, product.spec.monitoring
    classifier = product.spec.task == "binary_classification"
    frame = labelled_predictions(engine, model.version, product)
    if frame.height < settings.min_labelled_rows or (classifier and frame[label].n_unique() < 2):
        return MonitorOutcome(
            None,
            note=f"{frame.height} labelled predictions of version "
            f"{model.version}; at least {settings.min_labelled_rows}"
            + (" with both outcomes" if classifier else "")
            + " needed",
        )
    y = frame[label].cast(pl.Int64 if classifier else pl.Float64).to_numpy()
    predicted = frame["prediction"].to_numpy()
    metrics = task_metrics(product.spec.task, y, predicted, product.spec.decision_threshold)
    metric = product.quality_metric
    floor = declared.quality_floor
    value, baseline = metrics[metric], model.holdout_metrics.get(metric, np.nan)
    sign = 1.0 if product.spec.better(metric) == "max" else -1.0
    dropped = sign * (baseline - value) > declared.quality_max_drop
    passed = (floor is None or sign * (value - floor) >= 0) and not dropped
    reports: dict[str, Path] = {}
    if classifier:
        reports["labels"] = publish(
            classification_report(frame, label), reports_dir, monitor, "labels", product.name
        )
    engine.append(
        QUALITY_TABLE,
        pl.DataFrame(
            [
                {
                    "computed_at": now(),
                    "monitor": monitor,
                    "model_name": product.spec.model_name,
                    "model_version": model.version,
                    "window_start": frame["served_at"].min(),
                    "window_end": frame["served_at"].max(),
                    "labelled_rows": frame.height,
                    **metrics,
                    "metric": metric,
                    "holdout_value": baseline,
                    "floor": floor,
                    "max_drop": declared.quality_max_drop,
                    "passed": passed,
                    "report": str(reports["labels"]) if reports else None,
                }
            ]
        ),
    )
    return MonitorOutcome(
        passed,
        {"labels": {**metrics, "labelled_rows": frame.height, f"holdout_{metric}": baseline}},
        reports,
    )


def classification_report(frame: pl.DataFrame, label: str) -> Snapshot:
    """Evidently's classification preset over the labelled predictions."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    data = frame.select(pl.col(label).cast(pl.Int64).alias("target"), pl.col("prediction")).to_pandas()
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


def batch_quality(
    engine: LakeEngine, model: Champion, product: Product, settings: MonitoringSettings
) -> MonitorOutcome:
    """The champion's batch predictions (gold/<product>_scores) against the labels that have
    arrived since (the actuals), on the product's quality metric: at least its floor (in the
    metric's direction) and within the allowed drop of the champion's holdout value."""
    scores, labels = scores_table(product.name), gold_table(product.spec.label.table)
    if engine.version(scores) is None or engine.version(labels) is None:
        return MonitorOutcome(None, note=f"no {scores} yet")
    keys, label, known_at = [*product.keys, product.time], product.label, product.spec.label.known_at
    predicted = engine.read(scores, columns=[*keys, "prediction", "model_version"]).filter(
        pl.col("model_version") == model.version
    )
    actual = engine.read(labels, columns=[*keys, label, known_at]).filter(pl.col(label).is_not_null())
    frame = predicted.join(actual, on=keys)
    if frame.height < settings.min_labelled_rows:
        return MonitorOutcome(
            None,
            note=f"{frame.height} batch predictions of version {model.version} with known labels; "
            f"at least {settings.min_labelled_rows} needed",
        )
    spec, declared = product.spec, product.spec.monitoring
    y = frame[label].cast(pl.Float64).to_numpy()
    metrics = task_metrics(spec.task, y, frame["prediction"].to_numpy(), spec.decision_threshold)
    metric = product.quality_metric
    value, baseline = metrics[metric], model.holdout_metrics.get(metric, np.nan)
    sign = 1.0 if spec.better(metric) == "max" else -1.0
    dropped = sign * (baseline - value) > declared.quality_max_drop
    passed = (declared.quality_floor is None or sign * (value - declared.quality_floor) >= 0) and not dropped
    engine.append(
        QUALITY_TABLE,
        pl.DataFrame(
            [
                {
                    "computed_at": now(),
                    "monitor": batch_quality_monitor(product),
                    "model_name": spec.model_name,
                    "model_version": model.version,
                    "window_start": frame[product.time].min(),
                    "window_end": frame[product.time].max(),
                    "labelled_rows": frame.height,
                    **metrics,
                    "metric": metric,
                    "holdout_value": baseline,
                    "floor": declared.quality_floor,
                    "max_drop": declared.quality_max_drop,
                    "passed": passed,
                    "report": "",
                }
            ],
            schema_overrides={"floor": pl.Float64},
        ),
    )
    summary = {**metrics, "labelled_rows": frame.height, f"holdout_{metric}": baseline}
    return MonitorOutcome(passed, {"actuals": summary}, note=f"{metric} {value:.4f} on {frame.height} rows")


def batch_feature_drift(
    engine: LakeEngine, model: Champion, product: Product, settings: MonitoringSettings, reports_dir: Path
) -> MonitorOutcome:
    """Drift of the inputs the champion scored in batch over the newest
    ``settings.gold_window_days`` days from the data it was trained on."""
    from lakehouse_assets.monitoring.drift import data_drift

    scores = scores_table(product.name)
    if engine.version(scores) is None:
        return MonitorOutcome(None, note=f"no {scores} yet")
    frame = engine.read(scores).filter(pl.col("model_version") == model.version)
    if frame.height == 0:
        return MonitorOutcome(None, note=f"no batch scores of version {model.version} yet")
    end = frame[product.time].max()
    start = end - timedelta(days=settings.gold_window_days)  # type: ignore[operator]
    current = frame.filter(pl.col(product.time) > start)
    if current.height < settings.min_window_rows:
        return MonitorOutcome(
            None,
            note=f"{current.height} rows scored since {start}; at least {settings.min_window_rows} needed",
        )
    numeric, categorical = drift_columns(product)
    result = data_drift(
        reference_data(engine, model, product),
        current,
        [c for c in numeric if c in current.columns],
        [c for c in categorical if c in current.columns],
        settings.sample_rows,
        drift_share=product.spec.monitoring.drift_share,
    )
    monitor = batch_drift_monitor(product)
    window = Window(current, start, end, f"rows scored after {start}")  # type: ignore[arg-type]
    path = publish(result.snapshot, reports_dir, monitor, "batch_scores", product.name)
    engine.append(DRIFT_TABLE, drift_rows(monitor, "batch_scores", result, window, model.version, path))
    return MonitorOutcome(
        not result.dataset_drift, {"batch_scores": result.summary()}, {"batch_scores": path}, window.note
    )
