"""The `lakehouse` command: run the platform end to end, simulate the shop, open the Dagster UI."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lakehouse_assets.runtime import child_env, disable_telemetry, ensure_dirs, is_loopback, run_child
from lakehouse_assets.settings import LakehouseSettings, get_settings

console = Console()


def _settings(**simulator_overrides: Any) -> LakehouseSettings:
    disable_telemetry()
    try:
        settings = get_settings()
    except ValidationError as error:  # a bad LAKEHOUSE_* variable: name it, no traceback
        problems = "; ".join(
            f"LAKEHOUSE_{'__'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in error.errors()
        )
        raise click.ClickException(f"invalid settings: {problems}") from error
    overrides = {k: v for k, v in simulator_overrides.items() if v is not None}
    if overrides:
        settings = settings.model_copy(update={"simulator": settings.simulator.model_copy(update=overrides)})
    ensure_dirs(settings)
    return settings


def run_simulation(settings: LakehouseSettings, days: int | None = None):
    """Simulate more days of shop activity with a progress bar (mirrored to PostgreSQL when it is the
    source)."""
    from lakehouse_assets.sources.simulator import ShopSimulator

    simulator = ShopSimulator(settings.source_db, settings.landing, settings.simulator)
    total = days or settings.simulator.days
    with Progress(
        TextColumn("[bold]simulating shop"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days  {task.fields[events]:,} change events"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("simulate", total=total, events=0)
        summary = simulator.run(
            days, progress=lambda done, _, s: progress.update(task, completed=done, events=s.change_events)
        )
    console.print(
        f"simulated {summary.days} day(s) {summary.first_day} .. {summary.last_day}: "
        f"{summary.change_events:,} change events, {len(summary.landing_files)} landing file(s) "
        f"-> {settings.source_db}"
    )
    if settings.source_url is not None:
        from lakehouse_assets.sources.cdc import ChangeLog
        from lakehouse_assets.sources.postgres import PostgresSource, redact

        url = settings.source_url.get_secret_value()
        with Progress(
            TextColumn("[bold]writing to PostgreSQL"), BarColumn(), MofNCompleteColumn(), console=console
        ) as progress:
            task = progress.add_task("mirror", total=None)
            written = PostgresSource(url).mirror(
                ChangeLog(settings.source_db),
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        console.print(f"{written:,} changes written to {redact(url)}")
    return summary


def materialize_all(settings: LakehouseSettings, groups: tuple[str, ...] = ()) -> bool:
    """Materialize every asset (only those of ``groups`` when given) and run their checks into
    the Dagster instance under the home folder, so the runs show up in `lakehouse ui`. Returns
    whether everything succeeded."""
    from dagster import AssetSelection, DagsterInstance, execute_job, reconstructable

    from lakehouse_assets.definitions import all_assets_job, build_definitions

    instance = DagsterInstance.from_config(str(settings.dagster_home))
    definitions = build_definitions()
    selection = None
    if groups:
        selection = list(AssetSelection.groups(*groups).resolve(definitions.resolve_asset_graph()))
    console.print(
        f"[bold]materializing {'the ' + ', '.join(groups) + ' assets' if groups else 'every asset'}"
        f"[/bold] into {settings.lake_root}"
    )
    # In this process, step after step, but as a job Dagster can rebuild by name: a notebook
    # asset (dagstermill) rebuilds it in the notebook's kernel.
    with execute_job(
        reconstructable(all_assets_job),
        instance=instance,
        raise_on_error=False,
        run_config={
            "execution": {"config": {"in_process": {}}},
            "loggers": {"console": {"config": {"log_level": "INFO"}}},
        },
        asset_selection=selection,
    ) as result:
        return report_run(result)


def report_run(result: Any) -> bool:
    """Print the run's materializations and check results; returns whether it succeeded (a
    kept challenger, a monitoring signal or a warning is not a failure)."""
    from dagster import AssetCheckSeverity, DagsterEventType

    from lakehouse_assets.components import PROMOTION_GATE
    from lakehouse_assets.monitoring.assets import MONITORING_CHECKS

    table = Table("asset", "rows", "delta version", "this run", title="assets")
    for event in result.all_events:
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            mat = event.event_specific_data.materialization  # type: ignore[union-attr]
            meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
            run_rows = next(
                (
                    meta[k]
                    for k in ("changes_captured", "rows_landed", "events_read", "rows_quarantined")
                    if k in meta
                ),
                "",
            )
            rows = meta.get("dagster/row_count")
            table.add_row(
                mat.asset_key.to_user_string(),
                "" if rows is None else f"{rows:,}",
                str(meta.get("delta_version", "")),
                f"{run_rows:,}" if run_rows != "" else "",
            )
    console.print(table)
    checks = Table("check", "result", title="asset checks")
    failed = 0
    for event in result.all_events:
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"  # type: ignore[union-attr]
            if evaluation.passed:  # type: ignore[union-attr]
                checks.add_row(name, "[green]passed[/green]")
            elif evaluation.check_name == PROMOTION_GATE:  # type: ignore[union-attr]
                # A decision, not a fault: the challenger was not good enough and stays one.
                reason = evaluation.metadata["reason"].value  # type: ignore[union-attr]
                checks.add_row(name, f"[yellow]challenger kept[/yellow]: {reason}")
            elif evaluation.check_name in MONITORING_CHECKS:  # type: ignore[union-attr]
                # A signal for the retrain sensor and the alerts, not a broken pipeline.
                checks.add_row(name, f"[yellow]monitoring signal[/yellow]: {evaluation.description}")  # type: ignore[union-attr]
            elif evaluation.severity == AssetCheckSeverity.WARN:  # type: ignore[union-attr]
                # A warning (a saved query's alert, a warn expectation), not a broken pipeline.
                checks.add_row(name, f"[yellow]warning[/yellow]: {evaluation.description or ''}")  # type: ignore[union-attr]
            else:
                failed += 1
                checks.add_row(name, "[red]FAILED[/red]")
    console.print(checks)
    if failed or not result.success:
        console.print(f"[red]run {result.run_id} failed ({failed} check(s) failed)[/red]")
        return False
    console.print(f"[green]run {result.run_id} succeeded[/green]; open it with `lakehouse ui`")
    return True


@click.group()
def main() -> None:
    """An open ML lakehouse on Dagster. State lives in LAKEHOUSE_HOME (default ~/.lakehouse)."""


@main.command()
@click.option("--days", type=click.IntRange(min=1), default=None, help="days to simulate (default: settings)")
@click.option(
    "--requests",
    type=click.IntRange(min=0),
    default=300,
    show_default=True,
    help="checkout requests to score after the pipeline (0: none)",
)
def demo(days: int | None, requests: int) -> None:
    """Run the platform end to end: simulate the shop, materialize every asset, send the newest
    orders through the scoring service as checkout traffic, then monitor it and refresh the
    saved queries (what `lakehouse dashboards` shows)."""
    from lakehouse_assets.serving.traffic import checkout_requests, replay

    settings = _settings()
    console.print(f"lakehouse home: {settings.home_dir}")
    run_simulation(settings, days)
    if not materialize_all(settings):
        sys.exit(1)
    if requests:
        with console.status(f"scoring {requests} checkout requests"):
            statuses = replay(settings, checkout_requests(settings.source_db, last=requests))
        console.print(
            f"checkout traffic: {statuses.get(200, 0)} scored, "
            f"{sum(statuses.values()) - statuses.get(200, 0)} refused ({statuses})"
        )
        if not materialize_all(settings, groups=("monitoring", "queries")):
            sys.exit(1)


@main.command()
@click.option("--days", type=click.IntRange(min=1), default=None, help="days to simulate (default: settings)")
@click.option("--seed", type=int, default=None)
@click.option("--scale", type=float, default=None, help="multiplies customers and orders")
@click.option(
    "--live", is_flag=True, help="write shop activity in real time instead (for `lakehouse stream`)"
)
@click.option(
    "--rate", type=click.FloatRange(min=0.1), default=100.0, show_default=True, help="--live: changes/s"
)
@click.option(
    "--seconds", type=click.FloatRange(min=0.1), default=60.0, show_default=True, help="--live: how long"
)
def simulate(
    days: int | None, seed: int | None, scale: float | None, live: bool, rate: float, seconds: float
) -> None:
    """Simulate more days of shop activity (continues where the last run stopped), or with
    --live write new orders and shipments at wall-clock time, --rate changes a second."""
    settings = _settings(seed=seed, scale=scale)
    if not live:
        run_simulation(settings, days)
        return
    from lakehouse_assets.sources.simulator import ShopSimulator

    simulator = ShopSimulator(settings.source_db, settings.landing, settings.simulator)
    with Progress(
        TextColumn("[bold]live shop"),
        BarColumn(),
        TextColumn("{task.fields[changes]:,} changes"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("live", total=seconds, changes=0)
        try:
            written = simulator.live(
                rate, seconds, progress=lambda n, t: progress.update(task, completed=t, changes=n)
            )
        except ValueError as error:
            raise click.ClickException(str(error)) from error
    console.print(f"wrote {written:,} changes in {seconds:g} s -> {settings.source_db}")


@main.command()
@click.option(
    "--seconds",
    type=click.FloatRange(min=0),
    default=None,
    help="stop after this long (default: run until SIGTERM)",
)
@click.option("--once", is_flag=True, help="one micro-batch, then exit")
def stream(seconds: float | None, once: bool) -> None:
    """Follow the source continuously: its changes to bronze and silver in micro-batches, and
    the customers' real-time features to the online store, exactly once (kill it at any point:
    a restart resumes from the committed cursors). SIGTERM or Ctrl-C stops it after the
    micro-batch in progress. Each batch's lag is appended to monitoring/stream_lag."""
    from dagster import DagsterInstance

    from lakehouse_assets.resources.connections import embedded_engine
    from lakehouse_assets.runtime import ensure_dirs
    from lakehouse_assets.sources.cdc import ChangeLog
    from lakehouse_assets.sources.postgres import PostgresSource
    from lakehouse_assets.streaming.observe import DagsterReporter, StreamMetrics
    from lakehouse_assets.streaming.runner import StreamRunner, Tick, postgres_capture, stopping_on_signals

    settings = _settings()
    ensure_dirs(settings)
    config = settings.stream
    source = (
        postgres_capture(PostgresSource(settings.source_url.get_secret_value()))
        if settings.source_url is not None
        else ChangeLog(settings.source_db)
    )
    engine = embedded_engine(settings)  # capture and features: a few rows per batch, no JVM
    features = None
    if config.features:
        from lakehouse_assets.features.store import feature_store
        from lakehouse_assets.streaming.features import RealtimeFeatures, online_push

        features = RealtimeFeatures(engine, online_push(*feature_store(settings)))
    spark_silver = None
    if settings.engine == "spark":  # silver by Structured Streaming queries, in the background
        from lakehouse_assets.resources.connections import lake_engine
        from lakehouse_assets.silver.specs import SILVER_SPECS
        from lakehouse_assets.streaming.spark import SparkSilverStream

        spark_silver = SparkSilverStream(
            lake_engine(settings),  # type: ignore[arg-type]
            SILVER_SPECS,
            str(settings.home_dir / "stream_checkpoints"),
        )
        if not once:
            spark_silver.start(interval_seconds=config.interval_seconds)
        console.print("silver: Spark Structured Streaming queries (lag below: source -> bronze)")
    runner = StreamRunner(
        engine,
        source,
        max_batch_rows=config.max_batch_rows,
        compact_every_ticks=config.compact_every_batches,
        features=features,
        apply_silver=spark_silver is None,
    )
    deadline = None if seconds is None else time.monotonic() + seconds
    instance = DagsterInstance.from_config(str(settings.dagster_home))  # what `lakehouse ui` shows
    metrics = StreamMetrics()
    if config.metrics_port:
        metrics.serve(config.metrics_host, config.metrics_port)

    dagster = DagsterReporter(instance, runner)

    def report(tick: Tick) -> None:
        metrics.observe(tick)
        dagster.observe(tick)
        if tick.changes:
            row = tick.lag_row()
            worst = max(float(row["lag_p99_seconds"] or 0.0), float(row["online_lag_p99_seconds"] or 0.0))  # type: ignore[arg-type]
            late = worst > config.lag_objective_seconds
            online = (
                f"; online {tick.feature_rows:,} customers, lag p99 {row['online_lag_p99_seconds']:.2f}s"
                if row["online_lag_p99_seconds"] is not None
                else ""
            )
            moved = "bronze" if spark_silver else f"silver {sum(tick.applied.values()):,} events"
            console.print(
                f"{tick.batch_id}: {tick.changes:,} changes -> {moved} in {tick.seconds:.2f}s; "
                f"lag p50 {row['lag_p50_seconds']:.2f}s p99 {row['lag_p99_seconds']:.2f}s{online}"
                + (f" [red](objective {config.lag_objective_seconds:g}s)[/red]" if late else "")
            )

    with stopping_on_signals(runner):
        ticks = runner.run(
            config.interval_seconds,
            until=lambda: (
                once and runner.ticks >= 1 or (deadline is not None and time.monotonic() > deadline)
            ),
            on_tick=report,
        )
        if spark_silver is not None and once:  # what the batch captured, then stop
            spark_silver.start()
            spark_silver.wait()
        elif spark_silver is not None:
            spark_silver.stop()
        dagster.flush()
    console.print(f"stream stopped after {ticks} micro-batch(es); every batch is committed")


