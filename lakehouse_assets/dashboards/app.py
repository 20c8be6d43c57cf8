"""Dashboards as code, served by Dash (Plotly): one YAML file per dashboard in ``specs/``, each
panel a saved query (``queries/sql``) and a chart spec. Every page load runs the panels' queries
over the current lake tables, so a dashboard is as fresh as the lakehouse.

Panel keys: ``title``, ``query`` (a saved query's name), ``chart`` (line, bar, scatter or
table), ``x``, ``y`` (a column or a list of columns) and ``color`` (a column to split series by).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.express as px
import polars as pl
import yaml  # type: ignore[import-untyped]
from dash import Dash, Input, Output, dash_table, dcc, html

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.queries.saved import (
    QueryError,
    SavedQuery,
    load_saved_queries,
    run_saved_query,
)
from lakehouse_assets.runtime import is_loopback

SPECS_DIR = Path(__file__).parent / "specs"
CHARTS = {"line": px.line, "bar": px.bar, "scatter": px.scatter}


@dataclass(frozen=True)
class Panel:
    """One chart or table of a dashboard: a saved query and how to draw its result."""

    title: str
    query: str
    chart: str
    x: str | None = None
    y: tuple[str, ...] = ()
    color: str | None = None


@dataclass(frozen=True)
class Dashboard:
    """A page of panels, declared in a YAML spec."""

    slug: str
    title: str
    description: str
    panels: tuple[Panel, ...]


class DashboardError(ValueError):
    """A dashboard spec is invalid (the message names the file and panel)."""


def _panel(path: Path, number: int, spec: dict[str, Any], queries: dict[str, SavedQuery]) -> Panel:
    where = f"{path.name} panel {number} ({spec.get('title', 'untitled')})"
    unknown = set(spec) - {"title", "query", "chart", "x", "y", "color"}
    if unknown:
        raise DashboardError(f"{where}: unknown key(s) {sorted(unknown)}")
    if spec.get("query") not in queries:
        raise DashboardError(
            f"{where}: query {spec.get('query')!r} is not a saved query (one of {sorted(queries)})"
        )
    chart = spec.get("chart", "table")
    if chart != "table" and (chart not in CHARTS or not spec.get("x") or not spec.get("y")):
        raise DashboardError(
            f"{where}: a {chart!r} chart needs chart in {sorted([*CHARTS, 'table'])}, x and y"
        )
    y = spec.get("y") or ()
    return Panel(
        spec.get("title") or spec["query"],
        spec["query"],
        chart,
        spec.get("x"),
        (y,) if isinstance(y, str) else tuple(y),
        spec.get("color"),
    )


def load_dashboards(folder: Path = SPECS_DIR) -> list[Dashboard]:
    """Every dashboard spec in ``folder``, validated (unknown queries or chart kinds are named)."""
    queries = {q.name: q for q in load_saved_queries()}
    dashboards = []
    for path in sorted(folder.glob("*.yml")):
        spec = yaml.safe_load(path.read_text()) or {}
        panels = tuple(_panel(path, i, p, queries) for i, p in enumerate(spec.get("panels", []), 1))
        if not panels:
            raise DashboardError(f"{path.name}: a dashboard needs at least one panel")
        dashboards.append(
            Dashboard(path.stem, spec.get("title", path.stem), spec.get("description", ""), panels)
        )
    return dashboards


def dashboard_data(engine: LakeEngine, dashboard: Dashboard) -> dict[str, pl.DataFrame | QueryError]:
    """Each query of the dashboard run once over the current lake (a failure is kept as the
    panel's message, not raised: one missing table must not blank the other panels)."""
    queries = {q.name: q for q in load_saved_queries()}
    needed = {p.query: queries[p.query] for p in dashboard.panels}
    results: dict[str, pl.DataFrame | QueryError] = {}
    for name, query in needed.items():
        try:
            results[name] = run_saved_query(engine, query)
        except QueryError as error:
            results[name] = error
    return results


def _missing_columns(panel: Panel, frame: pl.DataFrame) -> list[str]:
    wanted = [c for c in (panel.x, *panel.y, panel.color) if c]
    return [c for c in wanted if c not in frame.columns]


def render_panel(panel: Panel, data: pl.DataFrame | QueryError, panel_id: str) -> html.Div:
    """A panel as Dash components: its chart, or the query's error in words."""
    body: Any
    if isinstance(data, QueryError):
        body = html.Pre(str(data), className="panel-error")
    elif data.height == 0:
        body = html.P(f"no rows yet: {panel.query} returned nothing", className="panel-empty")
    elif missing := _missing_columns(panel, data):
        body = html.Pre(f"{panel.query} has no column(s) {missing}", className="panel-error")
    elif panel.chart == "table":
        body = dash_table.DataTable(  # type: ignore[attr-defined]
            data=data.with_columns(pl.col(pl.Datetime).dt.to_string()).to_dicts(),
            columns=[{"name": c, "id": c} for c in data.columns],
            page_size=15,
            style_table={"overflowX": "auto"},
        )
    else:
        frame = data.to_pandas()
        options = {"markers": True} if panel.chart == "line" else {}  # one point still shows
        figure = CHARTS[panel.chart](
            frame, x=panel.x, y=list(panel.y), color=panel.color, title=None, **options
        )
        figure.update_layout(
            margin={"l": 40, "r": 10, "t": 10, "b": 40}, height=320, legend={"orientation": "h"}
        )
        body = dcc.Graph(figure=figure, className="panel-graph", config={"displaylogo": False})
    return html.Div(
        [html.H3(panel.title), body],
        id=panel_id,
        className="panel",
        style={"border": "1px solid #ddd", "padding": "8px", "margin": "8px"},
    )


def render_dashboard(engine: LakeEngine, dashboard: Dashboard) -> html.Div:
    """Every panel of a dashboard with its query run now over the lake."""
    data = dashboard_data(engine, dashboard)
    return html.Div(
        [
            html.H2(dashboard.title),
            html.P(dashboard.description),
            html.Div(
                [
                    render_panel(p, data[p.query], f"{dashboard.slug}-panel-{i}")
                    for i, p in enumerate(dashboard.panels, 1)
                ],
                style={"display": "grid", "gridTemplateColumns": "repeat(2, 1fr)"},
            ),
        ],
        id=f"dashboard-{dashboard.slug}",
    )


def create_app(engine: LakeEngine, dashboards: list[Dashboard] | None = None) -> Dash:
    """The Dash app: an index of the dashboards and one page each, re-queried on every load."""
    boards = dashboards or load_dashboards()
    by_slug = {d.slug: d for d in boards}
    app = Dash(__name__, title="Lakehouse dashboards", update_title=None)  # type: ignore[arg-type]
    app.layout = html.Div(
        [
            dcc.Location(id="url"),
            html.Nav([dcc.Link(d.title, href=f"/{d.slug}", style={"marginRight": "16px"}) for d in boards]),
            html.Div(id="page"),
        ],
        style={"fontFamily": "sans-serif", "margin": "16px"},
    )

    @app.callback(Output("page", "children"), Input("url", "pathname"))
    def _page(pathname: str | None):
        slug = (pathname or "/").strip("/") or boards[0].slug
        if slug not in by_slug:
            return html.P(f"no dashboard {slug!r}: one of {sorted(by_slug)}", className="panel-error")
        return render_dashboard(engine, by_slug[slug])

    return app


def check_bind(host: str) -> None:
    """The dashboards have no login: they bind to loopback only."""
    if not is_loopback(host):
        raise SystemExit(
            f"refusing to serve the dashboards on {host}: they have no login. "
            "Bind 127.0.0.1 and publish them through an authenticating proxy."
        )


def serve(engine: LakeEngine, host: str, port: int) -> None:
    """Serve the dashboards on ``host`` (loopback only: they have no login)."""
    check_bind(host)
    create_app(engine).run(host=host, port=port, debug=False)
