"""Crash injection: run one platform operation in a child process, SIGKILL it at a chosen moment,
run it again to completion, and prove nothing was lost, duplicated or left half-done.

Operations (each the same plain functions the assets call): ``capture`` (CDC into bronze, small
chunks: many commits), ``ingest`` (landing files), ``apply`` (silver MERGEs), ``gold`` (dbt
build), ``features`` (online store + training set), ``register`` (train and register the
challenger). A trial starts from a copy of the home as it was before the operation, so the result
after kill + rerun must equal a clean run of the same operation from the same copy: every Delta
table readable right after the kill, the same rows after the rerun (none lost, none duplicated),
no file left that VACUUM does not remove, and no model version left half-registered.

    python -m tests.reliability.crash OPERATION HOME   (the child: runs it once)
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl
from deltalake import DeltaTable

from lakehouse_assets.settings import LakehouseSettings

OPERATIONS = ("capture", "ingest", "apply", "gold", "features", "register", "stream")
# operations that start from another operation's base instead of the previous one's result
STARTS_LIKE = {"stream": "capture"}  # `lakehouse stream`: source -> bronze -> silver on an empty lake
# Tables of timings, not data (a killed run may or may not have logged its last batch), and the
# streamed features, whose rows are stamped with the time they were computed: those are checked
# by their own invariants (stream_feature_problems) instead of row for row.
UNCOMPARED = {"monitoring/stream_lag", "features/customer_realtime_features"}
UNCOMPARED_ONLINE = ("customer_realtime_features",)
# Columns that differ between two correct runs (who wrote a row and when, and why in words).
VOLATILE = {"_ingested_at", "_batch_id", "_quarantined_at", "checked_at"}
VOLATILE_BY_TABLE = {"ml/alias_history": {"changed_at", "changed_by", "reason", "metrics"}}
# What each operation's child imports before it reports ready.
IMPORTS = {
    "capture": ["lakehouse_assets.sources.cdc"],
    "ingest": ["lakehouse_assets.sources.landing"],
    "apply": ["lakehouse_assets.silver.apply_changes", "lakehouse_assets.silver.specs"],
    "gold": ["lakehouse_assets.resources.dbt"],
    "features": [
        "lakehouse_assets.features.store",
        "lakehouse_assets.features.pipeline",
        "lakehouse_assets.product_declarations",
    ],
    "stream": [
        "lakehouse_assets.streaming.runner",
        "lakehouse_assets.streaming.features",
        "lakehouse_assets.features.store",
    ],
    "register": [
        "lakehouse_assets.training.challenger",
        "lakehouse_assets.resources.mlflow",
        "lakehouse_assets.product_declarations",
    ],
}
PRODUCT = "return_risk"  # the data product whose training set and model the trials build
READY = "ready"  # the child prints it once imported, so kill delays are spent on the work


def run_operation(settings: LakehouseSettings, operation: str, batch_id: str = "crash") -> None:
    """One operation on a home, start to end (what a Dagster step would do)."""
    from lakehouse_assets.engine import DeltaEngine

    engine = DeltaEngine(settings.lake_root)
    if operation == "capture":
        from lakehouse_assets.sources.cdc import ChangeLog, capture_to_bronze
        from lakehouse_assets.sources.schema import SOURCE_TABLES

        for table in SOURCE_TABLES:
            capture_to_bronze(engine, ChangeLog(settings.source_db), table, batch_id=batch_id, chunk_rows=500)
    elif operation == "ingest":
        from lakehouse_assets.sources.landing import PAYMENTS, ingest_files, list_landing_files

        files = [f.path for f in list_landing_files(settings.landing, PAYMENTS)]
        ingest_files(engine, settings.landing, PAYMENTS, files, batch_id=batch_id, flush_rows=300)
    elif operation == "apply":
        from lakehouse_assets.silver.apply_changes import apply_changes
        from lakehouse_assets.silver.specs import SILVER_SPECS

        for spec in SILVER_SPECS:
            apply_changes(engine, spec, batch_id=batch_id)
    elif operation == "gold":
        _dbt_build(settings)
    elif operation == "features":
        from lakehouse_assets.features.pipeline import (
            apply_definitions,
            build_training_set,
            materialize_online,
        )
        from lakehouse_assets.features.store import feature_store
        from lakehouse_assets.product_declarations import load_product
        from lakehouse_assets.tables import training_set_table

        store, definitions = feature_store(settings)
        apply_definitions(store, definitions)
        materialize_online(store, engine, definitions)
        product = load_product(settings, PRODUCT)
        frame, versions = build_training_set(store, engine, definitions, product)
        engine.overwrite(training_set_table(PRODUCT), frame, commit_metadata={"source_versions": versions})
    elif operation == "register":
        from lakehouse_assets.product_declarations import load_product
        from lakehouse_assets.resources.mlflow import mlflow_resource
        from lakehouse_assets.training.challenger import train_challenger

        registry = mlflow_resource(settings)
        registry.activate(PRODUCT)
        train_challenger(
            engine,
            registry.client(),
            load_product(settings, PRODUCT),
            actor="crash harness",
            log=lambda message: None,
        )
    elif operation == "stream":
        from lakehouse_assets.features.store import feature_store
        from lakehouse_assets.sources.cdc import ChangeLog
        from lakehouse_assets.streaming.features import RealtimeFeatures, online_push
        from lakehouse_assets.streaming.runner import StreamRunner

        features = RealtimeFeatures(engine, online_push(*feature_store(settings)))
        runner = StreamRunner(engine, ChangeLog(settings.source_db), max_batch_rows=300, features=features)
        while runner.tick().changes:  # micro-batches until it has caught up
            pass
    else:
        raise ValueError(f"unknown operation {operation!r}: one of {', '.join(OPERATIONS)}")


def _dbt_build(settings: LakehouseSettings) -> None:
    """`dbt build` as its own process, as dagster-dbt runs it (dbt-duckdb keeps its plugins'
    configuration, the lake root included, for the life of a process)."""
    from lakehouse_assets.resources.dbt import (
        DBT_EXECUTABLE,
        DBT_PROJECT_DIR,
        dbt_vars,
        write_dbt_profiles,
    )
    from lakehouse_assets.runtime import child_env

    profiles = write_dbt_profiles(
        settings.gold_dir / "dbt_profiles", settings.lake_root, settings.gold_dir, {}
    )
    result = subprocess.run(
        [
            DBT_EXECUTABLE,
            "build",
            "--quiet",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(profiles.parent),
            "--target",
            "local",
            "--vars",
            dbt_vars(settings.lake_root),
            "--target-path",
            str(settings.gold_dir / "dbt_target"),
        ],
        env=child_env(settings),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"dbt build failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")


# ------------------------------------------------------------------------- comparison
def lake_tables(home: Path) -> list[str]:
    from lakehouse_assets.engine import DeltaEngine

    return DeltaEngine(str(home / "lake")).tables()


def table_rows(home: Path, table: str) -> pl.DataFrame:
    return lake_rows(home / "lake", table)


def lake_rows(lake_root: Path, table: str) -> pl.DataFrame:
    """A table's current rows without the columns two correct runs write differently."""
    frame = pl.DataFrame(pl.from_arrow(DeltaTable(str(lake_root / table)).to_pyarrow_table()))
    volatile = VOLATILE | VOLATILE_BY_TABLE.get(table, set())
    return frame.drop([c for c in frame.columns if c in volatile])


