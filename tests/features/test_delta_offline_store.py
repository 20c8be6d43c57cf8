"""The Delta offline store: point-in-time joins through Feast, reading only the live Delta rows."""

from datetime import datetime, timedelta

import pandas as pd
import polars as pl
from deltalake import DeltaTable, write_deltalake
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig
from feast.data_format import DeltaFormat
from feast.types import Float64, Int64

T0 = datetime(2026, 1, 1)


def store_over(tmp_path, path: str, ttl_days: int = 30) -> tuple[FeatureStore, FeatureView]:
    customer = Entity(name="customer", join_keys=["customer_id"])
    source = FileSource(
        name="spend_source", path=path, timestamp_field="feature_ts", file_format=DeltaFormat()
    )
    view = FeatureView(
        name="spend",
        entities=[customer],
        ttl=timedelta(days=ttl_days),
        schema=[Field(name="spend", dtype=Float64), Field(name="orders", dtype=Int64)],
        source=source,
    )
    config = RepoConfig(
        project="test",
        provider="local",
        entity_key_serialization_version=3,
        registry=str(tmp_path / "registry.db"),
        offline_store={"type": "lakehouse_assets.features.delta_offline_store.DeltaOfflineStore"},
        online_store={"type": "sqlite", "path": str(tmp_path / "online.db")},
    )
    store = FeatureStore(config=config)
    store.apply([customer, view])
    return store, view


def features_at(store, rows):
    entity_df = pd.DataFrame(rows, columns=["customer_id", "event_timestamp"])
    out = store.get_historical_features(entity_df=entity_df, features=["spend:spend", "spend:orders"]).to_df()
    return out.sort_values(["customer_id", "event_timestamp"]).reset_index(drop=True)


def test_deleted_and_overwritten_rows_never_leak(tmp_path):
    path = str(tmp_path / "gold" / "spend")
    write_deltalake(
        path,
        pl.DataFrame(
            {
                "customer_id": [1, 2],
                "feature_ts": [T0, T0],
                "spend": [10.0, 20.0],
                "orders": [1, 2],
            }
        ).to_arrow(),
    )
    table = DeltaTable(path)
    table.delete("customer_id = 2")  # e.g. a GDPR erasure
    table.update(predicate="customer_id = 1", updates={"spend": "99.0"})  # a recomputed value
    assert len(table.to_pyarrow_table()) == 1
    store, _ = store_over(tmp_path, path)
    got = features_at(store, [(1, T0 + timedelta(hours=1)), (2, T0 + timedelta(hours=1))])
    assert got["spend"].tolist()[0] == 99.0  # the overwritten value is gone
    assert pd.isna(got["spend"].tolist()[1])  # the deleted row does not come back
    # The stock file store would read both Parquet versions: prove the fixture has stale files.
    stale = pl.read_parquet(f"{path}/*.parquet")
    assert stale.height > 1


def brute_force(rows, features, ttl):
    """For each (entity, time): the latest feature row at or before it, within the TTL."""
    out = []
    for customer_id, at in rows:
        candidates = [
            f
            for f in features
            if f["customer_id"] == customer_id and f["feature_ts"] <= at and at - f["feature_ts"] <= ttl
        ]
        best = max(candidates, key=lambda f: f["feature_ts"], default=None)
        out.append((customer_id, at, None if best is None else best["spend"]))
    return sorted(out)


def test_point_in_time_join_matches_brute_force(tmp_path):
    ttl = timedelta(days=3)
    features = [
        {"customer_id": c, "feature_ts": T0 + timedelta(days=d), "spend": float(c * 100 + d), "orders": d}
        for c in (1, 2, 3)
        for d in (0, 2, 5, 9)
    ]
    path = str(tmp_path / "gold" / "spend")
    write_deltalake(path, pl.DataFrame(features).to_arrow())
    # Backfilled rows: a later commit adds history older than rows already there.
    backfill = [
        {"customer_id": c, "feature_ts": T0 + timedelta(days=d), "spend": -float(c + d), "orders": d}
        for c in (1, 4)
        for d in (1, 7)
    ]
    write_deltalake(path, pl.DataFrame(backfill).to_arrow(), mode="append")
    features += backfill
    store, _ = store_over(tmp_path, path, ttl_days=3)
    rows = [
        (c, T0 + timedelta(days=d, hours=h))
        for c in (1, 2, 3, 4)
        for d in (-1, 0, 1, 3, 4, 5, 8, 12, 13)
        for h in (0, 12)
    ]
    rows += [rows[0], rows[5]]  # duplicate entity/timestamp rows: one output row per input row
    got = features_at(store, rows)
    assert len(got) == len(rows)
    actual = sorted(
        (
            int(r.customer_id),
            r.event_timestamp.tz_localize(None).to_pydatetime(),
            None if pd.isna(r.spend) else r.spend,
        )
        for r in got.itertuples()
    )
    assert actual == brute_force(rows, features, ttl)
    assert any(value is None for *_, value in actual)  # TTL edges produce misses
    assert any(value is not None and value < 0 for *_, value in actual)  # backfill is used
