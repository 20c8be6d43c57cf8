"""Silver assets: one per apply-changes spec, with an asset check per expectation."""

from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from lakehouse_assets.conflicts import retry_on_conflict
from lakehouse_assets.metadata import OWNERS, table_metadata
from lakehouse_assets.metadata import silver_asset_key as silver_key
from lakehouse_assets.resources.lake import LakeResource
from lakehouse_assets.silver.apply_changes import ApplyChangesSpec, ApplyResult, Expectation, apply_changes
from lakehouse_assets.silver.specs import SILVER_SPECS
from lakehouse_assets.tables import EXPECTATION_RESULTS_TABLE, SILVER_QUARANTINE_TABLE


def secondary_tables(spec: ApplyChangesSpec) -> dict[str, str]:
    """The tables a silver asset writes besides its own (the catalog lists them)."""
    tables = {
        SILVER_QUARANTINE_TABLE: "Change events dropped by a silver expectation: table, the "
        "expectations broken, key, sequence, operation and the row as JSON.",
        EXPECTATION_RESULTS_TABLE: "Rows checked and failed per silver expectation and batch of "
        "change events: the history behind expectation pass rates.",
    }
    if spec.scd_type == 1:
        tables[spec.tombstones] = (
            f"Keys deleted from {spec.table} with the sequence of the "
            "delete, so an older event arriving late cannot bring them back."
        )
    return tables


def silver_asset_key(spec: ApplyChangesSpec) -> AssetKey:
    """The Dagster asset key of a silver table."""
    return silver_key(spec.name)


def expectation_check_name(expectation: Expectation) -> str:
    """The asset check name of an expectation."""
    return f"expect_{expectation.name}"


def _expectation_check(spec: ApplyChangesSpec, e: Expectation, result: ApplyResult) -> AssetCheckResult:
    counts = result.expectations[e.name]
    share = counts.failed / counts.checked if counts.checked else 0.0
    passed = counts.failed == 0 if e.action != "drop" else share <= e.max_drop_share
    return AssetCheckResult(
        check_name=expectation_check_name(e),
        asset_key=silver_asset_key(spec),
        passed=passed,
        severity=AssetCheckSeverity.WARN if e.action == "warn" else AssetCheckSeverity.ERROR,
        metadata={
            "action": e.action,
            "predicate": e.predicate,
            "rows_checked": counts.checked,
            "rows_failed": counts.failed,
            "rows_passed": counts.checked - counts.failed,
            "failed_share": share,
        },
    )


def _build_silver_asset(spec: ApplyChangesSpec) -> AssetsDefinition:
    key = silver_asset_key(spec)
    checks = [
        AssetCheckSpec(
            expectation_check_name(e),
            asset=key,
            blocking=e.action in ("drop", "fail"),
            description=f"{e.action}: {e.predicate}"
            + (f" (fails above {e.max_drop_share:.0%} dropped)" if e.action == "drop" else ""),
        )
        for e in spec.expectations
    ]
    checks.append(
        AssetCheckSpec(
            "events_reconciled",
            asset=key,
            blocking=True,
            description="Change events read = applied + superseded (duplicate / older) + quarantined.",
        )
    )

    @asset(
        name=key.path[-1],
        group_name="silver",
        kinds={"delta", "polars"},
        owners=OWNERS,
        deps=[AssetKey(spec.source.replace("/", "_"))],
        description=(spec.description or spec.table) + f" Applied from `{spec.source}` by a "
        f"declarative SCD{spec.scd_type} spec keyed on {', '.join(spec.keys)}.",
        check_specs=checks,
        metadata={
            "table": spec.table,
            "keys": list(spec.keys),
            "scd_type": spec.scd_type,
            "also_writes": MetadataValue.json(secondary_tables(spec)),
        },
    )
    def _silver(context: AssetExecutionContext, lake: LakeResource):
        engine = lake.engine()
        result = retry_on_conflict(
            context,
            lambda: apply_changes(
                engine,
                spec,
                batch_id=context.run.run_id,
                max_events=lake.silver_max_events_per_apply or None,
                log=context.log.info,
            ),
        )
        context.log.info(
            f"{spec.table}: {result.events_read:,} events -> {result.rows_inserted:,} inserted, "
            f"{result.rows_updated:,} updated, {result.rows_deleted:,} deleted, "
            f"{result.events_quarantined:,} quarantined in {result.seconds:.2f}s"
        )
        counts: dict[str, Any] = {
            "bronze_versions": f"{result.bronze_from + 1}..{result.bronze_to}",
            "events_read": result.events_read,
            "events_applied": result.events_applied,
            "events_superseded": result.events_superseded,
            "events_quarantined": result.events_quarantined,
            "rows_inserted": result.rows_inserted,
            "rows_updated": result.rows_updated,
            "rows_deleted": result.rows_deleted,
        }
        yield MaterializeResult(
            metadata={
                **table_metadata(engine, spec.table),
                **counts,
                "quarantine_table": MetadataValue.path(engine.table_path(SILVER_QUARANTINE_TABLE)),
            }
        )
        for e in spec.expectations:
            yield _expectation_check(spec, e, result)
        yield AssetCheckResult(check_name="events_reconciled", passed=result.reconciled, metadata=counts)

    return _silver


SILVER_ASSETS = [_build_silver_asset(spec) for spec in SILVER_SPECS]
