"""Bulk materialization into Feast's online store.

Feast's own path converts every value through its generic type mapper (about 4 us a value) and
the SQLite online store upserts one statement per value. This writer keeps Feast's semantics
(for each entity, the newest row with ``start <= timestamp <= end``; values in Feast's
``ValueProto`` encoding and table layout, so Feast reads them back unchanged) and does the
work in bulk: the newest rows are picked by polars from the Delta table, values are encoded per
column with the proto field of the feature's type, and SQLite gets one ``executemany`` in one
transaction. Other online stores (Redis in production) receive the same rows through their own
``online_write_batch``. The materialized interval is recorded in the registry as Feast does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl
from feast import FeatureStore, FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _redis_key, compute_table_id, extract_text_and_num
from feast.infra.online_stores.online_store import OnlineStore
from feast.infra.online_stores.redis import RedisOnlineStore
from feast.infra.online_stores.sqlite import SqliteOnlineStore, adapt_datetime_epoch
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType

# ValueProto field per Feast scalar type; other types go through Feast's generic mapper.
_PROTO_FIELD: dict[ValueType, str] = {
    ValueType.INT64: "int64_val",
    ValueType.INT32: "int32_val",
    ValueType.DOUBLE: "double_val",
    ValueType.FLOAT: "float_val",
    ValueType.STRING: "string_val",
    ValueType.BOOL: "bool_val",
}
# Types whose Python value prints as Feast's value_text (float32 does not: it is rounded first).
_SQLITE_FAST_FIELD: dict[ValueType, str] = {t: f for t, f in _PROTO_FIELD.items() if t != ValueType.FLOAT}
_NULL = ValueProto()
_NULL_BYTES = _NULL.SerializeToString()


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def newest_per_entity(
    frame: pl.DataFrame, key: str, timestamp: str, start: datetime, end: datetime
) -> pl.DataFrame:
    """Feast's materialization window: per entity, the newest row with start <= ts <= end."""
    return (
        frame.filter(pl.col(timestamp).is_between(_naive_utc(start), _naive_utc(end)))
        .sort(key, timestamp)
        .unique(subset=key, keep="last", maintain_order=True)
    )


def encode_column(values: pl.Series, value_type: ValueType) -> list[ValueProto]:
    """One ValueProto per value (nulls as the empty value, as Feast writes them)."""
    field = _PROTO_FIELD.get(value_type)
    if field is None:
        return python_values_to_proto_values(values.to_list(), value_type)
    return [_NULL if v is None else ValueProto(**{field: v}) for v in values.to_list()]


def entity_keys(values: pl.Series, join_key: str, value_type: ValueType) -> list[EntityKeyProto]:
    """Feast entity keys for a column of join-key values."""
    return [
        EntityKeyProto(join_keys=[join_key], entity_values=[v]) for v in encode_column(values, value_type)
    ]


def _sqlite_column(values: pl.Series, value_type: ValueType) -> tuple[list[bytes], list[str | None]]:
    """A column as Feast's SQLite store holds it: serialized ValueProto and its text form."""
    field = _SQLITE_FAST_FIELD.get(value_type)
    if field is None:
        protos = encode_column(values, value_type)
        return ([p.SerializeToString() for p in protos], [extract_text_and_num(p, False)[0] for p in protos])
    message = ValueProto()

    def serialize(value: Any) -> bytes:
        setattr(message, field, value)
        return message.SerializeToString()

    items = values.to_list()
    return (
        [_NULL_BYTES if v is None else serialize(v) for v in items],
        [None if v is None else str(v) for v in items],
    )


def write_sqlite(
    store: FeatureStore,
    online_store: SqliteOnlineStore,
    view: FeatureView,
    frame: pl.DataFrame,
    key: str,
    timestamp: str,
) -> None:
    """Upsert ``frame`` (one row per entity) into Feast's SQLite table for the view, in the
    table's key order (much faster B-tree inserts), as one executemany in one transaction."""
    config = store.config
    key_type = view.entity_columns[0].dtype.to_value_type()
    version = config.entity_key_serialization_version
    keys = [
        serialize_entity_key(k, entity_key_serialization_version=version)
        for k in entity_keys(frame[key], key, key_type)
    ]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    features = sorted(view.features, key=lambda f: f.name)
    names = [f.name for f in features]
    columns = [_sqlite_column(frame[f.name], f.dtype.to_value_type()) for f in features]
    # Adapted once per entity, exactly as Feast's registered sqlite adapter stores them.
    times = [adapt_datetime_epoch(_naive_utc(t)) for t in frame[timestamp].to_list()]
    rows = [
        (keys[i], name, blobs[i], texts[i], times[i])
        for i in order
        for name, (blobs, texts) in zip(names, columns, strict=True)
    ]
    table = compute_table_id(config.project, view, config.registry.enable_online_feature_view_versioning)
    conn = online_store._get_conn(config)  # noqa: SLF001 - the store's own connection
    with conn:
        conn.executemany(
            f'INSERT INTO "{table}" (entity_key, feature_name, value, value_text, event_ts) '
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
            "value = excluded.value, value_text = excluded.value_text, "
            "event_ts = excluded.event_ts, created_ts = NULL",
            rows,
        )


