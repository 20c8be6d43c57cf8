"""The package's shape stays as DESIGN.md draws it: imports run downwards along the data flow,
one module owns the table names, lake storage is touched through the engine only, engines are
built in resources/ only, and the scoring service loads no Dagster, dbt or Jupyter."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "lakehouse_assets"

# Lowest first. A package may import its own modules and those of lower layers; two packages of
# one layer may not import each other (no pair imports both ways).
LAYERS = [
    {"settings", "engine", "tables", "products"},
    {"runtime", "metadata", "conflicts", "erasure_registry", "served_log"},
    {"sources"},
    {"resources"},
    {"bronze"},
    {"silver"},
    {"gold"},
    {"features"},
    {"streaming"},
    {"product_declarations"},
    {"registry"},
    {"training"},
    {"serving"},
    {"monitoring"},
    {"governance"},
    {"queries"},
    {"notebooks", "dashboards"},
    {"automation", "lake", "components"},
    {"definitions"},
    {"cli"},
]
LAYER = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "examples" not in p.parts)


def _package(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported_packages(path: Path) -> set[tuple[str, int]]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "lakehouse_assets":
                names = [a.name for a in node.names]
            elif node.module.startswith("lakehouse_assets."):
                names = [node.module.split(".")[1]]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("lakehouse_assets.")]
        found |= {(name, node.lineno) for name in names}
    return found


def import_violations() -> list[str]:
    problems = []
    for path in _modules():
        here = _package(path)
        if here == "__init__":
            continue
        assert here in LAYER, f"{path}: package {here!r} has no place in LAYERS"
        for imported, line in _imported_packages(path):
            if imported == here:
                continue
            assert imported in LAYER, f"{path}:{line}: {imported!r} has no place in LAYERS"
            if LAYER[imported] >= LAYER[here]:
                problems.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line}: {here} imports "
                    f"{imported} (layer {LAYER[imported]} >= {LAYER[here]})"
                )
    return sorted(problems)


def test_imports_run_downwards_along_the_data_flow():
    assert import_violations() == []


def test_the_layer_rule_catches_an_upward_import(tmp_path, monkeypatch):
    bronze = tmp_path / "lakehouse_assets" / "bronze"
    bronze.mkdir(parents=True)
    (bronze / "bad.py").write_text("from lakehouse_assets.governance.erasure import purge\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "lakehouse_assets")
    expected = f"bronze imports governance (layer {LAYER['governance']} >= {LAYER['bronze']})"
    assert [p.split(": ", 1)[1] for p in import_violations()] == [expected]


TABLE_LITERAL = re.compile(
    r"""["'](bronze|silver|gold|features|ml|serving|monitoring|governance|"""
    r"""queries|reports)/[a-z_]+["']"""
)


def test_one_module_owns_the_lake_table_names():
    owners = {}
    for path in _modules():
        if path.name == "tables.py" and path.parent == PACKAGE:
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.FunctionDef | ast.ClassDef)
            and n.body
            and isinstance(n.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and TABLE_LITERAL.fullmatch(repr(node.value))
            ):
                owners.setdefault(node.value, []).append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id.endswith("_TABLE") for t in node.targets
            ):
                owners.setdefault("*_TABLE constant", []).append(f"{path.name}:{node.lineno}")
    assert owners == {}, f"table names outside lakehouse_assets/tables.py: {owners}"


def test_lake_storage_and_engines_stay_behind_the_engine_and_resources():
    problems = []
    for path in _modules():
        rel = path.relative_to(PACKAGE).as_posix()
        text = path.read_text()
        if not rel.startswith(("engine/", "resources/")):
            for pattern in (
                r"\bDeltaEngine\(",
                r"\bSparkEngine\(",
                r"\bos\.walk\(",
                r"_delta_log",
                r"Path\(\s*(lake_root|lake\.root|settings\.lake_root)",
            ):
                if re.search(pattern, text) and rel not in _DELTA_ADAPTERS | _LOCAL_FOLDERS:
                    problems.append(f"{rel}: {pattern}")
        if (
            re.search(r"\bDeltaTable\(", text)
            and not rel.startswith("engine/")
            and rel not in _DELTA_ADAPTERS
        ):
            problems.append(f"{rel}: opens DeltaTable directly")
    assert problems == []


# Plugins that another tool loads and gives no engine (Feast's offline store, dbt-duckdb's
# plugin): they read the Delta tables with delta-rs themselves.
_DELTA_ADAPTERS = {"features/delta_offline_store.py", "gold/dbt_delta_plugin.py"}
# Walks the landing folder (files producers drop on this machine), not the lake.
_LOCAL_FOLDERS = {"sources/landing.py"}


@pytest.mark.integration
def test_the_scoring_service_imports_without_dagster_dbt_or_jupyter():
    probe = (
        "import json, sys; import lakehouse_assets.serving.server; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'dagster', 'dagster_dbt', 'dbt', 'dagstermill', 'jupyter_core', 'nbclient', "
        "'nbformat', 'evidently', 'dash'})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
