"""Plain functions behind the feature assets: apply, materialize, build the training set, and
compare online with offline values (training/serving skew)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
from feast import FeatureStore, FeatureView

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.features.basket import basket_features, empty_basket
from lakehouse_assets.features.definitions import FeatureDefinitions
from lakehouse_assets.features.delta_offline_store import pinned_versions, released_memtables
from lakehouse_assets.features.online_writer import materialize_view
from lakehouse_assets.products.spec import Product
from lakehouse_assets.tables import (
    CUSTOMER_FEATURES_TABLE,
    PRODUCT_FEATURES_TABLE,
    REALTIME_CUSTOMER_FEATURES_TABLE,
    gold_table,
    training_set_table,
)

# The Delta table behind each feature view (its offline history).
VIEW_TABLES = {
    "customer_daily_features": CUSTOMER_FEATURES_TABLE,
    "product_daily_features": PRODUCT_FEATURES_TABLE,
    "customer_realtime_features": REALTIME_CUSTOMER_FEATURES_TABLE,
}


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def describe(store: FeatureStore) -> dict[str, Any]:
    """Feature discovery: every view's features, types, owner, description, TTL and the newest
    materialized time; and the services."""
    views: dict[str, dict[str, Any]] = {}
    for view in store.list_feature_views():
        intervals = view.materialization_intervals
        views[view.name] = {
            "features": {f.name: str(f.dtype) for f in view.features},
            "entities": list(view.entities),
            "owner": view.owner,
            "description": view.description,
            "ttl": str(view.ttl),
            "materialized_until": str(intervals[-1][1]) if intervals else None,
        }
    for odfv in store.list_on_demand_feature_views():
        views[odfv.name] = {
            "features": {f.name: str(f.dtype) for f in odfv.features},
            "owner": odfv.owner,
            "description": odfv.description,
            "on_demand": True,
        }
    services = {
        s.name: {
            "views": [p.name for p in s.feature_view_projections],
            "owner": s.owner,
            "description": s.description,
        }
        for s in store.list_feature_services()
    }
    return {"feature_views": views, "feature_services": services}


def apply_definitions(store: FeatureStore, definitions: FeatureDefinitions) -> dict[str, Any]:
    """Register the definitions in the store's registry; returns the catalogue of what is registered."""
    store.apply(definitions.all())
    return describe(store)


@dataclass
class OnlineMaterialization:
    """One feature view written to the online store: the window, whether it was a backfill, the entities."""

    view: str
    start: datetime
    end: datetime
    backfill: bool
    entities: int


def materialize_online(
    store: FeatureStore, engine: LakeEngine, definitions: FeatureDefinitions
) -> list[OnlineMaterialization]:
    """Materialize each view up to its newest gold row, from where the last run ended. The first
    run backfills the whole history: Feast's first incremental run would start at now - TTL and
    load nothing older."""
    results = []
    for view in (definitions.customer_features, definitions.product_features):
        table = VIEW_TABLES[view.name]
        if not engine.exists(table):
            continue
        registered = store.get_feature_view(view.name)
        names = [registered.entity_columns[0].name, "feature_ts", *(f.name for f in view.features)]
        frame = engine.read(table, columns=names)
        if frame.height == 0:
            continue
        newest = _utc(frame["feature_ts"].max())  # type: ignore[arg-type]
        intervals = registered.materialization_intervals
        backfill = not intervals
        start = _utc(frame["feature_ts"].min()) if backfill else intervals[-1][1]  # type: ignore[arg-type]
        entities = materialize_view(store, view, frame, start, newest)
        results.append(OnlineMaterialization(view.name, start, newest, backfill, entities))
    return results


