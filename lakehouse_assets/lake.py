"""The lake from a notebook or a script: list and read every table the pipeline writes (with
time travel), query it with SQL, get point-in-time features from Feast, and log experiments to
the platform's MLflow. Everything reads the same settings as the pipeline (``LAKEHOUSE_HOME``
and friends), so a notebook sees exactly what the assets wrote::

    from lakehouse_assets import lake

    lake.tables()                                  # every table: layer, rows, version, updated
    orders = lake.read(SILVER_ORDERS_TABLE)            # polars (as_pandas=True: pandas)
    before = lake.read("silver.orders", version=3)  # or as_of="2026-11-25 06:00" (UTC)
    lake.history(SILVER_ORDERS_TABLE)                  # its commits
    lake.sql("select count(*) from gold.fct_orders where amount > $floor", floor=50)
    lake.features(orders, timestamp="order_ts")    # as of each row's time (a product's features)

    lake.product()                                 # the online data product (or product("name"))
    data = lake.training_data()                    # the set the pipeline trains on, versioned
    split = lake.split(data.frame)
    with lake.experiment_run("my idea", data=data, split=split) as run:
        model = ...fit(lake.model_input(split.train), lake.labels(split.train))
        metrics = lake.holdout_metrics(model, split)
        uri = lake.log_model(model, split)
    lake.register_challenger(uri, data=data, split=split, metrics=metrics)

Reads go through delta-rs whatever engine wrote the table (Delta is the contract).
"""

from __future__ import annotations

import contextlib
import difflib
import getpass
import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
from deltalake.exceptions import DeltaError

from lakehouse_assets.engine import LakeEngine, TableNotFoundError
from lakehouse_assets.products.spec import Product
from lakehouse_assets.resources.connections import embedded_engine, mlflow_connection
from lakehouse_assets.settings import LakehouseSettings, get_settings
from lakehouse_assets.training.dataset import TimeSplit, time_split
from lakehouse_assets.training.dataset import model_input as typed_model_input
from lakehouse_assets.training.metrics import task_metrics
from lakehouse_assets.training.train import TrainingData, log_datasets, log_sklearn_model, predictions
from lakehouse_assets.training.train import labels as label_values

__all__ = [
    "LakeNameError",
    "TimeTravelError",
    "experiment_run",
    "feature_store",
    "features",
    "history",
    "holdout_metrics",
    "labels",
    "log_model",
    "model_input",
    "product",
    "read",
    "register_challenger",
    "registered_model_metrics",
    "settings",
    "split",
    "sql",
    "tables",
    "training_data",
    "training_set",
]


class LakeNameError(LookupError):
    """No (or more than one) lake table has the name asked for."""


class TimeTravelError(LookupError):
    """The asked-for version or time of a table cannot be read."""


def settings() -> LakehouseSettings:
    """The platform settings, read from the environment like the pipeline reads them."""
    return get_settings()


def _engine() -> LakeEngine:
    return embedded_engine(settings())


def _table_names() -> list[str]:
    return _engine().tables()