@main.command()
@click.option(
    "--used-by",
    "used_by",
    metavar="FEATURE",
    default=None,
    help="list the model versions trained with FEATURE (a model input, `view:feature` or a view)",
)
def features(used_by: str | None) -> None:
    """List feature views, their features, types, owners, descriptions and freshness."""
    from lakehouse_assets.features.pipeline import describe
    from lakehouse_assets.features.store import feature_store

    if used_by is not None:
        _versions_using(used_by)
        return
    store, _ = feature_store(_settings())
    catalog = describe(store)
    if not catalog["feature_views"]:
        console.print("no feature views registered yet: run `lakehouse demo` first")
        return
    table = Table("feature view", "feature", "type", "owner", "materialized until", title="features")
    for name, view in catalog["feature_views"].items():
        for feature, dtype in view["features"].items():
            table.add_row(
                name,
                feature,
                dtype,
                view.get("owner") or "",
                "on demand" if view.get("on_demand") else str(view.get("materialized_until") or "never"),
            )
    console.print(table)
    for name, view in catalog["feature_views"].items():
        console.print(f"[bold]{name}[/bold]: {view.get('description', '')}")
    for name, service in catalog["feature_services"].items():
        console.print(
            f"[bold]service {name}[/bold] ({', '.join(service['views'])}): {service['description']}"
        )


