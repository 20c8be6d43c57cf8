"""Scoring: the champion model (reloaded when its alias moves), the online features of an order,
and the model input built from them exactly as in training."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import mlflow
import numpy as np
import polars as pl
from feast import FeatureStore
from mlflow import MlflowClient

from lakehouse_assets.features.basket import basket_features
from lakehouse_assets.features.online import OnlineFeatureLookup, OrderRequest
from lakehouse_assets.products.spec import Product
from lakehouse_assets.registry.promotion import CHALLENGER, CHAMPION, require_skops
from lakehouse_assets.serving.compiled import Scorer, categorical_columns, fast_scorer, pipeline_input
from lakehouse_assets.serving.schemas import Order

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A registered version loaded for scoring (with the numpy path when it reproduces the pipeline)."""

    name: str
    version: int
    model: Any  # the scikit-learn pipeline (predict_proba)
    compiled: Scorer | None = None  # the numpy path, when it reproduces the pipeline

    def predict(self, features: list[dict[str, Any]]) -> np.ndarray:
        """P(return) for each feature row, through the same input preparation as training."""
        if self.compiled is not None:
            return self.compiled(features)
        strings = {c: pl.String for c in categorical_columns(self.model)}
        frame = pl.DataFrame(features, schema_overrides=strings, infer_schema_length=None)
        return self.model.predict_proba(pipeline_input(frame, self.model))[:, 1]


class AliasedModel:
    """The version an alias of the registered model points to. ``refresh`` loads a new version
    beside the old one and swaps the reference only when it is ready, so requests never see a
    half-loaded model. The champion keeps serving if its alias disappears; the challenger is
    dropped when its alias is removed (it was promoted or withdrawn)."""

    def __init__(self, client: MlflowClient, name: str, alias: str = CHAMPION):
        self.client, self.name, self.alias = client, name, alias
        self.current: LoadedModel | None = None
        self._lock = threading.Lock()

    def alias_version(self) -> int | None:
        try:
            return int(self.client.get_model_version_by_alias(self.name, self.alias).version)
        except mlflow.exceptions.MlflowException:
            return None

    def refresh(self) -> bool:
        """Load the aliased version if the alias moved; returns whether the model changed."""
        with self._lock:
            version = self.alias_version()
            if version is None:
                if self.alias == CHAMPION or self.current is None:
                    return False
                log.info(
                    "%s %s: version %s unloaded (alias removed)", self.alias, self.name, self.current.version
                )
                self.current = None
                return True
            if self.current and self.current.version == version:
                return False
            uri = f"models:/{self.name}/{version}"
            require_skops(uri)  # never unpickle: a refused version leaves the old one serving
            model = mlflow.sklearn.load_model(uri)
            old = self.current.version if self.current else None
            self.current = LoadedModel(self.name, version, model, fast_scorer(model))
            log.info(
                "%s %s: version %s -> %s (%s)",
                self.alias,
                self.name,
                old,
                version,
                "numpy path" if self.current.compiled else "pipeline",
            )
            return True


class ChampionModel(AliasedModel):
    """The champion: the model that answers requests."""

    def __init__(self, client: MlflowClient, name: str):
        super().__init__(client, name, CHAMPION)


RolloutMode = Literal["champion", "shadow", "canary"]
ROLLOUT_MODES: tuple[RolloutMode, ...] = ("champion", "shadow", "canary")


