"""A Delta-correct, offline Feast offline store.

Feast's duckdb offline store reads Delta through DuckDB's delta extension, which it downloads
(impossible offline); its file/dask store reads a Delta folder's Parquet files and ignores the
Delta log, so deleted and overwritten rows come back. This store reuses Feast's duckdb/ibis
point-in-time logic unchanged and swaps only the reader: a ``FileSource`` with
``DeltaFormat`` is read through delta-rs (``DeltaTable(...).to_pyarrow_dataset()``), which
applies the log (only the files of the current version, deletion vectors honoured).

feature_store.yaml::

    offline_store:
      type: lakehouse_assets.features.delta_offline_store.DeltaOfflineStore
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Literal

import ibis
import pandas as pd
from deltalake import DeltaTable
from feast.data_format import DeltaFormat
from feast.data_source import DataSource
from feast.feature_view import FeatureView
from feast.infra.offline_stores.duckdb import DuckDBOfflineStore, _write_data_source
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.offline_stores.ibis import (
    get_historical_features_ibis,
    pull_all_from_table_or_query_ibis,
    pull_latest_from_table_or_query_ibis,
)
from feast.infra.offline_stores.offline_store import RetrievalJob
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from ibis.expr.types import Table


class DeltaOfflineStoreConfig(FeastConfigBaseModel):
    """Feast configuration of the Delta-correct offline store (``type: ...DeltaOfflineStore``)."""

    type: Literal["lakehouse_assets.features.delta_offline_store.DeltaOfflineStore"] = (
        "lakehouse_assets.features.delta_offline_store.DeltaOfflineStore"
    )
    staging_location: str | None = None
    staging_location_endpoint_override: str | None = None


_PINNED_VERSIONS: ContextVar[dict[str, int] | None] = ContextVar("pinned_delta_versions", default=None)


@contextmanager
def pinned_versions(versions_by_path: dict[str, int]) -> Iterator[None]:
    """Within the block, Delta sources at these paths are read at these versions (time travel),
    so a training set can be rebuilt exactly as it was."""
    token = _PINNED_VERSIONS.set({**(_PINNED_VERSIONS.get() or {}), **versions_by_path})
    try:
        yield
    finally:
        _PINNED_VERSIONS.reset(token)


_RELEASING = threading.Lock()
_MEMTABLE_PREFIX = "ibis_"  # ibis names its in-memory tables ibis_<kind>_memtable_<id>


def memtable_views(backend: ibis.BaseBackend) -> set[str]:
    """The in-memory tables ibis holds registered in a DuckDB backend's connection."""
    rows = backend.con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()  # type: ignore[attr-defined]
    return {name for (name,) in rows if name.startswith(_MEMTABLE_PREFIX)}


@contextmanager
def released_memtables() -> Iterator[None]:
    """Run a retrieval (to its frame) in the block: the in-memory tables ibis registered in its
    DuckDB connection meanwhile (Feast's entity frame, each source this store read) are dropped
    at its end. ibis keeps them until the process exits, so every retrieval would otherwise pin
    a copy of the tables it read. Retrievals in such blocks take turns (one connection)."""
    with _RELEASING:
        backend = ibis.get_backend()
        before = memtable_views(backend)
        try:
            yield
        finally:
            added = memtable_views(backend) - before
            for name in added:
                backend.con.unregister(name)  # type: ignore[attr-defined]
            for op in [op for op in backend._memtables if op.name in added]:  # type: ignore[attr-defined]
                backend._memtables.discard(op)  # type: ignore[attr-defined]


def read_delta_source(data_source: DataSource, repo_path: str) -> Table:
    """A Delta ``FileSource`` as an ibis table, read through the Delta log by delta-rs (at the
    pinned version, if any)."""
    if not isinstance(data_source, FileSource) or not isinstance(data_source.file_format, DeltaFormat):
        raise ValueError(
            f"data source {data_source.name!r} must be a FileSource with DeltaFormat for the "
            f"Delta offline store"
        )
    version = (_PINNED_VERSIONS.get() or {}).get(data_source.path)
    table = DeltaTable(data_source.path, version=version).to_pyarrow_table()
    return ibis.memtable(table)


def _delta_io(config: RepoConfig) -> dict:
    """The arguments every ibis helper takes: our reader, Feast's writer, the staging place."""
    return {
        "data_source_reader": read_delta_source,
        "data_source_writer": _write_data_source,
        "staging_location": config.offline_store.staging_location,
        "staging_location_endpoint_override": config.offline_store.staging_location_endpoint_override,
    }


class DeltaOfflineStore(DuckDBOfflineStore):
    """Feast's duckdb offline store with a Delta-log-aware reader."""

    @staticmethod
    def pull_latest_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None,
        start_date: datetime,
        end_date: datetime,
    ) -> RetrievalJob:
        return pull_latest_from_table_or_query_ibis(
            config=config,
            data_source=data_source,
            join_key_columns=join_key_columns,
            feature_name_columns=feature_name_columns,
            timestamp_field=timestamp_field,
            created_timestamp_column=created_timestamp_column,
            start_date=start_date,
            end_date=end_date,
            **_delta_io(config),
        )

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
    ) -> RetrievalJob:
        return get_historical_features_ibis(
            config=config,
            feature_views=feature_views,
            feature_refs=feature_refs,
            entity_df=entity_df,
            registry=registry,
            project=project,
            full_feature_names=full_feature_names,
            **_delta_io(config),
            filter_by_created_timestamp=filter_by_created_timestamp,
        )

    @staticmethod
    def pull_all_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> RetrievalJob:
        return pull_all_from_table_or_query_ibis(
            config=config,
            data_source=data_source,
            join_key_columns=join_key_columns,
            feature_name_columns=feature_name_columns,
            timestamp_field=timestamp_field,
            created_timestamp_column=created_timestamp_column,
            start_date=start_date,
            end_date=end_date,
            **_delta_io(config),
        )
