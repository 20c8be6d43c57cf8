"""Crash injection: every operation that writes the lake or the registry is SIGKILLed in a child
process, rerun, and compared with a clean run from the same starting point. A fixed set of kill
points runs in CI; `make verify` adds LAKEHOUSE_TEST_VERIFY_TRIALS randomized ones."""

import os
import random
import shutil

import pytest

from lakehouse_assets.runtime import ensure_dirs
from lakehouse_assets.settings import LakehouseSettings, SimulatorSettings
from lakehouse_assets.sources.simulator import ShopSimulator
from tests.reliability import crash
from tests.reliability.report import record

SHOP = SimulatorSettings(
    days=40,
    initial_customers=60,
    initial_products=30,
    orders_per_day=20,
    malformed_file_share=0.15,
    malformed_row_share=0.05,
    gdpr_erasures_per_day=0.3,
)
# (operation, share of its clean duration after which it is killed)
FIXED = [
    ("capture", 0.3),
    ("capture", 0.7),
    ("ingest", 0.5),
    ("apply", 0.4),
    ("apply", 0.8),
    ("gold", 0.5),
    ("features", 0.5),
    ("register", 0.6),
    ("stream", 0.3),
    ("stream", 0.7),
]
RANDOM_TRIALS = int(os.environ.get("LAKEHOUSE_TEST_VERIFY_TRIALS", "0"))


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    work = tmp_path_factory.mktemp("crash")
    home = work / "shop"
    settings = LakehouseSettings(home=home, simulator=SHOP)
    ensure_dirs(settings)
    ShopSimulator(settings.source_db, settings.landing, SHOP).run(SHOP.days)
    return work, crash.prepare_bases(home, work, log=lambda message: None)


def run_trials(work, bases, plan):
    results = []
    for number, (operation, share) in enumerate(plan):
        base, reference, seconds = bases[operation]
        trial_home = work / f"trial-{number}"
        result = crash.trial(base, reference, trial_home, operation, seconds * share)
        results.append(result)
        if result.passed:
            shutil.rmtree(trial_home)  # failed trials stay for a look
    return results


def test_killed_operations_lose_and_duplicate_nothing(bases):
    work, prepared = bases
    rng = random.Random(20261125)
    plan = FIXED + [(rng.choice(crash.OPERATIONS), rng.uniform(0.0, 1.1)) for _ in range(RANDOM_TRIALS)]
    results = run_trials(work, prepared, plan)
    summary = crash.summarize(results)
    record(
        "crash_injection",
        {**summary, "duplicates": summary["duplicates"], "failed": summary["failed_trials"]},
    )
    crash.write_results(work / "crash_trials.json", results)
    assert summary["faults_injected"] >= len(FIXED) - 2  # most fixed points land mid-operation
    assert summary["tables_checked"] > 0 and summary["rows_compared"] > 0
    failures = [r for r in results if not r.passed]
    assert not failures, failures
