"""The model families and a product's search space. Every candidate is one scikit-learn
pipeline (preprocessing + estimator), logged with skops: only the types below are trusted."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, PoissonRegressor, TweedieRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from lakehouse_assets.products.spec import Product

# Non-default types skops must be told to trust when loading these pipelines. Anything else in a
# logged model fails loudly instead of being trusted blindly.
TRUSTED_TYPES = [
    "collections.OrderedDict",
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.sklearn.LGBMRegressor",
    "sklearn._loss.link.LogLink",
    "sklearn._loss.loss.HalfPoissonLoss",
    "sklearn._loss.loss.HalfTweedieLoss",
]

_LIGHTGBM = {
    "learning_rate": 0.05,
    "n_estimators": 200,
    "min_child_samples": 20,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "n_jobs": 2,
    "verbose": -1,
}

# family -> (scaled inputs, estimator from the searched parameters and the seed)
ESTIMATORS: dict[str, tuple[bool, Callable[[dict[str, Any], int], Any]]] = {
    "logistic_regression": (True, lambda p, seed: LogisticRegression(max_iter=1000, random_state=seed, **p)),
    "random_forest": (
        False,
        lambda p, seed: RandomForestClassifier(
            **{"n_estimators": 200, "min_samples_leaf": 5, **p}, n_jobs=-1, random_state=seed
        ),
    ),
    "lightgbm": (False, lambda p, seed: LGBMClassifier(**{**_LIGHTGBM, **p}, random_state=seed)),
    "poisson_glm": (True, lambda p, seed: PoissonRegressor(max_iter=1000, **p)),
    "tweedie_glm": (True, lambda p, seed: TweedieRegressor(link="log", max_iter=1000, **{"power": 1.5, **p})),
    "lightgbm_regressor": (
        False,
        lambda p, seed: LGBMRegressor(**{**_LIGHTGBM, "objective": "poisson", **p}, random_state=seed),
    ),
}


@dataclass(frozen=True)
class Candidate:
    """A model family with one point of its search space."""

    family: str
    params: dict[str, Any]
    build: Callable[[], Pipeline]

    @property
    def name(self) -> str:
        return f"{self.family}(" + ", ".join(f"{k}={v}" for k, v in self.params.items()) + ")"


def preprocessing(product: Product, scale: bool) -> ColumnTransformer:
    """Imputation and one-hot encoding of the product's features (scaled for linear models)."""
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
        [
            ("numeric", Pipeline(numeric), list(product.numeric)),
            ("categorical", categorical, list(product.categorical)),
        ]
    )


def pipeline(product: Product, scale: bool, estimator: Any) -> Callable[[], Pipeline]:
    """A builder of the preprocessing + ``estimator`` pipeline (fresh objects per call)."""
    return lambda: Pipeline([("features", preprocessing(product, scale)), ("classifier", estimator)])


def candidates(product: Product) -> list[Candidate]:
    """Every point of every declared family's search space, in declaration order."""
    out = []
    for declared in product.spec.candidates:
        scale, estimator = ESTIMATORS[declared.family]
        names = list(declared.search)
        for values in itertools.product(*(declared.search[n] for n in names)):
            params = dict(zip(names, values, strict=True))
            out.append(
                Candidate(
                    declared.family, params, pipeline(product, scale, estimator(params, product.spec.seed))
                )
            )
    return out


def coefficients(model: Pipeline) -> dict[str, float] | None:
    """A linear model's coefficient per (one-hot) input column and its intercept; None for
    other models. For a log-link GLM, exp(coefficient) is the multiplicative effect of one
    standard deviation."""
    estimator = model.named_steps["classifier"]
    if not hasattr(estimator, "coef_"):
        return None
    names = model.named_steps["features"].get_feature_names_out()
    values = estimator.coef_.ravel() if estimator.coef_.ndim == 1 else estimator.coef_[0]
    intercept = estimator.intercept_
    return {
        "intercept": float(intercept if getattr(intercept, "ndim", 0) == 0 else intercept[0]),
        **{str(n).split("__", 1)[1]: float(v) for n, v in zip(names, values, strict=True)},
    }


def feature_importance(model: Pipeline, product: Product) -> dict[str, float]:
    """Importance per model input column (one-hot columns summed back onto their feature):
    absolute coefficients for linear models, the trees' importances, zero for models that use
    no feature."""
    estimator = model.named_steps["classifier"]
    names = model.named_steps["features"].get_feature_names_out()
    if hasattr(estimator, "coef_"):
        values = abs(estimator.coef_.ravel() if estimator.coef_.ndim == 1 else estimator.coef_[0])
    elif hasattr(estimator, "feature_importances_"):
        values = estimator.feature_importances_
    else:  # e.g. a constant baseline: it uses no feature
        values = [0.0] * len(names)
    total: dict[str, float] = {}
    for name, value in zip(names, values, strict=True):
        column = name.split("__", 1)[1]
        feature = next((c for c in product.categorical if column.startswith(f"{c}_")), column)
        total[feature] = total.get(feature, 0.0) + float(value)
    norm = sum(total.values()) or 1.0
    return {k: v / norm for k, v in sorted(total.items(), key=lambda kv: -kv[1])}