def canary_bucket(customer_id: int) -> float:
    """A customer's fixed place in [0, 1): the canary takes the customers below its share, so a
    customer always gets the same model, and raising the share only adds customers."""
    digest = hashlib.blake2b(str(customer_id).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class Rollout:
    """How the challenger takes part: ``champion`` (not at all), ``shadow`` (scores every
    request; only the champion answers) or ``canary`` (answers ``canary_share`` of customers,
    sticky; the champion scores those requests too, in the shadow)."""

    mode: RolloutMode = "champion"
    canary_share: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in ROLLOUT_MODES:
            raise ValueError(f"rollout mode {self.mode!r}: use one of {', '.join(ROLLOUT_MODES)}")
        if not 0 <= self.canary_share <= 1:
            raise ValueError(f"canary_share {self.canary_share} is not between 0 and 1")

    def challenger_answers(self, customer_id: int) -> bool:
        return self.mode == "canary" and canary_bucket(customer_id) < self.canary_share


@dataclass(frozen=True)
class OrderInput:
    """What the model scores for one order: its features (request values, customer features
    looked up online, request-time and basket features) and each product's online features."""

    features: dict[str, Any]
    product_features: dict[int, dict[str, Any]]


@dataclass(frozen=True)
class Unscorable:
    """Why an order cannot be scored (an unknown customer or product: no online features)."""

    reason: str


@dataclass(frozen=True)
class Scored:
    """One scored order: its input, which alias answered with which model and score, and the
    other model that scores it in the shadow (off the request path), if any."""

    input: OrderInput
    served_by: str  # champion | challenger
    model: LoadedModel
    probability: float
    shadow: LoadedModel | None


def _known(values: dict[str, Any], keys: set[str]) -> bool:
    return any(v is not None for k, v in values.items() if k not in keys)


def score_orders(
    found: Sequence[OrderInput | Unscorable],
    customer_ids: Sequence[int],
    champion: LoadedModel,
    challenger: LoadedModel | None,
    rollout: Rollout,
) -> list[Scored | Unscorable]:
    """Score every scorable order with the model that answers it (one call per model): the
    challenger for canary customers in canary mode, else the champion. The model that does not
    answer (the challenger in shadow mode, the champion beside a canary) is named as the
    order's shadow; the inference log writer scores it later."""
    if rollout.mode == "champion" or challenger is None or challenger.version == champion.version:
        challenger = None
    by_challenger = [challenger is not None and rollout.challenger_answers(c) for c in customer_ids]
    scores: dict[int, float] = {}
    for answering, flag in ((champion, False), (challenger, True)):
        picked = [i for i, f in enumerate(found) if isinstance(f, OrderInput) and by_challenger[i] == flag]
        if answering is not None and picked:
            predicted = answering.predict([found[i].features for i in picked])  # type: ignore[union-attr]
            scores.update((i, float(p)) for i, p in zip(picked, predicted, strict=True))
    scored: list[Scored | Unscorable] = []
    for i, f in enumerate(found):
        if isinstance(f, Unscorable):
            scored.append(f)
        elif by_challenger[i]:
            scored.append(Scored(f, CHALLENGER, challenger, scores[i], champion))  # type: ignore[arg-type]
        else:
            scored.append(Scored(f, CHAMPION, champion, scores[i], challenger))
    return scored


class OrderFeatures:
    """Online features for orders of the served product: its row features (customer and
    request-time features) and the features of the products on the order's lines."""

    def __init__(self, store: FeatureStore, product: Product):
        self.store, self.product = store, product
        self.customers = OnlineFeatureLookup(store, list(product.row_features))
        on_demand = [r.split(":")[1] for r in product.row_features if r.split(":")[0] in product.on_demand]
        # keys of a lookup row that come from the request: nothing else means an unknown customer
        self.request_keys = {"customer_id", *product.spec.features.request, *on_demand}
        self.line_features = product.line_feature_names
        self.line_schema = {
            "order": pl.Int64,
            "quantity": pl.Int64,
            **{f: pl.Float64 for f in self.line_features},
        }
        view_name = (
            product.line_features[0].split(":")[0] if product.line_features else "product_daily_features"
        )
        view = store.get_feature_view(view_name)
        self.product_refs = [f"{view.name}:{f.name}" for f in view.features]

    def lookup(self, orders: list[Order]) -> list[OrderInput | Unscorable]:
        """Per order: the model's input, or why it cannot be scored."""
        rows = self.customers.lookup([OrderRequest(o.customer_id, o.amount, o.discount) for o in orders])
        product_ids = sorted({line.product_id for o in orders for line in o.items})
        found = self.store.get_online_features(
            features=self.product_refs, entity_rows=[{"product_id": p} for p in product_ids]
        ).to_dict()
        by_product = {
            pid: {k: found[k][i] for k in found if k != "product_id"} for i, pid in enumerate(product_ids)
        }
        out: list[OrderInput | Unscorable] = []
        lines: list[dict[str, Any]] = []
        for order, row in zip(orders, rows, strict=True):
            unknown = next(
                (p.product_id for p in order.items if not _known(by_product[p.product_id], set())), None
            )
            if not _known(row, self.request_keys):
                out.append(Unscorable(f"unknown customer {order.customer_id}: no online features"))
            elif unknown is not None:
                out.append(Unscorable(f"unknown product {unknown}: no online features"))
            else:
                features = {
                    **{name: row.get(name) for name in self.product.features},
                    "amount": order.amount,
                    "discount": order.discount,
                }
                lines.extend(
                    {
                        "order": len(out),
                        "quantity": p.quantity,
                        **{f: by_product[p.product_id][f] for f in self.line_features},
                    }
                    for p in order.items
                )
                out.append(
                    OrderInput(features, {p.product_id: by_product[p.product_id] for p in order.items})
                )
        if lines:  # the basket features of every scorable order, in one call
            baskets = basket_features(
                pl.DataFrame(lines, schema=self.line_schema), self.line_features, key="order"
            )
            for basket in baskets.iter_rows(named=True):
                scorable = out[basket.pop("order")]
                if isinstance(scorable, OrderInput):  # always: lines are of scorable orders
                    scorable.features.update(basket)
        return out