def resolve(name: str) -> str:
    """``silver/orders``, ``silver.orders`` or, when only one table has it, ``orders`` ->
    ``silver/orders``."""
    known = _table_names()
    wanted = name.strip().strip("/").replace(".", "/", 1) if "/" not in name else name.strip("/")
    if wanted in known:
        return wanted
    same_name = [t for t in known if t.rsplit("/", 1)[-1] == wanted]
    if len(same_name) == 1:
        return same_name[0]
    if same_name:
        raise LakeNameError(f"{name!r} is ambiguous: {', '.join(same_name)}; name the layer")
    if not known:
        raise LakeNameError(
            f"no table {name!r}: the lake at {settings().lake_root} is empty "
            "(run `lakehouse demo` or materialize the pipeline first)"
        )
    close = difflib.get_close_matches(wanted, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; lake.tables() lists them"
    raise LakeNameError(f"no table {name!r} in {settings().lake_root}{hint}")


def tables(layer: str | None = None) -> pl.DataFrame:
    """Every table (of ``layer``): rows, Delta version, last update, files and size, from the
    Delta logs (no data read)."""
    from lakehouse_assets.queries.lake_sql import stats_frame

    names = [t for t in _table_names() if layer is None or t.split("/")[0] == layer]
    return stats_frame(_engine(), names)


def _utc(value: str | date | datetime) -> datetime:
    """A point in time; naive values are UTC (as every timestamp in the lake is)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    elif not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


DELTA_COMMIT_FIELDS = {
    "version",
    "timestamp",
    "operation",
    "operationParameters",
    "clientVersion",
    "operationMetrics",
    "readVersion",
    "isBlindAppend",
}


def _committed_at(commit: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(commit["timestamp"] / 1000, UTC)


def history(name: str, limit: int | None = None) -> pl.DataFrame:
    """The table's commits, newest first: version, time (UTC), operation, and the metadata the
    writer recorded (e.g. the source versions a training set was built from)."""
    table = resolve(name)
    rows = []
    for commit in _engine().history(table, limit):
        extra = {k: v for k, v in commit.items() if k not in DELTA_COMMIT_FIELDS}
        rows.append(
            {
                "version": commit.get("version"),
                "committed_at": _committed_at(commit).replace(tzinfo=None),
                "operation": commit.get("operation"),
                "parameters": json.dumps(commit.get("operationParameters") or {}, default=str),
                "metadata": json.dumps(extra, default=str),
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "version": pl.Int64,
            "committed_at": pl.Datetime("us"),
            "operation": pl.String,
            "parameters": pl.String,
            "metadata": pl.String,
        },
    )


def version_as_of(name: str, as_of: str | date | datetime) -> int:
    """The version that was current at ``as_of``: the newest commit at or before it."""
    return _version_at(resolve(name), _utc(as_of))


def _version_at(table: str, moment: datetime) -> int:
    commits = sorted(_engine().history(table), key=lambda c: c["version"])
    earlier = [c["version"] for c in commits if _committed_at(c) <= moment]
    if not earlier:
        raise TimeTravelError(
            f"{table} did not exist at {moment:%Y-%m-%d %H:%M:%S} UTC: its "
            f"oldest readable commit (version {commits[0]['version']}) is from "
            f"{_committed_at(commits[0]):%Y-%m-%d %H:%M:%S} UTC"
        )
    return max(earlier)


def read(
    name: str,
    *,
    version: int | None = None,
    as_of: str | date | datetime | None = None,
    columns: Sequence[str] | None = None,
    as_pandas: bool = False,
) -> pl.DataFrame | pd.DataFrame:
    """The table's rows: the current version, or ``version``, or the version current at
    ``as_of`` (time travel); only ``columns`` when given."""
    table = resolve(name)
    if version is not None and as_of is not None:
        raise ValueError("give either version= or as_of=, not both")
    if as_of is not None:
        version = _version_at(table, _utc(as_of))
    with _time_travel(table, version):
        frame = _engine().read(table, version=version, columns=list(columns) if columns else None)
    return frame.to_pandas() if as_pandas else frame


@contextlib.contextmanager
def _time_travel(table: str, version: int | None) -> Iterator[None]:
    """Reading ``version`` of ``table``: a version that does not exist, or whose files are gone,
    is a TimeTravelError saying which and why."""
    if version is not None:
        current = _engine().version(table)
        if current is not None and not 0 <= version <= current:
            raise TimeTravelError(f"{table} has versions 0 to {current}; {version} does not exist")
    try:
        yield
    except TableNotFoundError as error:
        raise LakeNameError(str(error)) from error
    except (OSError, pa.ArrowException, DeltaError) as error:
        if version is None:
            raise
        retention = settings().time_travel_retention_hours
        raise TimeTravelError(
            f"version {version} of {table} is no longer readable: its files or log entries "
            f"were removed by VACUUM or log cleanup (time travel keeps {retention} h; "
            f"LAKEHOUSE_TIME_TRAVEL_RETENTION_HOURS): {error}"
        ) from error


def sql(query: str, *, as_pandas: bool = False, **params: Any) -> pl.DataFrame | pd.DataFrame:
    """Run SQL over the lake (every table is ``layer.name``, e.g. ``gold.fct_orders``; the
    table statistics are ``lakehouse.tables``); ``$name`` parameters from keyword arguments."""
    from lakehouse_assets.queries.saved import run_lake_sql

    unused = sorted(p for p in params if not re.search(rf"\${re.escape(p)}\b", query))
    if unused:
        raise ValueError(f"parameter(s) {unused} are not used in the query (write $name in it)")
    result = run_lake_sql(_engine(), query, params)
    return result.to_pandas() if as_pandas else result


def feature_store() -> tuple[Any, Any]:
    """Feast's store of this environment and the platform's feature definitions."""
    from lakehouse_assets.features.store import feature_store as open_store

    return open_store(settings())


def product(name: str | None = None) -> Product:
    """A declared data product (``lakehouse products`` lists them); by default the one served
    online."""
    from lakehouse_assets.product_declarations import default_product, load_product, load_products

    if name is not None:
        return load_product(settings(), name)
    found = default_product(load_products(settings()), settings().serving.default_product)
    if found is None:
        raise LakeNameError("no data product is served online: name one, e.g. lake.product('...')")
    return found


def features(
    entities: pl.DataFrame | pd.DataFrame,
    names: str | Sequence[str] | None = None,
    *,
    timestamp: str = "event_timestamp",
) -> pl.DataFrame:
    """Point-in-time features from Feast's offline store: for each row of ``entities`` (its
    join keys, e.g. ``customer_id``, and the time in ``timestamp``) the values as of that time,
    never later. ``names``: a feature service name, or ``view:feature`` references; by default
    the online product's row features."""
    from feast import FeatureService

    from lakehouse_assets.features.delta_offline_store import released_memtables

    store, definitions = feature_store()
    frame = entities if isinstance(entities, pl.DataFrame) else pl.from_pandas(entities)
    if timestamp not in frame.columns:
        raise ValueError(
            f"entities lack the time column {timestamp!r} (timestamp=...); columns: {frame.columns}"
        )
    wanted: Any
    if names is None:
        wanted = list(product().row_features)
    elif isinstance(names, str):
        services = {s.name: s for s in definitions.all() if isinstance(s, FeatureService)}
        if names not in services:
            raise LakeNameError(
                f"no feature service {names!r}; known: {sorted(services)} or 'view:feature' references"
            )
        wanted = services[names]
    else:
        wanted = list(names)
    with released_memtables():
        result = store.get_historical_features(
            entity_df=frame.rename({timestamp: "event_timestamp"}).to_pandas(),
            features=wanted,
        ).to_df()
    return (
        pl.from_pandas(result)
        .with_columns(pl.col("event_timestamp").dt.replace_time_zone(None))
        .rename({"event_timestamp": timestamp})
    )


