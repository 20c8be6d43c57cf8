"""The point-in-time training set on the Spark engine, computed in Spark.

The same as-of semantics as Feast's offline retrieval (``point_in_time_features``), over the
feature views' Delta tables read by Spark at the pinned versions: for each row and view, the
newest feature row of the row's join keys with ``feature_ts <= event time`` and, with a TTL,
``feature_ts + ttl >= event time`` (ties: the newest created timestamp). On-demand feature
views run Feast's own transformation on each Arrow batch on the executors (``mapInArrow``);
line features are fetched as of their row's time and aggregated per row like
``basket_features``. Nothing is collected: the result is a lazy DataFrame the caller writes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pyarrow as pa
from feast import FeatureStore, FeatureView, OnDemandFeatureView
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F  # noqa: N812 - PySpark's own convention
from pyspark.sql.pandas.types import from_arrow_type
from pyspark.sql.types import StructField, StructType

from lakehouse_assets.features.basket import basket_names, empty_basket
from lakehouse_assets.products.spec import Product

FEAST_ARROW_TYPES = {
    "Int32": pa.int32(),
    "Int64": pa.int64(),
    "Float32": pa.float32(),
    "Float64": pa.float64(),
    "String": pa.string(),
    "Bool": pa.bool_(),
    "UnixTimestamp": pa.timestamp("us", "UTC"),
}


def _views(refs: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    """``view:feature`` references grouped by view, in first-seen order."""
    grouped: dict[str, list[str]] = {}
    for ref in refs:
        view, feature = ref.split(":", 1)
        grouped.setdefault(view, []).append(feature)
    return grouped


def as_of_join(
    rows: DataFrame, time: str, features: DataFrame, view: FeatureView, names: list[str]
) -> DataFrame:
    """``rows`` with the view's ``names`` as of each row's ``time`` (NULL where none is in the
    TTL). Rows with the same time and join keys get the same features, as in Feast."""
    source = view.batch_source
    ts, created = source.timestamp_field, source.created_timestamp_column or None  # type: ignore[union-attr]
    join_map = view.projection.join_key_map or {e.name: e.name for e in view.entity_columns}
    wanted = list(dict.fromkeys([time, *join_map.values()]))
    probes = rows.select(*wanted).dropDuplicates()
    table = features.select(
        *[F.col(k).alias(f"__key_{i}") for i, k in enumerate(join_map)],
        F.col(ts).alias("__feature_ts"),
        (F.col(created) if created else F.lit(None).cast("timestamp")).alias("__created_ts"),
        *names,
    )
    condition: Column = F.col("__feature_ts") <= F.col(time)
    for i, column in enumerate(join_map.values()):
        condition = condition & (F.col(f"__key_{i}") == F.col(column))
    if view.ttl and view.ttl > timedelta(0):
        ttl = F.expr(f"INTERVAL '{int(view.ttl.total_seconds())}' SECOND")
        condition = condition & (F.col("__feature_ts") >= F.col(time) - ttl)
    newest = Window.partitionBy(*wanted).orderBy(F.desc("__feature_ts"), F.desc_nulls_last("__created_ts"))
    probe_names = [f"__probe_{i}" for i in range(len(wanted))]
    best = (
        probes.join(table, condition, "inner")
        .withColumn("__rank", F.row_number().over(newest))
        .where(F.col("__rank") == 1)
        .select(*[F.col(c).alias(p) for c, p in zip(wanted, probe_names, strict=True)], *names)
    )
    # null-safe on the probe columns: a NULL key matches its own probe (and no feature row)
    on = [F.col(c).eqNullSafe(F.col(p)) for c, p in zip(wanted, probe_names, strict=True)]
    return rows.join(best, on, "left").drop(*probe_names)


def on_demand(frame: DataFrame, odfv: OnDemandFeatureView, requested: list[str]) -> DataFrame:
    """``frame`` with the requested features of ``odfv``, computed by Feast's transformation on
    each Arrow batch, on the executors."""
    proto = odfv.to_proto().SerializeToString()
    types = {f.name: FEAST_ARROW_TYPES[str(f.dtype)] for f in odfv.features if f.name in requested}

    def transform(batches: Any) -> Any:
        view = OnDemandFeatureView.from_proto(type(odfv.to_proto()).FromString(proto))
        for batch in batches:
            table = pa.Table.from_batches([batch])
            out = view.transform_arrow(table, False)
            for name, arrow_type in types.items():
                table = table.append_column(name, out[name].cast(arrow_type))
            yield from table.to_batches()

    added = [StructField(name, from_arrow_type(arrow_type)) for name, arrow_type in types.items()]
    return frame.mapInArrow(transform, StructType([*frame.schema.fields, *added]))


def spark_point_in_time(
    store: FeatureStore,
    product: Product,
    rows: DataFrame,
    lines: DataFrame | None,
    view_frames: dict[str, DataFrame],
) -> DataFrame:
    """``point_in_time_features`` in Spark. ``view_frames``: each feature view's table (at its
    pinned version) by view name."""
    time, keys = product.time, product.keys
    requested = _views(product.row_features)
    odfvs = {name: store.get_on_demand_feature_view(name) for name in requested if name in product.on_demand}
    fetch = {name: list(features) for name, features in requested.items() if name not in odfvs}
    for odfv in odfvs.values():  # the inputs of the on-demand views are fetched too
        for view_name, projection in odfv.source_feature_view_projections.items():
            have = fetch.setdefault(view_name, [])
            have.extend(f.name for f in projection.features if f.name not in have)
    result = rows
    for view_name, names in fetch.items():
        view = store.get_feature_view(view_name)
        result = as_of_join(result, time, view_frames[view_name], view, names)
    for name, odfv in odfvs.items():
        result = on_demand(result, odfv, requested[name])
    columns = [
        *rows.columns,
        *[f for name, features in requested.items() for f in features],
    ]
    result = result.select(*dict.fromkeys(columns))
    declared = product.spec.features.lines
    if product.line_features and declared is not None and lines is not None:
        names = product.line_feature_names
        located = lines.join(rows.select(*keys, time), keys, "inner")
        for view_name, features in _views(product.line_features).items():
            located = as_of_join(
                located, time, view_frames[view_name], store.get_feature_view(view_name), features
            )
        baskets = located.groupBy(keys[0]).agg(
            F.count(F.lit(1)).cast("double").alias("basket_lines"),
            F.sum(declared.weight).cast("double").alias("basket_units"),
            *[F.max(F.col(n).cast("double")).alias(f"basket_max_{n}") for n in names],
        )
        fill: dict[str, bool | float | int | str] = {
            c: v for c, v in empty_basket(names).items() if v is not None
        }
        result = (
            result.join(baskets, keys[0], "left").fillna(fill).select(*result.columns, *basket_names(names))
        )
    return result