@main.command()
@click.option("--host", default=None, help="bind address (default: settings, 127.0.0.1)")
@click.option("--port", type=int, default=None)
def ui(host: str | None, port: int | None) -> None:
    """Start the Dagster UI and daemon over the same home folder (loopback only: the UI has no
    login and launches runs)."""
    settings = _settings()
    if not is_loopback(host or settings.ui_host):
        raise click.ClickException(
            f"refusing to serve the Dagster UI on {host or settings.ui_host}"
            ": it has no login. Bind 127.0.0.1 and put an authenticating "
            "proxy in front (deploy/ does)."
        )
    # The same code location as workspace.yaml, usable from any folder (not only the repo).
    workspace = settings.dagster_home / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n      module_name: lakehouse_assets.definitions\n"
        "      location_name: lakehouse\n"
    )
    command = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-w",
        str(workspace),
        "-h",
        host or settings.ui_host,
        "-p",
        str(port or settings.ui_port),
    ]
    console.print(
        f"Dagster UI on http://{host or settings.ui_host}:{port or settings.ui_port} "
        f"(DAGSTER_HOME={settings.dagster_home})"
    )
    sys.exit(run_child(command, child_env(settings)))


@main.command()
@click.option("--host", default=None, help="bind address (default: settings, 127.0.0.1)")
@click.option("--port", type=int, default=None, help="default: settings (8000)")
def serve(host: str | None, port: int | None) -> None:
    """Start the scoring API: the champion model with online feature lookup."""
    from lakehouse_assets.serving.server import serve as run_server

    settings = _settings()
    console.print(
        f"scoring API on http://{host or settings.serving.host}:"
        f"{port or settings.serving.port} (docs at /docs)"
    )
    run_server(settings, host, port)