def training_set(name: str | None = None) -> pl.DataFrame:
    """A fresh point-in-time training set of a product from Feast over the current tables
    (what its ``<product>_training_set`` asset builds, without writing it)."""
    from lakehouse_assets.features.pipeline import build_training_set

    store, definitions = feature_store()
    frame, _ = build_training_set(store, _engine(), definitions, product(name))
    return frame


def training_data(version: int | None = None, name: str | None = None) -> TrainingData:
    """A product's stored training set (``features/<product>_training_set``, the data the
    pipeline trains and evaluates on; ``version``: as it was then) with its Delta version and
    the source versions its build recorded."""
    from lakehouse_assets.tables import training_set_table
    from lakehouse_assets.training.challenger import training_data as stored

    chosen = product(name)
    with _time_travel(training_set_table(chosen.name), version):
        return stored(_engine(), chosen, version)


def split(frame: pl.DataFrame, name: str | None = None) -> TimeSplit:
    """The product's time-based split (holdout share and label window from its declaration)."""
    return time_split(frame, product(name))


def model_input(frame: pl.DataFrame, name: str | None = None) -> pd.DataFrame:
    """The product's model input columns of ``frame``, typed as its models take them."""
    return typed_model_input(frame, product(name))


def labels(frame: pl.DataFrame, name: str | None = None) -> np.ndarray:
    """The product's label column as the task's numbers (0/1 for a classifier)."""
    return label_values(frame, product(name))


