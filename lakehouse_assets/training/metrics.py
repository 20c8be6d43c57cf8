"""Quality of a model on its holdout, per task (probabilities of a binary classifier, or a
regression's numbers), and its plots (PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    log_loss,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean predicted probability| over equal-width bins, weighted by
    the share of rows in each bin."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            error += in_bin.mean() * abs(y[in_bin].mean() - p[in_bin].mean())
    return float(error)


def classification_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, Brier score, calibration error, precision and recall at the
    threshold, and the positive rate."""
    predicted = (p >= threshold).astype(int)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "calibration_error": expected_calibration_error(y, p),
        "precision_at_threshold": float(precision_score(y, predicted, zero_division=0)),
        "recall_at_threshold": float(recall_score(y, predicted, zero_division=0)),
        "positive_rate": float(y.mean()),
    }


def regression_metrics(y: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, WAPE (absolute error over the actual total), bias (mean error over the mean
    actual; positive: over-forecast), its absolute value and R squared."""
    y, prediction = np.asarray(y, dtype=float), np.asarray(prediction, dtype=float)
    error = prediction - y
    total = float(np.abs(y).sum()) or 1.0
    bias = float(error.sum() / (float(y.sum()) or 1.0))
    variance = float(((y - y.mean()) ** 2).sum())
    return {
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "wape": float(np.abs(error).sum() / total),
        "bias": bias,
        "abs_bias": abs(bias),
        "r2": 1.0 - float((error**2).sum()) / variance if variance else 0.0,
        "mean_actual": float(y.mean()),
    }


def task_metrics(
    task: str, y: np.ndarray, prediction: np.ndarray, threshold: float | None
) -> dict[str, float]:
    """The metrics of a product's task (products.spec.METRICS names them)."""
    if task == "binary_classification":
        return classification_metrics(y.astype(int), prediction, threshold if threshold is not None else 0.5)
    return regression_metrics(y, prediction)


def save_regression_plots(
    y: np.ndarray, prediction: np.ndarray, importance: dict[str, float], folder: Path
) -> list[Path]:
    """Predicted against actual, and feature importance, as PNG files."""
    folder.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(y, prediction, s=4, alpha=0.4)
    top = float(max(np.max(y), np.max(prediction), 1.0))
    ax.plot([0, top], [0, top], "--", color="grey")
    ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual")
    paths = [_save(fig, folder / "predicted_vs_actual.png")]
    return [*paths, _importance_plot(importance, folder)]


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _importance_plot(importance: dict[str, float], folder: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 4))
    names = list(importance)[::-1]
    ax.barh(names, [importance[n] for n in names])
    ax.set(xlabel="share of importance", title="Feature importance")
    return _save(fig, folder / "feature_importance.png")


def save_plots(
    y: np.ndarray, p: np.ndarray, threshold: float, importance: dict[str, float], folder: Path
) -> list[Path]:
    """ROC curve, PR curve, confusion matrix and feature importance as PNG files."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []

    def save(fig: plt.Figure, name: str) -> None:
        paths.append(_save(fig, folder / name))

    fpr, tpr, _ = roc_curve(y, p)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(fpr, tpr, label=f"AUC {roc_auc_score(y, p):.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend()
    save(fig, "roc_curve.png")

    precision, recall, _ = precision_recall_curve(y, p)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(recall, precision, label=f"AP {average_precision_score(y, p):.3f}")
    ax.axhline(y.mean(), linestyle="--", color="grey")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    ax.legend()
    save(fig, "pr_curve.png")

    matrix = confusion_matrix(y, (p >= threshold).astype(int), labels=[0, 1])
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center")
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xlabel="predicted",
        ylabel="actual",
        title=f"Confusion matrix (threshold {threshold})",
    )
    save(fig, "confusion_matrix.png")

    return [*paths, _importance_plot(importance, folder)]