@main.command(name="mlflow")
@click.option("--port", type=int, default=None, help="default: settings (5000)")
def mlflow_ui(port: int | None) -> None:
    """Start the MLflow UI on 127.0.0.1 over the platform's tracking store and registry."""
    settings = _settings()
    if not settings.tracking_uri.startswith("sqlite:"):
        console.print(f"MLflow runs as a server here: open {settings.tracking_uri}")
        return
    (settings.mlflow_dir / "artifacts").mkdir(parents=True, exist_ok=True)
    port = port or settings.mlflow_ui_port
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        settings.tracking_uri,
        "--registry-store-uri",
        settings.registry_uri,
        "--workers",
        "1",
        "--artifacts-destination",
        str(settings.mlflow_dir / "artifacts"),
    ]
    console.print(f"MLflow UI on http://127.0.0.1:{port} (store {settings.tracking_uri})")
    # MLflow's job runner (GenAI jobs, unused here) would start eight worker processes.
    env = {**child_env(settings), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    # the server replaces this process: signals reach it
    os.execve(sys.executable, command, env)  # noqa: S606 (an argument list, no shell)


@main.group()
def postgres() -> None:
    """A local PostgreSQL for the shop (data under $LAKEHOUSE_HOME/postgres, 127.0.0.1,
    wal_level=logical): `lakehouse postgres start`, then set LAKEHOUSE_SOURCE_URL."""


@postgres.command(name="start")
@click.option("--port", type=int, default=None, help="default: settings (5433)")
def postgres_start(port: int | None) -> None:
    """Start the local server (created on first use) with a `shop` database."""
    import psycopg

    from lakehouse_assets.sources import pg_server

    settings = _settings()
    port = port or settings.postgres_port
    admin = pg_server.start(settings.home_dir / "postgres", port)
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'shop'").fetchone() is None:
            conn.execute("CREATE DATABASE shop")
    url = admin.rsplit("/", 1)[0] + "/shop"
    console.print(
        f"PostgreSQL on 127.0.0.1:{port} (wal_level=logical); use it as the source:\n"
        f"  export LAKEHOUSE_SOURCE_URL={url}"
    )


@postgres.command(name="stop")
def postgres_stop() -> None:
    """Stop the local server."""
    from lakehouse_assets.sources import pg_server

    pg_server.stop(_settings().home_dir / "postgres")
    console.print("PostgreSQL stopped")


@main.command(name="spark-cluster", context_settings={"ignore_unknown_options": True})
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--cores", type=click.IntRange(min=1), default=2, show_default=True, help="per worker")
@click.option("--memory", default="2g", show_default=True, help="per worker (512m, 2g, ...)")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def spark_cluster(workers: int, cores: int, memory: str, command: tuple[str, ...]) -> None:
    """Run COMMAND on the Spark engine against a standalone cluster on 127.0.0.1 (a master and
    WORKERS workers, from the installed PySpark), then stop the cluster, also when COMMAND
    fails: `lakehouse spark-cluster -- lakehouse demo`."""
    from lakehouse_assets.resources.spark_cluster import StandaloneCluster

    settings = _settings()
    ensure_dirs(settings)
    folder = settings.home_dir / "spark-cluster"
    cluster = StandaloneCluster(folder, workers=workers, cores=cores, memory=memory)
    with cluster as master:
        console.print(f"Spark standalone cluster {master}: {workers} worker(s), logs in {folder}")
        env = {
            **child_env(settings),
            "LAKEHOUSE_ENGINE": "spark",
            "LAKEHOUSE_SPARK_MASTER": master,
            "LAKEHOUSE_SPARK_CONF": json.dumps({**cluster.app_conf(), **settings.spark_conf}),
        }
        code = run_child(command, env)
    console.print(f"cluster stopped; {' '.join(command)} exited with {code}")
    sys.exit(code)


@main.command(name="monitor-ui")
@click.option("--port", type=int, default=None, help="default: settings (8050)")
def monitor_ui(port: int | None) -> None:
    """Start the Evidently UI on 127.0.0.1 over the monitoring workspace (drift and quality
    snapshots of every monitoring run)."""
    settings = _settings()
    workspace = settings.home_dir / "monitoring" / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    port = port or settings.monitoring.ui_port
    executable = str(Path(sys.executable).parent / "evidently")
    console.print(f"Evidently UI on http://127.0.0.1:{port} (workspace {workspace})")
    command = [executable, "ui", "--host", "127.0.0.1", "--port", str(port), "--workspace", str(workspace)]
    os.execve(executable, command, child_env(settings))  # noqa: S606 (an argument list, no shell)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="loopback only: no login")
@click.option("--port", type=int, default=None, help="default: settings (8060)")
def dashboards(host: str, port: int | None) -> None:
    """Serve the business, data and ML dashboards (Dash), refreshed from the lake on every load."""
    from lakehouse_assets.dashboards.app import serve as serve_dashboards
    from lakehouse_assets.resources.connections import embedded_engine

    settings = _settings()
    port = port or settings.dashboards_port
    console.print(f"dashboards on http://{host}:{port} over {settings.lake_root}")
    serve_dashboards(embedded_engine(settings), host, port)


def _call_service(
    settings: LakehouseSettings, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """A call to the running scoring service (monitoring.serving_url, the serving token);
    None when it is not reachable."""
    import httpx

    token = settings.serving.token
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
    try:
        response = httpx.request(
            method, f"{settings.monitoring.serving_url}{path}", json=body, headers=headers, timeout=30
        )
    except httpx.TransportError:
        return None
    if response.status_code >= 400:
        detail = (
            response.json().get("detail", response.text)
            if response.headers.get("content-type", "").startswith("application/json")
            else response.text
        )
        raise click.ClickException(f"{method} {path}: {response.status_code} {detail}")
    return response.json()


@main.command()
@click.argument("mode", type=click.Choice(["champion", "shadow", "canary"]))
@click.option(
    "--share",
    type=click.FloatRange(0, 1),
    default=None,
    help="canary: share of entities (e.g. customers) the challenger answers (sticky per entity)",
)
@click.option("--product", "product_name", default=None, help="data product (default: the online one)")
def rollout(mode: str, share: float | None, product_name: str | None) -> None:
    """Set how a product's challenger takes part in the running service: champion (not at
    all), shadow (scores every request, the champion answers) or canary (answers --share of
    entities). No restart; the service's LAKEHOUSE_SERVING__ROLLOUT is where it starts."""
    settings = _settings()
    if mode == "canary" and share is None:
        raise click.UsageError("canary needs --share (e.g. --share 0.1)")
    name = _product(settings, product_name).name
    state = _call_service(
        settings, "PUT", f"/v1/models/{name}/rollout", {"mode": mode, "canary_share": share or 0.0}
    )
    if state is None:
        raise click.ClickException(
            f"the scoring service at {settings.monitoring.serving_url} is "
            "not reachable (LAKEHOUSE_MONITORING__SERVING_URL)"
        )
    console.print(
        f"rollout {state['mode']} (canary share {state['canary_share']}): champion "
        f"v{state['champion_version']}, challenger v{state['challenger_version']}"
    )
    if state["challenger_version"] is None and mode != "champion":
        console.print("[yellow]no challenger is loaded: the champion answers everything[/yellow]")


@main.command(name="rollback")
@click.option(
    "--to",
    "to_version",
    type=click.IntRange(min=1),
    default=None,
    help="the version to serve (default: the previous champion)",
)
@click.option(
    "--reason",
    default="manual rollback",
    show_default=True,
    help="recorded in the alias history and on the replaced version",
)
@click.option("--product", "product_name", default=None, help="data product (default: the online one)")
def rollback_command(to_version: int | None, reason: str, product_name: str | None) -> None:
    """Move the champion alias back to the previous champion (recorded in ml/alias_history, the
    replaced version tagged rolled_back) and have the running service load it now."""
    import getpass

    from lakehouse_assets.registry.promotion import RollbackError, UntrustedModelError, rollback
    from lakehouse_assets.resources.connections import embedded_engine, mlflow_connection

    settings = _settings()
    model_name = _product(settings, product_name).spec.model_name
    registry = mlflow_connection(settings)
    registry.activate(model_name)
    try:
        old, new = rollback(
            registry.client(),
            embedded_engine(settings),
            model_name,
            f"lakehouse rollback ({getpass.getuser()})",
            reason,
            to_version,
        )
    except (RollbackError, UntrustedModelError) as error:
        raise click.ClickException(str(error)) from error
    console.print(f"{model_name}: champion version {old} -> {new} ({reason})")
    reloaded = _call_service(settings, "POST", f"/v1/models/{model_name}/reload")
    if reloaded is None:
        console.print(
            f"the scoring service at {settings.monitoring.serving_url} is not reachable;"
            f" a running one follows within {settings.serving.reload_seconds:g} s"
        )
    else:
        console.print(f"the scoring service now serves version {reloaded['model_version']}")


@main.group(invoke_without_command=True)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="bind address; another than loopback needs LAKEHOUSE_NOTEBOOK_TOKEN",
)
@click.option("--port", type=int, default=None, help="default: settings (8888)")
@click.pass_context
def notebook(ctx: click.Context, host: str, port: int | None) -> None:
    """JupyterLab over the home folder with the example notebooks, on the project's Python
    (token login). `lakehouse notebook run` executes notebooks headless."""
    import secrets

    from lakehouse_assets.notebooks.jupyter import (
        NotebookError,
        check_kernel,
        copy_examples,
        lab_command,
    )

    if ctx.invoked_subcommand is not None:
        return
    settings = _settings()
    if not is_loopback(host) and settings.notebook_token is None:
        raise click.ClickException(
            f"refusing to serve JupyterLab on {host} without LAKEHOUSE_NOTEBOOK_TOKEN: a notebook "
            "runs any code as you. Set a long random token, or bind 127.0.0.1."
        )
    try:
        check_kernel()
    except NotebookError as error:
        raise click.ClickException(str(error)) from error
    ensure_dirs(settings)
    copied, kept = copy_examples(settings.home_dir)
    for path in kept:
        console.print(
            f"[yellow]kept your edited {path.name}[/yellow] (the shipped version: "
            f"lakehouse_assets/notebooks/examples/{path.name})"
        )
    token = (
        settings.notebook_token.get_secret_value() if settings.notebook_token else secrets.token_urlsafe(24)
    )
    port = port or settings.notebook_port
    console.print(
        f"JupyterLab over {settings.home_dir} ({len(copied) + len(kept)} example notebooks "
        f"in notebooks/examples):\n  http://{host}:{port}/lab/tree/notebooks/examples"
        f"?token={token}"
    )
    sys.exit(
        run_child(lab_command(settings.home_dir, host, port), {**child_env(settings), "JUPYTER_TOKEN": token})
    )


@notebook.command(name="run")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="where the executed notebooks go (default: <home>/notebooks/executed)",
)
@click.option(
    "--timeout", type=click.IntRange(min=1), default=900, show_default=True, help="seconds one cell may run"
)
def notebook_run(paths: tuple[Path, ...], output: Path | None, timeout: int) -> None:
    """Execute notebooks (default: every example) against the home's lake, as CI does; the
    executed copies keep their outputs. Fails on the first cell that raises."""
    from lakehouse_assets.notebooks.jupyter import NotebookError, examples, run_notebook

    settings = _settings()
    output = output or settings.home_dir / "notebooks" / "executed"
    notebooks = list(paths) or examples()
    for number, path in enumerate(notebooks, 1):
        step = f"[{number}/{len(notebooks)}]"
        with console.status(f"{step} {path.name}") as status:

            def progress(text: str, step: str = step, status: Any = status) -> None:
                status.update(f"{step} {text}")

            try:
                run = run_notebook(
                    path,
                    env=child_env(settings),
                    output=output / path.name,
                    timeout=timeout,
                    progress=progress,
                )
            except NotebookError as error:
                raise click.ClickException(str(error)) from error
        console.print(
            f"[{number}/{len(notebooks)}] {path.name}: {run.cells} cells in "
            f"{run.seconds:.1f} s -> {run.output}"
        )


