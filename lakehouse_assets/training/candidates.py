"""The model families and the small hyperparameter search. Every candidate is one scikit-learn
pipeline (preprocessing + classifier), logged with skops: only the types below are trusted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lightgbm import LGBMClassifier
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from lakehouse_assets.training.dataset import CATEGORICAL_FEATURES, NUMERIC_FEATURES

# Non-default types skops must be told to trust when loading these pipelines. Anything else in a
# logged model fails loudly instead of being trusted blindly.
TRUSTED_TYPES = [
    "collections.OrderedDict",
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
]


@dataclass(frozen=True)
class Candidate:
    """A model family with one point of its search space."""

    family: str
    params: dict[str, Any]
    build: Callable[[], Pipeline]

    @property
    def name(self) -> str:
        return f"{self.family}(" + ", ".join(f"{k}={v}" for k, v in self.params.items()) + ")"


def preprocessing(scale: bool) -> ColumnTransformer:
    """Imputation and one-hot encoding of the model's features (scaled for linear models)."""
    numeric: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if scale:
        numeric.append(("scale", StandardScaler()))
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="unknown")),
            ("one_hot", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    return ColumnTransformer(
        [("numeric", Pipeline(numeric), NUMERIC_FEATURES), ("categorical", categorical, CATEGORICAL_FEATURES)]
    )


def _pipeline(scale: bool, classifier: Any) -> Callable[[], Pipeline]:
    return lambda: Pipeline([("features", preprocessing(scale)), ("classifier", classifier)])


def candidates(seed: int) -> list[Candidate]:
    """Three families, two settings each."""
    out = []
    for c in (0.1, 1.0):
        out.append(
            Candidate(
                "logistic_regression",
                {"C": c},
                _pipeline(True, LogisticRegression(C=c, max_iter=1000, random_state=seed)),
            )
        )
    for depth in (6, 12):
        out.append(
            Candidate(
                "random_forest",
                {"max_depth": depth, "n_estimators": 200},
                _pipeline(
                    False,
                    RandomForestClassifier(
                        n_estimators=200, max_depth=depth, min_samples_leaf=5, n_jobs=-1, random_state=seed
                    ),
                ),
            )
        )
    for leaves in (15, 31):
        out.append(
            Candidate(
                "lightgbm",
                {"num_leaves": leaves, "learning_rate": 0.05, "n_estimators": 200},
                _pipeline(
                    False,
                    LGBMClassifier(
                        num_leaves=leaves,
                        learning_rate=0.05,
                        n_estimators=200,
                        min_child_samples=20,
                        subsample=0.8,
                        subsample_freq=1,
                        colsample_bytree=0.8,
                        random_state=seed,
                        n_jobs=2,
                        verbose=-1,
                    ),
                ),
            )
        )
    return out


def feature_importance(model: Pipeline) -> dict[str, float]:
    """Importance per model input column (one-hot columns summed back onto their feature):
    absolute coefficients for linear models, the trees' importances, zero for models that use
    no feature."""
    classifier = model.named_steps["classifier"]
    names = model.named_steps["features"].get_feature_names_out()
    if hasattr(classifier, "coef_"):
        values = abs(classifier.coef_[0])
    elif hasattr(classifier, "feature_importances_"):
        values = classifier.feature_importances_
    else:  # e.g. a constant baseline: it uses no feature
        values = [0.0] * len(names)
    total: dict[str, float] = {}
    for name, value in zip(names, values, strict=True):
        column = name.split("__", 1)[1]
        feature = next((c for c in CATEGORICAL_FEATURES if column.startswith(f"{c}_")), column)
        total[feature] = total.get(feature, 0.0) + float(value)
    norm = sum(total.values()) or 1.0
    return {k: v / norm for k, v in sorted(total.items(), key=lambda kv: -kv[1])}
