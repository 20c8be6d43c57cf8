"""Saved queries as assets: one per SQL file in ``queries/sql``, its result the Delta table
``queries/<name>``, each declared alert an asset check that notifies when it fires and when it
recovers."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from lakehouse_assets.governance.catalog import written_tables
from lakehouse_assets.metadata import OWNERS, markdown_preview, table_metadata
from lakehouse_assets.queries.lake_sql import sql_name
from lakehouse_assets.queries.saved import (
    CATALOG_RELATION,
    MissingTablesError,
    SavedQuery,
    alert_matches,
    load_saved_queries,
    record_alert,
    run_saved_query,
    writable,
)
from lakehouse_assets.resources.lake import LakeResource
from lakehouse_assets.resources.monitoring import AlertNotifier
from lakehouse_assets.tables import ALERT_EVENTS_TABLE

ALERT_EVENTS_DOC = (
    "Every time a saved query's alert fired or recovered: alert, query, state, "
    "matching rows, condition, when and the run."
)


class SavedQueryConfig(Config):
    """Values of the saved query's declared parameters (empty: their defaults)."""

    params: dict[str, str] = Field(
        default_factory=dict,
        description="Parameter values for this run (default: the "
        "query's declared defaults); converted to each parameter's declared type.",
    )


def _build_query_asset(query: SavedQuery, table_assets: dict[str, set[AssetKey]]) -> AssetsDefinition:
    key = AssetKey(f"query_{query.name}")
    # the catalog relation reads every table: such a query runs after all their writers
    deps: set[AssetKey] = {
        k
        for t in (table_assets if CATALOG_RELATION in query.tables else query.tables)
        for k in table_assets.get(t, ())
    }
    ordered: list[AssetKey] = sorted(deps, key=lambda k: k.to_user_string())
    params = "".join(f"\n- `${p.name}` (default {p.default!r}): {p.description}" for p in query.params)

    @asset(
        name=key.path[-1],
        group_name="queries",
        kinds={"duckdb", "delta", "sql"},
        owners=OWNERS,
        output_required=False,  # not materialized while a table it reads does not exist
        deps=ordered,
        description=query.description + (f"\n\nParameters:{params}" if params else ""),
        metadata={
            "table": query.result_table,
            "sql_file": str(query.path.name),
            "sql": MetadataValue.md(f"```sql\n{query.sql}\n```"),
            **(
                {"also_writes": MetadataValue.json({ALERT_EVENTS_TABLE: ALERT_EVENTS_DOC})}
                if query.alerts
                else {}
            ),
        },
        check_specs=[
            AssetCheckSpec(
                f"alert_{alert.name}",
                asset=key,
                blocking=False,
                description=f"fires when a result row meets: {alert.condition}",
            )
            for alert in query.alerts
        ],
    )
    def _query(
        context: AssetExecutionContext, config: SavedQueryConfig, lake: LakeResource, alerts: AlertNotifier
    ):
        engine = lake.engine()
        values = query.resolve_params(config.params)
        try:
            result = writable(run_saved_query(lake.engine(), query, values))
        except MissingTablesError as missing:
            context.log.warning(f"not materialized: {missing}")
            for alert in query.alerts:
                yield AssetCheckResult(
                    check_name=f"alert_{alert.name}", passed=True, description=f"skipped: {missing}"
                )
            return
        engine.overwrite(query.result_table, result, commit_metadata={"query": query.name, "params": values})
        context.log.info(f"{query.name}: {result.height:,} rows with {values}")
        yield MaterializeResult(
            metadata={**table_metadata(engine, query.result_table), "params": MetadataValue.json(values)}
        )
        for alert in query.alerts:
            matches = alert_matches(result, alert, values)
            state = record_alert(engine, query, alert, matches, context.run.run_id)
            if state.changed:
                alerts.send(
                    f"alert {state.alert} {'fired' if state.firing else 'recovered'}",
                    f"{alert.condition}: {matches.height} matching row(s) of "
                    f"{query.result_table}\n{markdown_preview(matches, 5)}",
                    severity=alert.severity if state.firing else "info",
                )
            yield AssetCheckResult(
                check_name=f"alert_{alert.name}",
                passed=not state.firing,
                severity=AssetCheckSeverity.ERROR if alert.severity == "error" else AssetCheckSeverity.WARN,
                description=f"{'firing' if state.firing else 'ok'}: {alert.condition}",
                metadata={
                    "matching_rows": matches.height,
                    "notified": state.changed,
                    "rows": MetadataValue.md(markdown_preview(matches, 10)),
                },
            )

    return _query


def build_query_assets(pipeline: list[AssetsDefinition | AssetSpec]) -> list[AssetsDefinition]:
    """The saved queries' assets; their upstream are the pipeline's assets that write the tables
    they read (found from those assets' ``table`` metadata)."""
    specs = [spec for a in pipeline for spec in (a.specs if isinstance(a, AssetsDefinition) else [a])]
    table_assets: dict[str, set[AssetKey]] = {}
    for spec in specs:
        for table in written_tables(spec):
            table_assets.setdefault(".".join(sql_name(table)), set()).add(spec.key)
    return [_build_query_asset(query, table_assets) for query in load_saved_queries()]