@notebook.command(name="strip")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def notebook_strip(paths: tuple[Path, ...]) -> None:
    """Remove outputs and execution counts (default: the shipped examples), the form notebooks
    are committed in."""
    from lakehouse_assets.notebooks.jupyter import examples, strip_outputs

    for path in list(paths) or examples():
        console.print(f"{path}: {'stripped' if strip_outputs(path) else 'already clean'}")


@main.command()
@click.argument("name")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="a query parameter (repeatable)")
@click.option("--limit", type=int, default=50, show_default=True, help="rows to print")
def query(name: str, params: tuple[str, ...], limit: int) -> None:
    """Run a saved query (queries/sql/NAME.sql) over the current lake and print the result."""
    from lakehouse_assets.queries.saved import (
        QueryError,
        load_saved_queries,
        run_saved_query,
    )
    from lakehouse_assets.resources.connections import embedded_engine

    settings = _settings()
    queries = {q.name: q for q in load_saved_queries()}
    if name not in queries:
        raise click.UsageError(f"no saved query {name!r}; saved queries: {', '.join(sorted(queries))}")
    given = dict(p.split("=", 1) for p in params if "=" in p)
    if len(given) != len(params):
        raise click.UsageError("--param takes NAME=VALUE")
    saved = queries[name]
    try:
        result = run_saved_query(embedded_engine(settings), saved, given)
    except QueryError as error:
        raise click.ClickException(str(error)) from error
    table = Table(*result.columns, title=f"{name}: {result.height:,} row(s)")
    for row in result.head(limit).iter_rows():
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