def online_rows(home: Path) -> dict[str, pl.DataFrame]:
    """Every table of the SQLite online store (the values Feast serves)."""
    path = home / "feast" / "online_store.db"
    if not path.exists():
        return {}
    with closing(sqlite3.connect(path)) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {
            f"online:{n}": pl.DataFrame(
                conn.execute(f'SELECT entity_key, feature_name, value, event_ts FROM "{n}"').fetchall(),
                schema=["entity_key", "feature_name", "value", "event_ts"],
                orient="row",
            )
            for n in names
        }


def stream_feature_problems(settings: LakehouseSettings) -> list[str]:
    """The streamed features after a stream caught up: every row equals the features recomputed
    from silver at the version it names; each customer's newest row still equals them over the
    final silver (no change of the customer's orders was skipped); and the online store holds
    exactly each customer's newest row."""
    from lakehouse_assets.engine import DeltaEngine
    from lakehouse_assets.features.store import feature_store
    from lakehouse_assets.streaming.features import ORDER_COLUMNS, VIEW, customer_activity
    from lakehouse_assets.tables import REALTIME_CUSTOMER_FEATURES_TABLE, SILVER_ORDERS_TABLE

    engine = DeltaEngine(settings.lake_root)
    history = engine.read(REALTIME_CUSTOMER_FEATURES_TABLE)
    features = [c for c in history.columns if c not in ("customer_id", "feature_ts", "silver_version")]
    problems = []
    for (version, at), rows in history.group_by("silver_version", "feature_ts"):
        orders = engine.read(SILVER_ORDERS_TABLE, version=version, columns=ORDER_COLUMNS)
        if not customer_activity(orders, rows["customer_id"], at, version).equals(rows.sort("customer_id")):
            problems.append(f"rows at silver version {version} differ from silver")
    if history.select("customer_id", "feature_ts").is_duplicated().any():
        problems.append("a customer has two rows for one time")
    newest = history.sort("feature_ts").unique("customer_id", keep="last").sort("customer_id")
    final = engine.read(SILVER_ORDERS_TABLE, columns=ORDER_COLUMNS)
    if set(final["customer_id"]) - set(newest["customer_id"]):
        problems.append("customers with orders but no streamed row")
    for (at,), rows in newest.group_by("feature_ts"):
        now = customer_activity(final, rows["customer_id"], at, 0).drop("silver_version")
        if not now.equals(rows.drop("silver_version").sort("customer_id")):
            problems.append(f"newest rows of {at} miss later changes of silver")
    store, _ = feature_store(settings)
    online = store.get_online_features(
        features=[f"{VIEW}:{f}" for f in features],
        entity_rows=[{"customer_id": i} for i in newest["customer_id"]],
    ).to_dict()
    for name in features:
        if online[name] != newest[name].to_list():
            problems.append(f"online {name} is not the newest offline value")
    return problems


