"""Champion and challenger on live traffic. In shadow and canary mode the service scores every
request with both aliases and logs both scores: how often they agree, how their scores are
distributed, and (once the orders' return labels are known) their quality on the same orders,
with confidence intervals. The promotion gate counts this evidence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy import stats
from sklearn.metrics import roc_auc_score

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.monitoring.monitors import MonitorOutcome, now, read_inference_log
from lakehouse_assets.products.spec import Product
from lakehouse_assets.tables import ONLINE_COMPARISON_TABLE, gold_table

Z95 = 1.959964


def paired_scores(engine: LakeEngine, product: str, champion: int, challenger: int) -> pl.DataFrame:
    """Logged requests of ``product`` both versions scored (shadow or canary), one row per request."""
    log = read_inference_log(engine, product)
    if log.is_empty():
        return log
    return log.filter(
        (pl.col("champion_version") == champion)
        & (pl.col("challenger_version") == challenger)
        & pl.col("champion_prediction").is_not_null()
        & pl.col("challenger_prediction").is_not_null()
    )


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% interval of a proportion (Wilson: sound near 0 and 1 and for small n)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (float(centre - half), float(centre + half))


def paired_auc(
    y: np.ndarray, champion: np.ndarray, challenger: np.ndarray, rounds: int = 1000, seed: int = 0
) -> dict[str, float]:
    """ROC AUC of both on the same orders, and of their difference (challenger - champion), with
    95% intervals from a paired bootstrap (the same resampled orders for both)."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(rounds):
        pick = rng.integers(0, len(y), len(y))
        if y[pick].min() == y[pick].max():  # one class only: AUC undefined
            continue
        a, b = roc_auc_score(y[pick], champion[pick]), roc_auc_score(y[pick], challenger[pick])
        samples.append((a, b, b - a))
    low, high = np.percentile(np.array(samples), [2.5, 97.5], axis=0)
    a, b = roc_auc_score(y, champion), roc_auc_score(y, challenger)
    return {
        "champion_auc": float(a),
        "champion_auc_low": float(low[0]),
        "champion_auc_high": float(high[0]),
        "challenger_auc": float(b),
        "challenger_auc_low": float(low[1]),
        "challenger_auc_high": float(high[1]),
        "auc_difference": float(b - a),
        "auc_difference_low": float(low[2]),
        "auc_difference_high": float(high[2]),
    }


@dataclass(frozen=True)
class Comparison:
    """Champion and challenger on the same live requests: agreement, score differences and, with labels,
    ROC AUC of each with intervals."""

    row: dict[str, Any]

    @property
    def challenger_worse(self) -> bool:
        """Significantly worse on labelled live orders: the whole interval of the AUC
        difference is below zero."""
        high = self.row.get("auc_difference_high")
        return high is not None and high < 0


QUALITY_COLUMNS = [
    "champion_auc",
    "champion_auc_low",
    "champion_auc_high",
    "challenger_auc",
    "challenger_auc_low",
    "challenger_auc_high",
    "auc_difference",
    "auc_difference_low",
    "auc_difference_high",
]
SCHEMA = pl.Schema(
    {
        "computed_at": pl.Datetime("us"),
        "model_name": pl.String(),
        "champion_version": pl.Int64(),
        "challenger_version": pl.Int64(),
        "requests": pl.Int64(),
        "answered_by_challenger": pl.Int64(),
        "agreement_rate": pl.Float64(),
        "agreement_low": pl.Float64(),
        "agreement_high": pl.Float64(),
        "mean_abs_difference": pl.Float64(),
        "champion_mean": pl.Float64(),
        "challenger_mean": pl.Float64(),
        "champion_p90": pl.Float64(),
        "challenger_p90": pl.Float64(),
        "ks_statistic": pl.Float64(),
        "ks_pvalue": pl.Float64(),
        "labelled_orders": pl.Int64(),
        **{c: pl.Float64() for c in QUALITY_COLUMNS},
    }
)