def point_in_time_features(
    store: FeatureStore, product: Product, rows: pl.DataFrame, lines: pl.DataFrame | None = None
) -> pl.DataFrame:
    """The product's features of ``rows`` (its entity keys, event time, the row features' join
    keys and request columns; any other columns kept) as of each row's event time, from the
    offline store. With features.lines, the line features of the child ``lines`` (keys, the
    line entity, the weight) are fetched as of their row's time and aggregated per row."""
    time, keys = product.time, product.keys
    with released_memtables():
        result = pl.from_pandas(
            store.get_historical_features(
                entity_df=rows.rename({time: "event_timestamp"}).to_pandas(),
                features=list(product.row_features),
            ).to_df()
        )
    result = result.with_columns(pl.col("event_timestamp").dt.replace_time_zone(None)).rename(
        {"event_timestamp": time}
    )
    declared = product.spec.features.lines
    if product.line_features and declared is not None and lines is not None:
        names = product.line_feature_names
        with released_memtables():
            line_features = store.get_historical_features(
                entity_df=lines.join(rows.select(*keys, time), on=keys)
                .rename({time: "event_timestamp"})
                .to_pandas(),
                features=list(product.line_features),
            ).to_df()
        baskets = basket_features(
            pl.from_pandas(line_features).select(*keys, declared.weight, *names),
            names,
            keys[0],
            declared.weight,
        )
        result = result.join(baskets, on=keys, how="left").with_columns(  # rows without lines
            pl.col(c).fill_null(v) for c, v in empty_basket(names).items() if v is not None
        )
    return result.sort(keys)


def label_rows_columns(product: Product, definitions: FeatureDefinitions) -> list[str]:
    """The label table's columns a training set reads: keys, time, the row views' join keys,
    request columns, the label and when it became known."""
    objects = {o.name: o for o in definitions.all()}
    views = [objects[name] for name in dict.fromkeys(ref.split(":")[0] for ref in product.row_features)]
    join_keys = [objects[e].join_key for v in views if isinstance(v, FeatureView) for e in v.entities]
    spec = product.spec
    wanted = [
        *product.keys,
        *join_keys,
        spec.entity.event_time,
        *spec.features.request,
        spec.label.column,
        spec.label.known_at,
    ]
    return list(dict.fromkeys(wanted))


def child_lines(engine: LakeEngine, product: Product, version: int | None = None) -> Any:
    """The child rows (keys, line entity, weight) of a product with features.lines, else None:
    polars, or a lazy Spark DataFrame on the Spark engine."""
    declared = product.spec.features.lines
    if declared is None:
        return None
    columns = [*product.keys, product.line_entity or "", declared.weight]
    if engine.name == "spark":
        return engine.frame(declared.table, version).select(*columns)  # type: ignore[attr-defined]
    return engine.read(declared.table, version=version, columns=columns)