def multiset_difference(left: pl.DataFrame, right: pl.DataFrame) -> int:
    """Rows of ``left`` (counting repeats) that ``right`` does not have."""
    if left.height == 0:
        return 0
    columns = sorted(set(left.columns) & set(right.columns))
    if not columns or set(left.columns) != set(right.columns):
        return left.height

    def numbered(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.select(columns).with_columns(pl.int_range(pl.len()).over(columns).alias("__n"))

    return numbered(left).join(numbered(right), on=[*columns, "__n"], how="anti", nulls_equal=True).height


def unreferenced_files(home: Path, table: str) -> list[Path]:
    """Data files in the table's folder that its current version does not reference (change-data
    files aside: delta-rs VACUUM keeps them)."""
    root = home / "lake" / table
    referenced = {Path(uri.removeprefix("file://")).resolve() for uri in DeltaTable(str(root)).file_uris()}
    return [
        p
        for p in root.rglob("*.parquet")
        if "_delta_log" not in p.parts and "_change_data" not in p.parts and p.resolve() not in referenced
    ]


def registry_state(home: Path) -> dict[str, object]:
    """Versions, their registration state and the challenger alias of the registered model."""
    db = home / "mlflow" / "mlflow.db"
    if not db.exists():
        return {}
    with closing(sqlite3.connect(db)) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "model_versions" not in tables:
            return {}
        versions = conn.execute("SELECT version, status FROM model_versions").fetchall()
        tags = dict(
            ((v, k), val) for v, k, val in conn.execute("SELECT version, key, value FROM model_version_tags")
        )
        aliases = dict(conn.execute("SELECT alias, version FROM registered_model_aliases"))
    fingerprints = [tags.get((v, "fingerprint")) for v, _ in versions]
    return {
        "versions": len(versions),
        "not_ready": sum(status != "READY" for _, status in versions),
        "pending": sum(tags.get((v, "registration")) == "pending" for v, _ in versions),
        "duplicate_fingerprints": len(fingerprints) - len(set(fingerprints)),
        "challenger_fingerprint": tags.get((aliases.get("challenger"), "fingerprint")),
    }


@dataclass
class TrialResult:
    operation: str
    kill_after_s: float
    killed: bool
    tables_checked: int = 0
    rows_compared: int = 0
    rows_lost: int = 0
    rows_duplicated: int = 0
    unreadable_after_kill: list[str] = field(default_factory=list)
    orphans_removed: int = 0
    orphans_left: int = 0
    registry_problems: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not (
            self.rows_lost
            or self.rows_duplicated
            or self.unreadable_after_kill
            or self.orphans_left
            or self.registry_problems
            or self.differences
        )


def compare(trial: Path, reference: Path, result: TrialResult) -> None:
    ours_tables, their_tables = set(lake_tables(trial)), set(lake_tables(reference))
    frames = {
        t: (
            table_rows(trial, t) if t in ours_tables else pl.DataFrame(),
            table_rows(reference, t) if t in their_tables else pl.DataFrame(),
        )
        for t in sorted((ours_tables | their_tables) - UNCOMPARED)
    }
    ours, theirs = online_rows(trial), online_rows(reference)
    frames.update(
        {
            k: (ours.get(k, pl.DataFrame()), theirs.get(k, pl.DataFrame()))
            for k in set(ours) | set(theirs)
            if not k.endswith(UNCOMPARED_ONLINE)
        }
    )
    for name, (got, want) in frames.items():
        result.tables_checked += 1
        result.rows_compared += want.height
        lost, extra = multiset_difference(want, got), multiset_difference(got, want)
        result.rows_lost += lost
        result.rows_duplicated += extra
        if lost or extra:
            result.differences.append(f"{name}: {lost} lost, {extra} extra")


# ------------------------------------------------------------------------- trials
def copy_home(source: Path, target: Path) -> Path:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, symlinks=True)
    return target