def compare(
    engine: LakeEngine, product: Product, champion: int, challenger: int, min_labelled: int
) -> Comparison | None:
    """Agreement (same decision at the threshold), score distributions (means, 90th percentile,
    two-sample KS) and, with at least ``min_labelled`` labelled orders of both classes, quality
    on the same orders. A regression product's scores are compared by distribution only. None
    when no request was scored by both."""
    classifier = product.spec.task == "binary_classification"
    threshold = product.spec.decision_threshold or 0.5
    pairs = paired_scores(engine, product.name, champion, challenger)
    if pairs.is_empty():
        return None
    a, b = pairs["champion_prediction"].to_numpy(), pairs["challenger_prediction"].to_numpy()
    agree = int(((a >= threshold) == (b >= threshold)).sum())
    low, high = wilson_interval(agree, len(a)) if classifier else (None, None)
    ks = stats.ks_2samp(a, b)
    row: dict[str, Any] = {
        "computed_at": now(),
        "model_name": product.spec.model_name,
        "champion_version": champion,
        "challenger_version": challenger,
        "requests": len(a),
        "answered_by_challenger": int((pairs["served_by"] == "challenger").sum()),
        "agreement_rate": agree / len(a) if classifier else None,
        "agreement_low": low,
        "agreement_high": high,
        "mean_abs_difference": float(np.abs(a - b).mean()),
        "champion_mean": float(a.mean()),
        "challenger_mean": float(b.mean()),
        "champion_p90": float(np.quantile(a, 0.9)),
        "challenger_p90": float(np.quantile(b, 0.9)),
        "ks_statistic": float(ks.statistic),
        "ks_pvalue": float(ks.pvalue),
        "labelled_orders": 0,
        **dict.fromkeys(QUALITY_COLUMNS),
    }
    table, keys, label = gold_table(product.spec.label.table), product.keys, product.label
    if classifier and engine.version(table) is not None:
        labels = engine.read(table, columns=[*keys, label]).filter(pl.col(label).is_not_null())
        labelled = (
            pairs.filter(pl.all_horizontal(pl.col(k).is_not_null() for k in keys))
            .sort("served_at")
            .unique(keys, keep="last")
            .join(labels, on=keys)
        )
        row["labelled_orders"] = labelled.height
        y = labelled[label].cast(pl.Int64).to_numpy()
        if labelled.height >= min_labelled and 0 < y.sum() < len(y):
            row.update(
                paired_auc(
                    y,
                    labelled["champion_prediction"].to_numpy(),
                    labelled["challenger_prediction"].to_numpy(),
                )
            )
    return Comparison(row)


def online_comparison(
    engine: LakeEngine, product: Product, champion: int | None, challenger: int | None, min_labelled: int
) -> MonitorOutcome:
    """The monitor: compare, append to ``monitoring/online_comparison``; fails only when the
    challenger is significantly worse on labelled live orders."""
    if champion is None or challenger is None or champion == challenger:
        return MonitorOutcome(None, note="no challenger beside the champion")
    comparison = compare(engine, product, champion, challenger, min_labelled)
    if comparison is None:
        return MonitorOutcome(
            None,
            note=f"no request scored by both v{champion} and "
            f"v{challenger} yet: set the service's rollout to shadow or canary",
        )
    row = comparison.row
    engine.append(ONLINE_COMPARISON_TABLE, pl.DataFrame([row], schema=SCHEMA))
    labelled = row["labelled_orders"]
    agreement = (
        f"agreement {row['agreement_rate']:.3f}" if row["agreement_rate"] is not None else "regression"
    )
    note = f"{row['requests']} requests scored by both, {agreement}; " + (
        f"{labelled} labelled orders, ROC AUC difference {row['auc_difference']:+.3f} "
        f"[{row['auc_difference_low']:+.3f}, {row['auc_difference_high']:+.3f}]"
        if row["auc_difference"] is not None
        else f"{labelled} labelled orders (at least {min_labelled} of both classes needed to compare quality)"
    )
    summary = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
    return MonitorOutcome(not comparison.challenger_worse, summary, note=note)
