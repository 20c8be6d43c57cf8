"""Saved queries: SQL files with a header that declares what they are, their parameters and
their alerts. Each becomes a Dagster asset (its result a Delta table ``queries/<name>``) and each
alert an asset check.

Header (``--`` lines before the SQL; any order)::

    -- description: Orders, revenue and returns per category and day.
    -- param days = 90: days of history, back from the newest order
    -- alert return_rate_spike: return_rate > 0.5 AND orders >= 20

A parameter is used as ``$days`` in the SQL; its default's type (int, float, text) is the type a
run's value is converted to. An alert fires when at least one result row meets its condition (SQL
over the result's columns) and recovers when none does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.queries.lake_sql import (
    QueryError,
    lake_connection,
    referenced_tables,
    run_sql,
    sql_name,
    stats_frame,
)
from lakehouse_assets.tables import ALERT_EVENTS_TABLE

SAVED_QUERIES_DIR = Path(__file__).parent / "sql"
CATALOG_RELATION = "lakehouse.tables"  # live table statistics, not a lake table
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_HEADER = re.compile(r"^--\s*(description|param|alert)\b\s*(.*)$")
_PARAM = re.compile(r"^(\w+)\s*=\s*([^:]+?)\s*(?::\s*(.*))?$")
_ALERT = re.compile(r"^(\w+)\s*(?:\[(warn|error)\])?\s*:\s*(.+)$")


class MissingTablesError(QueryError):
    """A table the query reads is not in the lake yet (its writer has not run)."""


@dataclass(frozen=True)
class Parameter:
    """A parameter a saved query declares, typed by its default."""

    name: str
    default: int | float | str
    description: str = ""

    def convert(self, value: Any) -> int | float | str:
        """A run's value as the default's type; a clear error when it is not one."""
        try:
            return type(self.default)(value)
        except (TypeError, ValueError) as error:
            raise QueryError(
                f"parameter {self.name!r} expects {type(self.default).__name__}, got {value!r}"
            ) from error


@dataclass(frozen=True)
class Alert:
    """An alert a saved query declares: a condition over its result and how severe firing is."""

    name: str
    condition: str
    severity: str = "warn"


@dataclass(frozen=True)
class SavedQuery:
    """A SQL file under queries/sql with its description, parameters, alerts and the tables it reads."""

    name: str
    sql: str
    description: str
    path: Path
    params: tuple[Parameter, ...] = ()
    alerts: tuple[Alert, ...] = ()
    tables: frozenset[str] = field(default_factory=frozenset)  # ``layer.name`` it reads

    @property
    def result_table(self) -> str:
        return f"queries/{self.name}"

    def resolve_params(self, given: dict[str, Any] | None = None) -> dict[str, Any]:
        declared = {p.name: p for p in self.params}
        unknown = set(given or {}) - set(declared)
        if unknown:
            raise QueryError(
                f"{self.name}: unknown parameter(s) {sorted(unknown)}; declared: {sorted(declared) or 'none'}"
            )
        return {name: p.convert((given or {}).get(name, p.default)) for name, p in declared.items()}


def _literal(text: str) -> int | float | str:
    try:
        value = json.loads(text)
    except ValueError:
        return text.strip("'")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise QueryError(f"parameter default {text!r} is not a number or text")
    return value


def parse_saved_query(path: Path) -> SavedQuery:
    """A saved query from its file; errors name the file and line."""
    name = path.stem
    if not _NAME.match(name):
        raise QueryError(f"{path}: a saved query's file name must be lower_snake_case")
    description: list[str] = []
    params: list[Parameter] = []
    alerts: list[Alert] = []
    text = path.read_text()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith("--"):
            if line.strip():
                break  # the header ends where the SQL starts
            continue
        match = _HEADER.match(line)
        if match is None:
            continue  # an ordinary comment
        kind, rest = match.groups()
        rest = rest.lstrip(":").strip()
        if kind == "description":
            description.append(rest)
        elif kind == "param":
            param = _PARAM.match(rest)
            if param is None:
                raise QueryError(f"{path}:{number}: expected `-- param NAME = DEFAULT: text`")
            params.append(Parameter(param[1], _literal(param[2]), param[3] or ""))
        else:
            alert = _ALERT.match(rest)
            if alert is None:
                raise QueryError(f"{path}:{number}: expected `-- alert NAME [warn|error]: CONDITION`")
            alerts.append(Alert(alert[1], alert[3].strip(), alert[2] or "warn"))
    if not description:
        raise QueryError(f"{path}: a saved query needs a `-- description:` header line")
    try:
        tables = frozenset(referenced_tables(text))
    except Exception as error:  # a parse error: the file is not valid SQL
        raise QueryError(f"{path}: not valid SQL: {error}") from error
    return SavedQuery(name, text, " ".join(description), path, tuple(params), tuple(alerts), tables)


def load_saved_queries(folder: Path = SAVED_QUERIES_DIR) -> list[SavedQuery]:
    """Every saved query in ``folder``, parsed and validated."""
    queries = [parse_saved_query(path) for path in sorted(folder.glob("*.sql"))]
    for query in queries:  # alert names become check names: unique per query
        names = [a.name for a in query.alerts]
        if len(names) != len(set(names)):
            raise QueryError(f"{query.path}: alert names repeat: {names}")
    return queries


def run_saved_query(
    engine: LakeEngine,
    query: SavedQuery,
    params: dict[str, Any] | None = None,
) -> pl.DataFrame:
    """The query's result over the current lake, with its declared parameters."""
    return run_lake_sql(engine, query.sql, query.resolve_params(params), name=query.name, tables=query.tables)