def _online_store(store: FeatureStore) -> OnlineStore:
    return store._get_provider().online_store  # type: ignore[attr-defined]  # noqa: SLF001


def materialize_view(
    store: FeatureStore, view: FeatureView, frame: pl.DataFrame, start: datetime, end: datetime
) -> int:
    """Write the newest row per entity of ``frame`` in [start, end] to the online store and
    record the interval. Returns the number of entities written."""
    registered = store.get_feature_view(view.name)
    if registered.batch_source is None:
        raise ValueError(f"feature view {view.name!r} has no batch source to materialize")
    timestamp = registered.batch_source.timestamp_field
    newest = newest_per_entity(frame, registered.entity_columns[0].name, timestamp, start, end)
    write_online(store, registered, newest, timestamp)
    store.registry.apply_materialization(registered, store.project, start, end)
    return newest.height


def write_online(store: FeatureStore, view: FeatureView, rows: pl.DataFrame, timestamp: str) -> None:
    """Upsert ``rows`` (one per entity: the join key, ``timestamp`` and the view's features)
    into the online store, stamped with their event time. Also what a stream pushes."""
    if rows.height == 0:
        return
    key_column = view.entity_columns[0]
    online_store = _online_store(store)
    if isinstance(online_store, SqliteOnlineStore):
        write_sqlite(store, online_store, view, rows, key_column.name, timestamp)
        return
    keys = entity_keys(rows[key_column.name], key_column.name, key_column.dtype.to_value_type())
    columns = {f.name: encode_column(rows[f.name], f.dtype.to_value_type()) for f in view.features}
    times: list[datetime] = rows[timestamp].to_list()
    batch: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]] = [
        (key, {name: values[i] for name, values in columns.items()}, times[i].replace(tzinfo=UTC), None)
        for i, key in enumerate(keys)
    ]
    online_store.online_write_batch(store.config, view, batch, None)


def delete_entities(store: FeatureStore, view_name: str, ids: list[Any]) -> int:
    """Remove the entities' rows from the online store (a GDPR erasure): Feast has no delete of
    single entities, so this writes to the store's own tables (SQLite: the view's table; Redis:
    the entity's hash, which holds every view of that entity). Returns the rows removed."""
    if not ids:
        return 0
    view = store.get_feature_view(view_name)
    key_column = view.entity_columns[0]
    config = store.config
    version = config.entity_key_serialization_version
    keys = entity_keys(pl.Series(ids), key_column.name, key_column.dtype.to_value_type())
    online_store = _online_store(store)
    if isinstance(online_store, SqliteOnlineStore):
        table = compute_table_id(config.project, view, config.registry.enable_online_feature_view_versioning)
        conn = online_store._get_conn(config)  # noqa: SLF001 - the store's own connection
        with conn:
            cursor = conn.executemany(
                f'DELETE FROM "{table}" WHERE entity_key = ?',
                [(serialize_entity_key(k, entity_key_serialization_version=version),) for k in keys],
            )
        return cursor.rowcount
    if isinstance(online_store, RedisOnlineStore):
        client = online_store._get_client(config.online_store)  # noqa: SLF001
        return int(client.delete(*[_redis_key(config.project, k, version) for k in keys]))
    raise NotImplementedError(f"erasure from a {type(online_store).__name__} online store")


def entities_present(store: FeatureStore, view_name: str, ids: list[Any]) -> int:
    """How many of the entities the online store still answers for (any feature not null),
    read through Feast as the scoring service reads it."""
    if not ids:
        return 0
    view = store.get_feature_view(view_name)
    key = view.entity_columns[0].name
    names = [f.name for f in view.features]
    values = store.get_online_features(
        features=[f"{view_name}:{n}" for n in names], entity_rows=[{key: i} for i in ids]
    ).to_dict()
    return sum(any(values[n][row] is not None for n in names) for row in range(len(ids)))