@main.command()
@click.argument("table", required=False)
@click.option("--json", "as_json", is_flag=True, help="the whole catalog as JSON")
def catalog(table: str | None, as_json: bool) -> None:
    """List every Delta table: layer, owner, description, columns (PII tagged), version, rows,
    last update and the assets upstream and downstream. With TABLE: that table's columns."""
    import json

    from lakehouse_assets.definitions import build_definitions
    from lakehouse_assets.governance.catalog import build_catalog
    from lakehouse_assets.resources.connections import embedded_engine

    settings = _settings()
    entries = build_catalog(build_definitions(settings).resolve_all_asset_specs(), embedded_engine(settings))
    if table:
        entries = [e for e in entries if e.table == table]
        if not entries:
            raise click.UsageError(f"no table {table!r} in the catalog: run `lakehouse catalog`")
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    listing = Table(
        "table",
        "layer",
        "owner",
        "version",
        "rows",
        "last update (UTC)",
        "PII columns",
        "upstream",
        "downstream",
        title="lakehouse catalog",
    )
    for e in entries:
        listing.add_row(
            e.table,
            e.layer,
            ", ".join(e.owners),
            "-" if e.delta_version is None else str(e.delta_version),
            "-" if e.rows is None else f"{e.rows:,}",
            e.last_update.strftime("%Y-%m-%d %H:%M") if e.last_update else "not yet",
            ", ".join(e.pii_columns),
            ", ".join(e.upstream),
            ", ".join(e.downstream),
        )
    console.print(listing)
    for e in entries:
        console.print(f"[bold]{e.table}[/bold] ({', '.join(e.assets) or 'no asset'}): {e.description}")
        if table:
            columns = Table("column", "type", "PII", "description")
            for c in e.columns:
                columns.add_row(c.name, c.type, "PII" if c.pii else "", c.description)
            console.print(columns)


