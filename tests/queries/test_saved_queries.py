"""Saved queries: header parsing, typed parameters, DuckDB over the current Delta versions, and
alerts that fire and recover through the notifier exactly once per transition."""

from datetime import date, datetime, timedelta

import polars as pl
import pytest
from dagster import AssetKey, materialize

from lakehouse_assets.definitions import build_definitions
from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.queries.lake_sql import QueryError, lake_connection, run_sql
from lakehouse_assets.queries.saved import load_saved_queries, parse_saved_query, run_saved_query
from lakehouse_assets.resources.lake import LakeResource
from lakehouse_assets.resources.monitoring import AlertNotifier
from lakehouse_assets.tables import ALERT_EVENTS_TABLE

HEADER = """-- description: Daily things.
-- description: Second line.
-- param days = 30: history
-- param floor = 0.5: a float
-- param label = 'x': a text
-- alert too_many [error]: n > $floor
-- just a comment
SELECT order_date, COUNT(*) AS n FROM gold.fct_orders WHERE order_date > $days GROUP BY 1
"""


def test_the_header_declares_description_typed_parameters_alerts_and_tables(tmp_path):
    path = tmp_path / "daily_things.sql"
    path.write_text(HEADER)
    query = parse_saved_query(path)
    assert query.description == "Daily things. Second line."
    assert [(p.name, p.default) for p in query.params] == [("days", 30), ("floor", 0.5), ("label", "x")]
    assert [(a.name, a.severity, a.condition) for a in query.alerts] == [("too_many", "error", "n > $floor")]
    assert query.tables == {"gold.fct_orders"}
    assert query.resolve_params({"days": "7"}) == {"days": 7, "floor": 0.5, "label": "x"}
    with pytest.raises(QueryError, match="'days' expects int, got 'soon'"):
        query.resolve_params({"days": "soon"})
    with pytest.raises(QueryError, match=r"unknown parameter\(s\) \['dayz'\]"):
        query.resolve_params({"dayz": 1})


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("SELECT 1", "needs a `-- description:`"),
        ("-- description: x\n-- param days 30\nSELECT 1", r"bad\.sql:2: expected `-- param"),
        ("-- description: x\n-- alert : x > 1\nSELECT 1", r"bad\.sql:2: expected `-- alert"),
        ("-- description: x\nSELEC oops FROM", "not valid SQL"),
    ],
)
def test_a_malformed_query_file_is_refused_naming_the_file_and_line(tmp_path, text, error):
    path = tmp_path / "bad.sql"
    path.write_text(text)
    with pytest.raises(QueryError, match=error):
        parse_saved_query(path)


def fct_orders(day_returns: dict[date, tuple[int, int]]) -> pl.DataFrame:
    """gold.fct_orders rows: per day, (orders, of which returned)."""
    rows = []
    for day, (orders, returned) in day_returns.items():
        for i in range(orders):
            ts = datetime.combine(day, datetime.min.time())
            rows.append(
                {
                    "order_id": len(rows) + 1,
                    "order_date": day,
                    "amount": 10.0,
                    "main_category": "books" if i % 2 else "toys",
                    "return_ts": ts + timedelta(days=3) if i < returned else None,
                }
            )
    return pl.DataFrame(rows, schema_overrides={"return_ts": pl.Datetime("us")})


def test_queries_read_the_current_delta_version_and_cannot_reach_files(engine, settings):
    engine.overwrite("gold/fct_orders", fct_orders({date(2026, 1, 1): (4, 1)}))
    engine.overwrite("gold/fct_orders", fct_orders({date(2026, 1, 2): (3, 3)}))  # replaces
    (query,) = [q for q in load_saved_queries() if q.name == "business_daily_orders"]
    result = run_saved_query(DeltaEngine(settings.lake_root), query)
    assert result.select("order_date", "orders", "returns", "return_rate").rows() == [
        (date(2026, 1, 2), 3, 3, 1.0)
    ]
    conn = lake_connection(DeltaEngine(settings.lake_root))
    with pytest.raises(QueryError, match="file system operations are disabled"):
        run_sql(conn, "SELECT * FROM read_csv('/etc/passwd')")
    with pytest.raises(QueryError, match=r"silver\.orders not in the lake yet"):
        run_saved_query(
            DeltaEngine(settings.lake_root),
            query.__class__(**{**query.__dict__, "tables": frozenset({"silver.orders"})}),
        )


def test_an_alert_fires_once_and_recovers_once_through_the_notifier(engine, settings, webhook):
    url, received = webhook
    asset = build_definitions().get_assets_def(AssetKey("query_business_daily_orders"))
    resources = {"lake": LakeResource(root=settings.lake_root), "alerts": AlertNotifier(webhook_url=url)}

    def evaluate(days: dict[date, tuple[int, int]]) -> bool:
        engine.overwrite("gold/fct_orders", fct_orders(days))
        result = materialize([asset], resources=resources)
        (check,) = result.get_asset_check_evaluations()
        return check.passed

    calm = {date(2026, 1, 1): (30, 3), date(2026, 1, 2): (30, 6)}
    spike = {**calm, date(2026, 1, 3): (25, 20)}  # 80% returned on a 25-order day
    assert evaluate(calm) and received == []
    assert not evaluate(spike)
    assert not evaluate(spike)  # still firing: no second notification
    assert len(received) == 1 and "return_rate_spike fired" in received[0]["text"]
    assert "2026-01-03" in received[0]["text"]  # the offending row is in the message
    assert evaluate(calm)
    assert len(received) == 2 and "return_rate_spike recovered" in received[1]["text"]
    events = engine.read(ALERT_EVENTS_TABLE).sort("evaluated_at")
    assert events["state"].to_list() == ["firing", "recovered"]
    assert events["matching_rows"].to_list() == [1, 0]
    assert engine.read("queries/business_daily_orders").height == 2  # the result table


def test_every_saved_query_is_an_asset_downstream_of_the_tables_it_reads(settings):
    specs = {s.key.to_user_string(): s for s in build_definitions(settings).resolve_all_asset_specs()}
    names = {q.name for q in load_saved_queries()}
    assert {f"query_{n}" for n in names} <= set(specs)
    deps = {k: {d.asset_key.to_user_string() for d in specs[k].deps} for k in specs}
    assert deps["query_business_daily_orders"] == {"fct_orders"}
    # every writer of monitoring/drift_metrics: the online monitors and the batch product's drift monitor
    assert deps["query_ml_drift_scores"] == {
        "feature_drift",
        "prediction_drift",
        "demand_forecast_batch_drift",
    }
    assert "silver_orders" in deps["query_data_expectation_pass_rates"]
    assert {"bronze_orders", "fct_orders"} <= deps["query_data_table_freshness"]  # reads all


def test_a_query_over_a_table_not_written_yet_waits_instead_of_failing(settings, webhook):
    url, received = webhook
    asset = build_definitions().get_assets_def(AssetKey("query_ml_serving_latency"))
    result = materialize(
        [asset],
        resources={"lake": LakeResource(root=settings.lake_root), "alerts": AlertNotifier(webhook_url=url)},
    )
    assert result.success and result.get_asset_materialization_events() == []
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and "serving.inference_log not in the lake yet" in check.description
    assert received == []