def training_set_frame(
    store: FeatureStore,
    engine: LakeEngine,
    definitions: FeatureDefinitions,
    product: Product,
    versions: dict[str, int] | None = None,
    max_rows: int = 0,
    log: Callable[[str], None] | None = None,
) -> tuple[Any, dict[str, int], int]:
    """Point-in-time features of every row of the product's label table whose label is known,
    joined as of the row's event time (line features aggregated per row), in the engine's own
    frames: polars on the embedded engine, a lazy Spark DataFrame on Spark (``spark_training``).
    Returns the frame, the Delta versions of every table read (given those, it rebuilds the same
    set from the tables as they were then: time travel) and how many labelled rows it must have.

    Embedded, more than ``max_rows`` (0: no limit) labelled rows are joined that many at a time
    in key order and returned as one Arrow stream (``in_one_schema``), progress to ``log``."""
    spec = product.spec
    label_table = gold_table(spec.label.table)
    lines_table = spec.features.lines.table if spec.features.lines else None
    views = {ref.split(":")[0] for ref in (*product.row_features, *product.line_features)}
    view_tables = {
        v.name: (VIEW_TABLES[v.name], v.batch_source.path)  # type: ignore[union-attr]
        for v in definitions.all()
        if isinstance(v, FeatureView) and v.name in views and v.name in VIEW_TABLES
    }
    tables = (label_table, *([lines_table] if lines_table else []), *(t for t, _ in view_tables.values()))
    versions = versions or {t: v for t in tables if (v := engine.version(t)) is not None}
    missing = [t for t in tables if t not in versions]
    if missing:
        raise ValueError(f"{product.name}: tables {missing} do not exist yet: materialize them first")
    columns = label_rows_columns(product, definitions)
    if engine.name == "spark":
        from pyspark.sql import functions as F  # noqa: N812 - PySpark's own convention

        from lakehouse_assets.features.spark_training import spark_point_in_time

        frame = engine.frame  # type: ignore[attr-defined]
        labelled = frame(label_table, versions[label_table]).select(*columns)
        labelled = labelled.where(F.col(spec.label.column).isNotNull())
        line_rows = child_lines(engine, product, versions.get(lines_table or ""))
        view_frames = {name: frame(table, versions[table]) for name, (table, _) in view_tables.items()}
        joined = spark_point_in_time(store, product, labelled, line_rows, view_frames)
        return joined.orderBy(*product.keys, product.time), versions, labelled.count()
    rows = engine.read(label_table, version=versions[label_table], columns=columns)
    rows = rows.filter(pl.col(spec.label.column).is_not_null())
    lines = child_lines(engine, product, versions.get(lines_table or ""))
    pins = {path: versions[t] for t, path in view_tables.values()}

    def features(chunk: pl.DataFrame, chunk_lines: pl.DataFrame | None) -> pl.DataFrame:
        with pinned_versions(pins):
            return point_in_time_features(store, product, chunk, chunk_lines)

    if not max_rows or rows.height <= max_rows:
        return features(rows, lines), versions, rows.height
    # A row's features depend only on its own keys and time: key ranges join independently.
    rows, keys = rows.sort(product.keys), product.keys
    starts = range(0, rows.height, max_rows)

    def chunks() -> Iterator[pl.DataFrame]:
        for number, start in enumerate(starts, 1):
            chunk = rows.slice(start, max_rows)
            chunk_lines = None if lines is None else lines.join(chunk.select(keys), on=keys, how="semi")
            yield features(chunk, chunk_lines)
            if log:
                done = start + chunk.height
                log(f"{product.name} training set: {done:,} of {rows.height:,} rows ({number}/{len(starts)})")

    return in_one_schema(chunks()), versions, rows.height


def in_one_schema(chunks: Iterable[pl.DataFrame]) -> pa.RecordBatchReader:
    """The chunks as one Arrow stream in the schema their concatenation has (pandas inside Feast
    makes an integer column holding NULLs a float, so chunks can differ): each chunk is spilled
    to Parquet as it comes (in the temporary directory, ``TMPDIR``: keep it off a RAM-backed tmpfs),
    then read back in that schema one at a time (bounded memory)."""
    spill = tempfile.TemporaryDirectory(prefix="lakehouse-chunks-")
    paths, schemas = [], []
    try:
        for number, chunk in enumerate(chunks):
            paths.append(Path(spill.name) / f"{number:06d}.parquet")
            chunk.write_parquet(paths[-1])
            schemas.append(chunk.schema)
    except BaseException:
        spill.cleanup()
        raise
    schema = pl.concat([pl.DataFrame(schema=s) for s in schemas], how="vertical_relaxed").schema

    def batches() -> Iterator[pa.RecordBatch]:
        with spill:
            for path in paths:
                yield from pl.read_parquet(path).cast(schema).to_arrow().to_batches()  # type: ignore[arg-type]

    return pa.RecordBatchReader.from_batches(pl.DataFrame(schema=schema).to_arrow().schema, batches())