@main.command()
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help="everything, rows included, as JSON")
def lineage(request_id: str, as_json: bool) -> None:
    """Trace one prediction back to its sources: model version, training run and set (Delta
    versions), feature views, the gold feature rows served, and the silver rows and bronze
    change events behind them."""
    import json

    from lakehouse_assets.features.definitions import build_definitions as feature_definitions
    from lakehouse_assets.governance.lineage import LineageError, prediction_lineage
    from lakehouse_assets.resources.connections import embedded_engine, mlflow_connection

    settings = _settings()
    served = _product(settings, None)
    services = {o.name: o for o in feature_definitions(settings.lake_root).all()}
    registry = mlflow_connection(settings)
    registry.use()
    try:
        traced = prediction_lineage(
            embedded_engine(settings),
            registry.client(),
            services[served.spec.features.service or ""],
            request_id,
        )
    except LineageError as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        click.echo(json.dumps(traced.to_dict(), indent=2, default=str))
        return
    console.print(
        f"[bold]prediction {traced.request_id}[/bold] at {traced.served_at}: "
        f"prediction {traced.prediction:.4f} for customer {traced.customer_id}"
        f", order {traced.order_id}, products {traced.product_ids}"
    )
    console.print(
        f"[bold]model[/bold] {traced.model_name} v{traced.model_version}, MLflow run "
        f"{traced.model_run_id} ({traced.model_run_name})"
    )
    ts = traced.training_set
    console.print(
        f"[bold]training set[/bold] {ts.get('table')} @ Delta v{ts.get('delta_version')}"
        f" ({ts.get('rows')} rows), built from {ts.get('source_delta_versions')}"
    )
    console.print(
        f"[bold]feature service[/bold] {traced.feature_service}: "
        + "; ".join(f"{v} ({', '.join(f)})" for v, f in traced.feature_views.items())
    )
    for title, frames in (
        ("gold feature rows served", traced.feature_rows),
        ("silver source rows", traced.source_rows),
        ("bronze change events", traced.change_events),
    ):
        console.print(f"[bold]{title}[/bold]")
        for table, frame in frames.items():
            console.print(f"  {table}: {frame.height} row(s)")
            if frame.height:
                console.print(frame.head(20))