def run_killed(home: Path, operation: str, kill_after_s: float) -> bool:
    """Run the operation in a child; SIGKILL it ``kill_after_s`` after it is ready. Returns
    whether it was killed (False: it finished first)."""
    child = subprocess.Popen(  # its own process group: dbt's process dies with it
        [sys.executable, "-m", "tests.reliability.crash", operation, str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        env={**os.environ, "LAKEHOUSE_HOME": str(home)},
    )
    assert child.stdout is not None
    if child.stdout.readline().strip() != READY:
        child.wait()
        raise RuntimeError(f"{operation} child failed before starting (exit {child.returncode})")
    try:
        child.wait(timeout=kill_after_s)
        if child.returncode != 0:
            raise RuntimeError(f"{operation} failed in the child (exit {child.returncode})")
        return False
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        return True


def trial(base: Path, reference: Path, workdir: Path, operation: str, kill_after_s: float) -> TrialResult:
    """Copy the base, kill the operation at ``kill_after_s``, check readability, rerun it,
    compare with the reference, vacuum, check orphans and the registry. ``workdir`` must be new
    for every trial (MLflow keeps connections to a database path for the life of the process)."""
    from lakehouse_assets.engine import DeltaEngine

    home = copy_home(base, workdir)
    result = TrialResult(operation, round(kill_after_s, 3), run_killed(home, operation, kill_after_s))
    for table in lake_tables(home):
        try:
            DeltaTable(str(home / "lake" / table)).to_pyarrow_table()
        except Exception as error:  # noqa: BLE001 - any failure to read is the finding
            result.unreadable_after_kill.append(f"{table}: {error}")
    settings = LakehouseSettings(home=home)
    run_operation(settings, operation, batch_id="rerun")
    compare(home, reference, result)
    if operation == "stream":
        result.differences += stream_feature_problems(settings)
    engine = DeltaEngine(settings.lake_root)
    for table in lake_tables(home):
        orphans = unreferenced_files(home, table)
        if orphans:
            engine.vacuum(table, 0)
            result.orphans_removed += len(orphans)
            result.orphans_left += len(unreferenced_files(home, table))
    state = registry_state(home)
    for problem in ("not_ready", "pending", "duplicate_fingerprints"):
        if state.get(problem):
            result.registry_problems.append(f"{problem}: {state[problem]}")
    if registry_state(reference).get("versions"):  # the operation registers a challenger
        from lakehouse_assets.product_declarations import load_product
        from lakehouse_assets.training.challenger import training_data
        from lakehouse_assets.training.train import fingerprint

        product = load_product(settings, PRODUCT)
        expected = fingerprint(training_data(engine, product), product)
        if state.get("challenger_fingerprint") != expected:
            result.registry_problems.append("challenger is not the version trained from this data")
    return result


def prepare_bases(
    home: Path, workdir: Path, log: Callable[[str], object] = print
) -> dict[str, tuple[Path, Path, float]]:
    """For each operation: the home before it, the home after a clean run of it (reference) and
    the clean run's duration. ``home`` holds a simulated shop (source and landing files)."""
    bases: dict[str, tuple[Path, Path, float]] = {}
    current = copy_home(home, workdir / "base-capture")
    for operation in OPERATIONS:
        start = bases[STARTS_LIKE[operation]][0] if operation in STARTS_LIKE else current
        base = start if operation == "capture" else copy_home(start, workdir / f"base-{operation}")
        reference = copy_home(base, workdir / f"reference-{operation}")
        for module in IMPORTS[operation]:  # timed like the child: after its imports
            importlib.import_module(module)
        started = time.perf_counter()
        run_operation(LakehouseSettings(home=reference), operation, batch_id="reference")
        bases[operation] = (base, reference, time.perf_counter() - started)
        log(f"{operation}: clean run {bases[operation][2]:.2f}s")
        if operation not in STARTS_LIKE:
            current = reference
    return bases


def summarize(results: list[TrialResult]) -> dict[str, int]:
    return {
        "trials": len(results),
        "faults_injected": sum(r.killed for r in results),
        "tables_checked": sum(r.tables_checked for r in results),
        "rows_compared": sum(r.rows_compared for r in results),
        "rows_lost": sum(r.rows_lost for r in results),
        "duplicates": sum(r.rows_duplicated for r in results),
        "unreadable_tables": sum(len(r.unreadable_after_kill) for r in results),
        "orphans_removed": sum(r.orphans_removed for r in results),
        "orphans_left": sum(r.orphans_left for r in results),
        "registry_problems": sum(len(r.registry_problems) for r in results),
        "failed_trials": sum(not r.passed for r in results),
    }


def write_results(path: Path, results: list[TrialResult]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"summary": summarize(results), "trials": [asdict(r) for r in results]}, indent=2)
    )


def main() -> None:
    operation, home = sys.argv[1], Path(sys.argv[2])
    settings = LakehouseSettings(home=home)
    for module in ["lakehouse_assets.engine", *IMPORTS[operation]]:
        importlib.import_module(module)
    print(READY, flush=True)
    run_operation(settings, operation, batch_id="killed")


if __name__ == "__main__":
    main()
