"""The reliability report: the verification tests each record their counters as JSON under
``LAKEHOUSE_TEST_VERIFY_DIR`` (default ``test-artifacts/verify``); this prints them as one table and
fails when anything was lost, duplicated or answered with a 5xx.

    python -m tests.reliability.report [DIR]     (`make verify` runs the tests first)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

COLUMNS = (
    "trials",
    "faults_injected",
    "tables_checked",
    "rows_compared",
    "rows_lost",
    "duplicates",
    "requests",
    "server_errors",
    "failed",
)
MUST_BE_ZERO = ("rows_lost", "duplicates", "server_errors", "failed")


def report_dir() -> Path:
    return Path(os.environ.get("LAKEHOUSE_TEST_VERIFY_DIR", "test-artifacts/verify"))


def record(name: str, counters: dict[str, Any]) -> Path:
    """Write one check's counters (unknown keys are kept as details)."""
    path = report_dir() / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(counters, indent=2, sort_keys=True))
    return path


def load(folder: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def render(results: dict[str, dict[str, Any]], console: Console | None = None) -> bool:
    """Print the table; returns whether every must-be-zero column is zero."""
    table = Table("check", *COLUMNS, title="lakehouse verify")
    totals = dict.fromkeys(COLUMNS, 0)
    for name, counters in results.items():
        table.add_row(name, *(f"{counters.get(c, 0):,}" for c in COLUMNS))
        for column in COLUMNS:
            totals[column] += int(counters.get(column, 0))
    table.add_row("[bold]total[/bold]", *(f"[bold]{totals[c]:,}[/bold]" for c in COLUMNS))
    (console or Console()).print(table)
    return bool(results) and not any(totals[c] for c in MUST_BE_ZERO)


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else report_dir()
    results = load(folder)
    if not results:
        sys.exit(f"no verification results in {folder}: run `make verify`")
    ok = render(results)
    print("verified: nothing lost, nothing duplicated, no 5xx" if ok else "VERIFICATION FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
