"""Drift check of a large window: the monitor's sampled Evidently run against a plain full
Evidently DataDriftPreset run on the same data, in the same process run.

    uv run python benchmarks/bench_drift.py [--rows 1000000] [--trials 6]

1. timing: a 1-million-row reference and window, 20 columns (16 numeric, 4 categorical), some
   with injected drift; wall time and peak memory of each way (each in a fresh child process:
   peak RSS above the RSS with the data loaded);
2. agreement: per-column verdicts of both ways on that window plus ``--trials`` more windows
   with random drift injected into random columns (magnitudes around the threshold included).
Target: at least 5x faster, at least 95% agreement.
"""

import argparse
import time

import numpy as np
import polars as pl
from common import in_child, peak_bytes

from lakehouse_assets.monitoring.drift import DEFAULT_SAMPLE_ROWS, data_drift
from lakehouse_assets.runtime import disable_telemetry

NUMERIC = [f"x{i}" for i in range(16)]
CATEGORICAL = [f"c{i}" for i in range(4)]


def window(rows: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, float]]:
    """Reference and current data; about a third of the columns get a random shift."""
    rng = np.random.default_rng(seed)
    shifts = {c: float(rng.choice([0.0, 0.0, rng.uniform(0.02, 0.4)])) for c in NUMERIC + CATEGORICAL}

    def make(shifted: bool, part_seed: int) -> pl.DataFrame:
        r = np.random.default_rng(part_seed)
        columns: dict[str, object] = {}
        for i, c in enumerate(NUMERIC):
            base = r.gamma(2 + i % 3, 10, rows) if i % 2 else r.normal(0, 1, rows)
            scale = float(np.std(base[:10_000]))
            columns[c] = base + (shifts[c] * scale if shifted else 0.0)
        for c in CATEGORICAL:
            p = np.array([0.5, 0.3, 0.2])
            if shifted and shifts[c]:
                p = np.array([0.5 - shifts[c] / 2, 0.3, 0.2 + shifts[c] / 2])
            columns[c] = r.choice(["a", "b", "c"], rows, p=p)
        return pl.DataFrame(columns)

    return make(False, seed * 2 + 1), make(True, seed * 2 + 2), shifts


def rss_mb() -> float:
    """This process's resident memory now (VmRSS)."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return int(fields["VmRSS"].split()[0]) / 1024


def timed_run(rows: int, sample_rows: int | None, queue) -> None:
    """In a child: load the data, then one drift check; wall time, peak memory, verdicts."""
    disable_telemetry()
    reference, current, _ = window(rows, seed=0)
    with open("/proc/self/clear_refs", "w") as refs:  # reset the high-water mark to now
        refs.write("5")
    loaded = rss_mb()
    started = time.perf_counter()
    result = data_drift(reference, current, NUMERIC, CATEGORICAL, sample_rows)
    seconds = time.perf_counter() - started
    queue.put((seconds, peak_bytes() / 2**20 - loaded, {c.column: c.drifted for c in result.columns}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--trial-rows", type=int, default=300_000)
    args = parser.parse_args()
    disable_telemetry()
    sampled = in_child(timed_run, args.rows, DEFAULT_SAMPLE_ROWS)
    full = in_child(timed_run, args.rows, None)
    print(f"{args.rows:,} rows x 20 columns, reference and window:")
    print(
        f"  monitor (Evidently on {DEFAULT_SAMPLE_ROWS:,}-row samples): {sampled[0]:.2f} s, "
        f"peak +{sampled[1]:,.0f} MiB"
    )
    print(f"  plain Evidently DataDriftPreset, every row:          {full[0]:.2f} s, peak +{full[1]:,.0f} MiB")
    print(f"  speed-up {full[0] / sampled[0]:.1f}x (target >= 5x)")
    agree = total = 0
    verdicts = [(sampled[2], full[2])]
    for trial in range(1, args.trials + 1):
        reference, current, _ = window(args.trial_rows, seed=trial)
        verdicts.append(
            tuple(
                {
                    c.column: c.drifted
                    for c in data_drift(reference, current, NUMERIC, CATEGORICAL, rows).columns
                }
                for rows in (DEFAULT_SAMPLE_ROWS, None)
            )
        )  # type: ignore[arg-type]
        print(
            f"  trial {trial}: {args.trial_rows:,} rows, "
            f"{sum(verdicts[-1][1].values())} of 20 columns drifted (full run)"
        )
    disagreements = []
    for ours, theirs in verdicts:
        for column, drifted in theirs.items():
            total += 1
            agree += ours[column] == drifted
            if ours[column] != drifted:
                disagreements.append(column)
    print(
        f"agreement on per-column verdicts: {agree}/{total} = {agree / total:.1%} "
        f"(target >= 95%); disagreements: {disagreements or 'none'}"
    )


if __name__ == "__main__":
    main()