def run_lake_sql(
    engine: LakeEngine,
    sql: str,
    params: dict[str, Any] | None = None,
    *,
    name: str = "query",
    tables: frozenset[str] | None = None,
) -> pl.DataFrame:
    """SQL over the current lake (``tables``: the ``layer.name`` tables it reads, parsed from
    the SQL when not given). Only those tables are opened; the catalog's live statistics,
    ``lakehouse.tables``, only when it reads them."""
    if tables is None:
        try:
            tables = frozenset(referenced_tables(sql))
        except Exception as error:  # a parse error: not valid SQL
            raise QueryError(f"{name}: not valid SQL: {error}") from error
    present = {".".join(sql_name(t)): t for t in engine.tables()}
    extra = {CATALOG_RELATION: stats_frame(engine, present.values())} if CATALOG_RELATION in tables else {}
    missing = sorted(tables - set(present) - set(extra))
    if missing:
        raise MissingTablesError(
            f"{name}: table(s) {', '.join(missing)} not in the lake yet (materialize them first)"
        )
    conn = lake_connection(engine, tables=[present[t] for t in tables if t in present], extra=extra)
    with conn:
        return run_sql(conn, sql, params, name=name)


def alert_matches(result: pl.DataFrame, alert: Alert, params: dict[str, Any] | None = None) -> pl.DataFrame:
    """The result rows that meet the alert's condition (which may use the query's parameters)."""
    conn = lake_connection(None, tables=[], extra={"alert.result": result})
    with conn:
        return run_sql(
            conn, f"SELECT * FROM alert.result WHERE {alert.condition}", params, name=f"alert {alert.name}"
        )


@dataclass(frozen=True)
class AlertState:
    """Whether an alert fires now and whether that changed since the last evaluation."""

    alert: str
    firing: bool
    changed: bool  # it fired or recovered just now: notify
    matching_rows: int


ALERT_EVENT_SCHEMA = pl.Schema(
    {
        "alert": pl.String(),
        "query": pl.String(),
        "state": pl.String(),
        "matching_rows": pl.Int64(),
        "condition": pl.String(),
        "evaluated_at": pl.Datetime("us", "UTC"),
        "run_id": pl.String(),
    }
)


def last_alert_states(engine: LakeEngine) -> dict[str, str]:
    """alert id -> its last recorded state (``firing`` / ``recovered``)."""
    if not engine.exists(ALERT_EVENTS_TABLE):
        return {}
    events = engine.read(ALERT_EVENTS_TABLE).sort("evaluated_at")
    return dict(events.group_by("alert", maintain_order=True).last().select("alert", "state").iter_rows())


def record_alert(
    engine: LakeEngine,
    query: SavedQuery,
    alert: Alert,
    matches: pl.DataFrame,
    run_id: str,
) -> AlertState:
    """Record a transition (fired after not firing, recovered after firing) in the alert
    events table; an unchanged state records nothing, so re-evaluating is idempotent."""
    alert_id = f"{query.name}.{alert.name}"
    firing = matches.height > 0
    was_firing = last_alert_states(engine).get(alert_id) == "firing"
    if firing == was_firing:
        return AlertState(alert_id, firing, False, matches.height)
    event = pl.DataFrame(
        [
            {
                "alert": alert_id,
                "query": query.name,
                "state": "firing" if firing else "recovered",
                "matching_rows": matches.height,
                "condition": alert.condition,
                "evaluated_at": datetime.now(UTC),
                "run_id": run_id,
            }
        ],
        schema=ALERT_EVENT_SCHEMA,
    )
    engine.append(ALERT_EVENTS_TABLE, event)
    return AlertState(alert_id, firing, True, matches.height)


def writable(frame: pl.DataFrame) -> pl.DataFrame:
    """Columns of no type (all-NULL literals) as text: Delta has no NULL type."""
    return frame.with_columns(pl.col(c).cast(pl.String) for c, t in frame.schema.items() if t == pl.Null)