def _product(settings: LakehouseSettings, name: str | None) -> Any:
    """A declared product by name, or the online one; a bad declaration is a clean error."""
    from lakehouse_assets.product_declarations import DeclarationError, default_product, load_products

    try:
        products = load_products(settings)
        found = (
            {p.name: p for p in products}.get(name)
            if name
            else default_product(products, settings.serving.default_product)
        )
    except DeclarationError as error:
        raise click.ClickException(str(error)) from error
    if found is None:
        raise click.ClickException(
            f"no data product {name!r} (declared: {', '.join(p.name for p in products)})"
            if name
            else "no data product is served online: name one with --product"
        )
    return found


def _versions_using(feature: str) -> None:
    """Print every registered version (of every product) whose feature specification names
    ``feature``."""
    import json

    from lakehouse_assets.resources.connections import mlflow_connection

    settings = _settings()
    client = mlflow_connection(settings).client()
    table = Table(
        "model", "version", "aliases", "lifecycle", "matched", title=f"model versions using {feature}"
    )
    found = 0
    for model in client.search_registered_models():
        for version in client.search_model_versions(f"name = '{model.name}'"):
            spec = json.loads(version.tags.get("feature_spec", "{}"))
            names = [*spec.get("inputs", []), *spec.get("row_features", []), *spec.get("line_features", [])]
            names += version.tags.get("features", "").split(", ")
            matched = sorted({n for n in names if n and (n == feature or n.split(":")[0] == feature)})
            if matched:
                found += 1
                table.add_row(
                    model.name,
                    str(version.version),
                    ", ".join(version.aliases or []),
                    version.tags.get("lifecycle", ""),
                    ", ".join(matched),
                )
    if not found:
        console.print(f"no registered model version uses {feature}")
        return
    console.print(table)


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="the list as JSON")
@click.pass_context
def products(ctx: click.Context, as_json: bool) -> None:
    """The declared data products with their champion, last training, serving mode and
    monitoring state (`lakehouse products new NAME` starts a declaration)."""
    if ctx.invoked_subcommand is not None:
        return
    from dataclasses import asdict

    from lakehouse_assets.monitoring.results import product_monitors, product_status
    from lakehouse_assets.product_declarations import DeclarationError, default_product, load_products
    from lakehouse_assets.resources.connections import embedded_engine, mlflow_connection

    settings = _settings()
    try:
        declared = load_products(settings)
    except DeclarationError as error:
        raise click.ClickException(str(error)) from error
    client = mlflow_connection(settings).client()
    engine = embedded_engine(settings)
    default = default_product(declared, settings.serving.default_product)
    statuses = {p.name: product_status(client, engine, p, product_monitors(p, default)) for p in declared}
    if as_json:
        import json

        rows = [
            {
                "product": p.name,
                "task": p.spec.task,
                **asdict(statuses[p.name]),
                "serving": p.spec.serving.mode,
                "declaration": p.path,
            }
            for p in declared
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(
        "product",
        "task",
        "champion",
        "challenger",
        "last trained",
        "serving",
        "monitoring",
        title="data products",
    )
    for product in declared:
        status = statuses[product.name]
        table.add_row(
            product.name,
            product.spec.task,
            status.champion or "-",
            status.challenger or "-",
            status.last_trained or "never",
            product.spec.serving.mode,
            status.monitoring,
        )
    console.print(table)


@products.command(name="new")
@click.argument("name")
@click.option(
    "--folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="where the product folder goes (default: the first products_dirs, else lakehouse_assets/products)",
)
@click.option(
    "--task", type=click.Choice(["binary_classification", "regression"]), default="binary_classification"
)
def products_new(name: str, folder: Path | None, task: str) -> None:
    """Write the skeleton of a new product's declaration (<folder>/NAME/defs.yaml) to edit."""
    from lakehouse_assets.product_declarations import BUILT_IN, DeclarationError, skeleton

    settings = _settings()
    folder = folder or (settings.products_dirs[0] if settings.products_dirs else BUILT_IN)
    path = Path(folder).expanduser() / name / "defs.yaml"
    if path.exists():
        raise click.ClickException(f"{path} exists already")
    try:
        text = skeleton(name, task)
    except DeclarationError as error:
        raise click.ClickException(str(error)) from error
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    console.print(f"wrote {path}: edit the label, features and candidates, then `lakehouse products`")


if __name__ == "__main__":
    main()
