"""Bronze: raw, append-only Delta tables of source change events and landed event files.

Assets are thin: they wire resources to the capture/ingest functions in ``sources/`` and attach
metadata. One asset per source table (built from ``SOURCE_TABLES``), one multi-asset for the
payments files (valid rows and quarantine are written together).
"""

from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)
from pydantic import Field

from lakehouse_assets.conflicts import retry_on_conflict
from lakehouse_assets.metadata import OWNERS, bronze_asset_key, table_metadata
from lakehouse_assets.resources.lake import LakeResource
from lakehouse_assets.resources.sources import LandingZoneResource, SourceDatabaseResource
from lakehouse_assets.sources.cdc import CaptureResult, bronze_table_name, capture_to_bronze
from lakehouse_assets.sources.landing import (
    PAYMENTS,
    LandingFile,
    SkippedEntry,
    ingest_files,
    landing_entry,
    reconcile_files,
    scan_landing,
)
from lakehouse_assets.sources.postgres import SlotStream, capture_postgres_to_bronze, int_to_lsn
from lakehouse_assets.sources.schema import SOURCE_TABLES, SourceTable
from lakehouse_assets.tables import LANDING_QUARANTINE_TABLE

SHOP_SOURCE = AssetSpec(
    "shop_source_db",
    group_name="sources",
    kinds={"sqlite"},
    owners=OWNERS,
    description="The shop's operational database (SQLite); every change is captured by triggers "
    "into per-table change logs in commit order.",
)
PAYMENTS_LANDING = AssetSpec(
    "landing_payments_files",
    group_name="sources",
    kinds={"file"},
    owners=OWNERS,
    description="Payment event files (CSV, JSON lines, Parquet) dropped into <landing>/payments.",
)


def cdc_asset_key(table: SourceTable) -> AssetKey:
    """The Dagster asset key of a source table's bronze change events."""
    return bronze_asset_key(table.name)


def _build_cdc_asset(table: SourceTable) -> AssetsDefinition:
    target = bronze_table_name(table)

    @asset(
        name=cdc_asset_key(table).path[-1],
        group_name="bronze",
        kinds={"delta", "polars"},
        owners=OWNERS,
        deps=[SHOP_SOURCE.key],
        description=(
            f"Append-only Delta table of every insert, update and delete of the source "
            f"`{table.name}` table, in commit order: operation, sequence, commit time, the row "
            f"image, and ingestion metadata. Exactly once: the capture cursor is committed with "
            f"the rows as a Delta transaction identifier."
        ),
        metadata={"table": target, "source_table": table.name, "key": table.key},
    )
    def _bronze_cdc(
        context: AssetExecutionContext, lake: LakeResource, source_db: SourceDatabaseResource
    ) -> MaterializeResult:
        engine = lake.engine()

        def progress(result: CaptureResult) -> None:
            context.log.info(
                f"{table.name}: {result.rows:,} changes committed (sequence "
                f"{result.cursor_before} -> {result.cursor_after}, Delta v{result.version})"
            )

        postgres = source_db.postgres()
        extra: dict[str, Any] = {}
        if postgres is None:
            result = retry_on_conflict(
                context,
                lambda: capture_to_bronze(
                    engine,
                    source_db.change_log(),
                    table,
                    batch_id=context.run.run_id,
                    chunk_rows=lake.cdc_chunk_rows,
                    on_chunk=progress,
                ),
            )
        else:  # log-based capture from PostgreSQL's write-ahead log
            stream = SlotStream(postgres, table)
            result = retry_on_conflict(
                context,
                lambda: capture_postgres_to_bronze(
                    engine,
                    stream,
                    batch_id=context.run.run_id,
                    max_rows=lake.cdc_chunk_rows,
                    on_batch=progress,
                ),
            )
            extra = {
                "replication_slot": stream.slot,
                "lsn_from": int_to_lsn(result.cursor_before),
                "lsn_to": int_to_lsn(result.cursor_after),
                **stream.lag(),
            }
        context.log.info(f"{table.name}: captured {result.rows:,} changes in {result.seconds:.2f}s")
        return MaterializeResult(
            metadata={
                **table_metadata(engine, target),
                "changes_captured": result.rows,
                "sequence_from": result.cursor_before,
                "sequence_to": result.cursor_after,
                "operations": MetadataValue.json(result.ops),
                "commits": len(result.commits),
                **extra,
            }
        )

    return _bronze_cdc


BRONZE_CDC_ASSETS = [_build_cdc_asset(table) for table in SOURCE_TABLES]