def build_training_set(
    store: FeatureStore,
    engine: LakeEngine,
    definitions: FeatureDefinitions,
    product: Product,
    versions: dict[str, int] | None = None,
    max_rows: int = 0,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """``training_set_frame`` as polars (for notebooks and tests; the training-set asset writes
    the engine's frame without collecting it)."""
    frame, versions, labelled = training_set_frame(store, engine, definitions, product, versions, max_rows)
    if isinstance(frame, pa.RecordBatchReader):
        result = pl.DataFrame(pl.from_arrow(frame.read_all()))
    else:
        result = frame if isinstance(frame, pl.DataFrame) else pl.DataFrame(pl.from_arrow(frame.toArrow()))
    check_training_set_rows(product, result.height, labelled)
    return result, versions


def write_training_set(
    store: FeatureStore,
    engine: LakeEngine,
    definitions: FeatureDefinitions,
    product: Product,
    max_rows: int = 0,
    log: Callable[[str], None] | None = None,
) -> tuple[str, dict[str, int], int]:
    """Build the product's training set and write it in one commit (by the engine: Spark never
    collects it; embedded, ``max_rows`` at a time), the commit recording the source versions;
    returns the table, the versions and its rows."""
    frame, versions, labelled = training_set_frame(
        store, engine, definitions, product, max_rows=max_rows, log=log
    )
    table = training_set_table(product.name)
    engine.overwrite(table, frame, commit_metadata={"source_versions": versions})
    check_training_set_rows(product, engine.row_count(table), labelled)
    return table, versions, labelled


def check_training_set_rows(product: Product, rows: int, labelled: int) -> None:
    """A point-in-time join keeps every labelled row exactly once."""
    if rows != labelled:
        raise AssertionError(f"{product.name} training set has {rows} rows for {labelled} labelled rows")


def column_mean(engine: LakeEngine, table: str, column: str) -> float:
    """The mean of a numeric or boolean column (0.0 when empty), computed by the engine."""
    if engine.name == "spark":
        from pyspark.sql import functions as F  # noqa: N812 - PySpark's own convention

        mean = engine.frame(table).agg(F.avg(F.col(column).cast("double"))).first()[0]  # type: ignore[attr-defined]
    else:
        mean = engine.read(table, columns=[column])[column].cast(pl.Float64).mean()
    return float(mean or 0.0)  # type: ignore[arg-type]


def online_offline_skew(
    store: FeatureStore, engine: LakeEngine, view_name: str, sample: int = 25
) -> dict[str, Any]:
    """Online values vs offline values recomputed at each entity's newest row time, for the
    ``sample`` entities updated last. Returns the mismatches per feature (empty when online
    serving matches training)."""
    view = store.get_feature_view(view_name)
    key = view.entity_columns[0].name
    frame = engine.read(VIEW_TABLES[view_name], columns=[key, "feature_ts"])
    newest = (
        frame.group_by(key)
        .agg(pl.col("feature_ts").max())
        .sort(["feature_ts", key], descending=[True, False])
        .head(sample)
    )
    ids = newest[key].to_list()
    names = [f.name for f in view.features]
    refs = [f"{view_name}:{n}" for n in names]
    online = pl.DataFrame(
        store.get_online_features(features=refs, entity_rows=[{key: i} for i in ids]).to_dict()
    )
    with released_memtables():
        offline = pl.from_pandas(
            store.get_historical_features(
                entity_df=newest.rename({"feature_ts": "event_timestamp"}).to_pandas(), features=refs
            ).to_df()
        )
    joined = online.join(offline, on=key, suffix="_offline")
    if joined.height != len(ids):
        raise AssertionError(
            f"{view_name}: {len(ids) - joined.height} sampled entities lost in the comparison"
        )
    mismatches = {}
    for name in names:
        a, b = joined[name], joined[f"{name}_offline"]
        if a.dtype.is_numeric() and b.dtype.is_numeric():
            differ = ~((a.cast(pl.Float64) - b.cast(pl.Float64)).abs() < 1e-9)
            differ = differ.fill_null(a.is_null() != b.is_null())
        else:
            differ = a.cast(pl.String).ne_missing(b.cast(pl.String))
        if differ.any():
            mismatches[name] = int(differ.sum())
    return {
        "view": view_name,
        "entities": len(ids),
        "newest": str(newest["feature_ts"].max()) if ids else None,
        "mismatches": mismatches,
    }
