"""Data-quality checks on the bronze CDC tables: nothing duplicated, nothing lost."""

import polars as pl
from dagster import AssetCheckResult, AssetChecksDefinition, asset_check

from lakehouse_assets.bronze.assets import cdc_asset_key
from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.erasure_registry import erased_keys
from lakehouse_assets.resources.lake import LakeResource
from lakehouse_assets.resources.sources import SourceDatabaseResource
from lakehouse_assets.sources.cdc import CaptureError, bronze_table_name, capture_app_id
from lakehouse_assets.sources.postgres import SlotStream, int_to_lsn
from lakehouse_assets.sources.schema import SOURCE_TABLES, SourceTable


def _build_cdc_checks(table: SourceTable) -> list[AssetChecksDefinition]:
    target = bronze_table_name(table)

    @asset_check(
        asset=cdc_asset_key(table),
        name="no_duplicate_changes",
        blocking=True,
        description="Every change sequence appears at most once in bronze.",
    )
    def no_duplicate_changes(lake: LakeResource) -> AssetCheckResult:
        engine = lake.engine()
        if not engine.exists(target):
            return AssetCheckResult(passed=True, metadata={"rows": 0})
        seqs = engine.read(target, columns=["_seq"])["_seq"]
        duplicates = seqs.len() - seqs.n_unique()
        return AssetCheckResult(
            passed=duplicates == 0,
            metadata={"rows": seqs.len(), "duplicate_sequences": duplicates},
        )

    @asset_check(
        asset=cdc_asset_key(table),
        name="all_changes_captured",
        blocking=True,
        description="SQLite source: every change of the source change log up to the committed "
        "capture cursor is in bronze, except those of customers erased under GDPR and their "
        "orders (deleted on purpose: governance/erasures). PostgreSQL "
        "source: the replication slot still exists (the log since the last capture is retained, "
        "nothing lost) and its lag is within the thresholds (bytes and seconds).",
    )
    def all_changes_captured(lake: LakeResource, source_db: SourceDatabaseResource) -> AssetCheckResult:
        engine = lake.engine()
        postgres = source_db.postgres()
        if postgres is not None:
            return _replication_check(engine, SlotStream(postgres, table), source_db)
        cursor = engine.app_transaction_version(target, capture_app_id(table)) or 0
        # erasure deletes by customer id where a table has one, else by order id
        erased_ids = erased_keys(engine)
        key = next((k for k in erased_ids if k in table.column_names), None)
        in_source = source_db.change_log().sequences(table, cursor, key)
        in_bronze = (
            engine.read(target, columns=["_seq"]).filter(pl.col("_seq") <= cursor)
            if engine.exists(target)
            else pl.DataFrame({"_seq": []}, schema={"_seq": pl.Int64})
        )
        absent = in_source.join(in_bronze.unique(), on="_seq", how="anti")
        erased = absent.filter(pl.col(key).is_in(erased_ids[key])) if key else absent.clear()
        pending = source_db.change_log().max_seq(table) > cursor
        return AssetCheckResult(
            passed=absent.height == erased.height,
            metadata={
                "cursor": cursor,
                "changes_in_source": in_source.height,
                "changes_in_bronze": in_bronze["_seq"].n_unique(),
                "changes_erased": erased.height,
                "changes_missing": absent.height - erased.height,
                "newer_changes_pending": pending,
            },
        )

    return [no_duplicate_changes, all_changes_captured]


def _replication_check(
    engine: LakeEngine, stream: SlotStream, source_db: SourceDatabaseResource
) -> AssetCheckResult:
    cursor = engine.app_transaction_version(bronze_table_name(stream.table), stream.app_id) or 0
    try:
        lag = stream.lag()
    except CaptureError as error:  # the slot was dropped or the source is down
        return AssetCheckResult(
            passed=False,
            description=str(error),
            metadata={"replication_slot": stream.slot, "bronze_lsn": int_to_lsn(cursor)},
        )
    passed = lag["lag_bytes"] <= source_db.max_lag_bytes and lag["lag_seconds"] <= source_db.max_lag_seconds
    return AssetCheckResult(
        passed=passed,
        metadata={
            "replication_slot": stream.slot,
            "bronze_lsn": int_to_lsn(cursor),
            **lag,
            "max_lag_bytes": source_db.max_lag_bytes,
            "max_lag_seconds": source_db.max_lag_seconds,
        },
    )


BRONZE_CDC_CHECKS = [check for table in SOURCE_TABLES for check in _build_cdc_checks(table)]