class LandingIngestConfig(Config):
    """Which landing files a run ingests (the sensor names one; empty: every file)."""

    files: list[str] = Field(
        default_factory=list,
        description="Paths relative to the landing folder (e.g. payments/x.csv). Empty: every "
        "file in the dataset's folder that is not ingested yet.",
    )


PAYMENTS_KEY = AssetKey("bronze_payments")
QUARANTINE_KEY = AssetKey("bronze_landing_quarantine")


def _landing_table_spec(key: AssetKey, table: str, description: str) -> AssetSpec:
    return AssetSpec(
        key,
        group_name="bronze",
        kinds={"delta", "polars"},
        owners=OWNERS,
        deps=[PAYMENTS_LANDING.key],
        description=description,
        metadata={"table": table},
    )


@multi_asset(
    specs=[
        _landing_table_spec(
            PAYMENTS_KEY,
            PAYMENTS.table,
            "Valid, typed payment events from the landing folder, one row per record, with the "
            "source file, its content hash and the record number.",
        ),
        _landing_table_spec(
            QUARANTINE_KEY,
            LANDING_QUARANTINE_TABLE,
            "Records (or whole files) from the landing folder that failed to parse or validate: "
            "dataset, file, record number, the reason and the raw record.",
        ),
    ],
    check_specs=[
        AssetCheckSpec(
            "records_reconciled",
            asset=PAYMENTS_KEY,
            blocking=True,
            description="For every file ingested in the run: records read = rows in bronze + "
            "rows in quarantine, counted from the committed tables.",
        )
    ],
)
def ingest_payments_files(
    context: AssetExecutionContext,
    config: LandingIngestConfig,
    lake: LakeResource,
    landing_zone: LandingZoneResource,
):
    engine = lake.engine()
    landing = landing_zone.folder
    if config.files:
        paths = [landing / rel for rel in config.files]
        outside = [
            rel
            for rel, p in zip(config.files, paths, strict=True)
            if not p.resolve().is_relative_to(landing.resolve())
        ]
        if outside:  # "../" or an absolute path: never read files beyond the landing folder
            raise Failure(f"landing files must be inside {landing}: refused {', '.join(outside)}")
        missing = [str(p) for p in paths if not p.is_symlink() and not p.exists()]
        if missing:
            raise Failure(f"landing files not found (moved or deleted?): {', '.join(missing)}")
        entries = [landing_entry(landing, p) for p in paths]  # only the named files
        files = [e for e in entries if isinstance(e, LandingFile)]
        skipped = [e for e in entries if isinstance(e, SkippedEntry)]
    else:
        files, skipped = scan_landing(landing, PAYMENTS)
    paths = [f.path for f in files]
    for entry in skipped:  # never read; other files keep flowing
        context.log.warning(f"skipped {entry.relpath}: {entry.reason}")
    context.log.info(f"{len(paths)} payments file(s) to check in {landing}")

    def progress(index: int, parsed) -> None:
        if parsed is not None:
            context.log.info(
                f"[{index}/{len(paths)}] {parsed.relpath}: {parsed.valid.height} valid, "
                f"{parsed.quarantine.height} quarantined"
            )

    result = retry_on_conflict(
        context,
        lambda: ingest_files(engine, landing, PAYMENTS, paths, batch_id=context.run.run_id, on_file=progress),
    )
    mismatches = reconcile_files(engine, PAYMENTS, result.rows_read_by_file)
    run_metadata: dict[str, Any] = {
        "files_ingested": result.files_ingested,
        "files_already_ingested": result.files_skipped,
        "records_read": result.rows_read,
        "rows_landed": result.rows_landed,
        "rows_quarantined": result.rows_quarantined,
        "entries_skipped": MetadataValue.json({s.relpath: s.reason for s in skipped}),
    }
    yield MaterializeResult(
        asset_key=PAYMENTS_KEY, metadata={**table_metadata(engine, PAYMENTS.table), **run_metadata}
    )
    yield MaterializeResult(
        asset_key=QUARANTINE_KEY,
        metadata={
            **table_metadata(engine, LANDING_QUARANTINE_TABLE),
            "rows_quarantined": result.rows_quarantined,
            "reasons": MetadataValue.json(result.reasons),
        },
    )
    yield AssetCheckResult(
        check_name="records_reconciled",
        asset_key=PAYMENTS_KEY,
        passed=not mismatches,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            **run_metadata,
            "mismatched_files": MetadataValue.json(
                {k: {"read": r, "landed": lnd, "quarantined": q} for k, (r, lnd, q) in mismatches.items()}
            ),
        },
    )