def _registry(experiment: str) -> Any:
    """The platform's MLflow (tracking, registry, the product's experiment), made current."""
    registry = mlflow_connection(settings())
    registry.activate(experiment)
    return registry


@contextlib.contextmanager
def experiment_run(
    run_name: str,
    *,
    data: TrainingData | None = None,
    split: TimeSplit | None = None,
    tags: dict[str, str] | None = None,
    name: str | None = None,
) -> Iterator[Any]:
    """An MLflow run in the product's experiment (its tracking and artifact store), tagged as
    interactive work; with ``data`` and ``split``, the training and validation data are logged
    as inputs (Delta table and version: the lineage a registered model keeps)."""
    chosen = product(name)
    _registry(chosen.spec.model_name)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.set_tags({"source": "notebook", "user": getpass.getuser(), **(tags or {})})
        if data is not None and split is not None:
            mlflow.set_tag("training_set_version", str(data.version))
            log_datasets(data, split, chosen)
        yield run


def holdout_metrics(model: Any, split: TimeSplit, name: str | None = None) -> dict[str, float]:
    """The product's metrics of a fitted model on the holdout; logged to the active run, if any."""
    chosen = product(name)
    prediction = predictions(model, typed_model_input(split.holdout, chosen), chosen.spec.task)
    metrics = task_metrics(
        chosen.spec.task, label_values(split.holdout, chosen), prediction, chosen.spec.decision_threshold
    )
    if mlflow.active_run() is not None:
        mlflow.log_metrics(metrics)
    return metrics


def log_model(model: Any, split: TimeSplit, name: str | None = None) -> str:
    """Log a fitted scikit-learn pipeline to the active run the way the platform loads models
    (skops, trusted types only, a classifier's probabilities, signature); returns its URI."""
    if mlflow.active_run() is None:
        raise RuntimeError("log_model needs an active run: use `with lake.experiment_run(...)`")
    chosen = product(name)
    return log_sklearn_model(
        model, typed_model_input(split.train.head(5), chosen), chosen.spec.task
    ).model_uri


def registered_model_metrics(
    split: TimeSplit, *, alias: str = "champion", version: int | None = None, name: str | None = None
) -> dict[str, float] | None:
    """The product's metrics of a registered version (``alias``, or ``version``) on the
    holdout, loaded the way serving loads it; None when the alias is not set."""
    from lakehouse_assets.registry.promotion import alias_version
    from lakehouse_assets.training.evaluation import score

    chosen = product(name)
    registry = _registry(chosen.spec.model_name)
    if version is None:
        found = alias_version(registry.client(), chosen.spec.model_name, alias)
        if found is None:
            return None
        version = int(found.version)
    return score(chosen, version, split.holdout)


def register_challenger(
    model_uri: str,
    *,
    data: TrainingData,
    split: TimeSplit,
    metrics: dict[str, float],
    name: str | None = None,
) -> Any:
    """Register the model as a new version of the product with the alias ``challenger``
    (replacing the current challenger), with its model card and training-data lineage. The
    product's next evaluation compares it with the champion; the gate decides."""
    from lakehouse_assets.registry.promotion import register_challenger as register
    from lakehouse_assets.registry.promotion import require_skops
    from lakehouse_assets.training.challenger import lineage_tags

    chosen = product(name)
    registry = _registry(chosen.spec.model_name)
    require_skops(model_uri)
    run_id = mlflow.models.get_model_info(model_uri).run_id
    client = registry.client()
    window = split.window()
    return register(
        client,
        _engine(),
        chosen.spec.model_name,
        model_uri,
        run_id,
        tags={
            "candidate": client.get_run(run_id).info.run_name or "notebook",
            "source": "notebook",
            **lineage_tags(data, window, chosen),
        },
        window=window,
        metrics=metrics,
        actor=f"notebook ({getpass.getuser()})",
    )
