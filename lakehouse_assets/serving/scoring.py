"""Scoring: each served product's champion and challenger (reloaded when their aliases move),
the online features of a request, and the model input built from them exactly as in training."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import mlflow
import numpy as np
import polars as pl
from feast import FeatureStore
from mlflow import MlflowClient

from lakehouse_assets.features.basket import basket_features
from lakehouse_assets.features.online import OnlineFeatureLookup
from lakehouse_assets.products.spec import Product
from lakehouse_assets.registry.promotion import CHALLENGER, CHAMPION, require_skops
from lakehouse_assets.serving.compiled import Scorer, categorical_columns, fast_scorer, pipeline_input
from lakehouse_assets.serving.requests import LINES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A registered version loaded for scoring (with the numpy path when it reproduces the
    pipeline) and the feature specification it was trained with (its `feature_spec` tag)."""

    name: str
    version: int
    model: Any  # the scikit-learn pipeline
    compiled: Scorer | None = None  # the numpy path, when it reproduces the pipeline
    feature_spec: dict[str, Any] = field(default_factory=dict)

    def predict(self, features: list[dict[str, Any]]) -> np.ndarray:
        """The score of each feature row (a classifier's probability of the positive label, a
        regressor's value), through the same input preparation as training; the model takes
        the columns it was fitted on."""
        if self.compiled is not None:
            return self.compiled(features)
        strings = {c: pl.String for c in categorical_columns(self.model)}
        frame = pl.DataFrame(features, schema_overrides=strings, infer_schema_length=None)
        prepared = pipeline_input(frame, self.model)
        if hasattr(self.model, "predict_proba"):
            return self.model.predict_proba(prepared)[:, 1]
        return np.asarray(self.model.predict(prepared), dtype=float)

    def refs(self, kind: str) -> list[str]:
        """The `view:feature` references of this version's ``kind`` (row_features, line_features)."""
        return [str(r) for r in self.feature_spec.get(kind, [])]


class UnservableModelError(ValueError):
    """A version this service cannot feed: it needs request columns the declaration lacks."""


class AliasedModel:
    """The version an alias of the registered model points to. ``refresh`` loads a new version
    beside the old one and swaps the reference only when it is ready, so requests never see a
    half-loaded model. The champion keeps serving if its alias disappears; the challenger is
    dropped when its alias is removed (it was promoted or withdrawn)."""

    def __init__(self, client: MlflowClient, name: str, alias: str = CHAMPION, request: Sequence[str] = ()):
        self.client, self.name, self.alias = client, name, alias
        self.request = set(request)  # the request columns the service receives
        self.current: LoadedModel | None = None
        self._lock = threading.Lock()

    def alias_version(self) -> Any:
        try:
            return self.client.get_model_version_by_alias(self.name, self.alias)
        except mlflow.exceptions.MlflowException:
            return None

    def refresh(self) -> bool:
        """Load the aliased version if the alias moved; returns whether the model changed."""
        with self._lock:
            found = self.alias_version()
            version = int(found.version) if found is not None else None
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
            spec = json.loads(found.tags.get("feature_spec", "{}"))
            missing = sorted(set(spec.get("request", [])) - self.request)
            if missing:  # the loaded version keeps serving
                raise UnservableModelError(
                    f"{self.name} version {version} needs request columns {missing} that the "
                    "declaration does not send; not loaded"
                )
            uri = f"models:/{self.name}/{version}"
            require_skops(uri)  # never unpickle: a refused version leaves the old one serving
            model = mlflow.sklearn.load_model(uri)
            old = self.current.version if self.current else None
            self.current = LoadedModel(self.name, version, model, fast_scorer(model), spec)
            log.info(
                "%s %s: version %s -> %s (%s)",
                self.alias,
                self.name,
                old,
                version,
                "numpy path" if self.current.compiled else "pipeline",
            )
            return True


RolloutMode = Literal["champion", "shadow", "canary"]
ROLLOUT_MODES: tuple[RolloutMode, ...] = ("champion", "shadow", "canary")


def canary_bucket(entity: int | str) -> float:
    """An entity's fixed place in [0, 1) (a request's first key, e.g. its customer): the canary
    takes the entities below its share, so an entity always gets the same model, and raising
    the share only adds entities."""
    digest = hashlib.blake2b(str(entity).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class Rollout:
    """How the challenger takes part: ``champion`` (not at all), ``shadow`` (scores every
    request; only the champion answers) or ``canary`` (answers ``canary_share`` of entities,
    sticky; the champion scores those requests too, in the shadow)."""

    mode: RolloutMode = "champion"
    canary_share: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in ROLLOUT_MODES:
            raise ValueError(f"rollout mode {self.mode!r}: use one of {', '.join(ROLLOUT_MODES)}")
        if not 0 <= self.canary_share <= 1:
            raise ValueError(f"canary_share {self.canary_share} is not between 0 and 1")

    def challenger_answers(self, entity: int | str) -> bool:
        return self.mode == "canary" and canary_bucket(entity) < self.canary_share


@dataclass(frozen=True)
class ScoringInput:
    """What the models score for one request: its features (request values, features looked up
    online, request-time and child-row features) and each child entity's online features."""

    features: dict[str, Any]
    line_features: dict[Any, dict[str, Any]]


@dataclass(frozen=True)
class Unscorable:
    """Why a request cannot be scored (an unknown entity: no online features)."""

    reason: str


@dataclass(frozen=True)
class Scored:
    """One scored request: its input, which alias answered with which model and score, and the
    other model that scores it in the shadow (off the request path), if any."""

    input: ScoringInput
    served_by: str  # champion | challenger
    model: LoadedModel
    score: float
    shadow: LoadedModel | None


def score_requests(
    found: Sequence[ScoringInput | Unscorable],
    entities: Sequence[int | str],
    champion: LoadedModel,
    challenger: LoadedModel | None,
    rollout: Rollout,
) -> list[Scored | Unscorable]:
    """Score every scorable request with the model that answers it (one call per model): the
    challenger for canary entities in canary mode, else the champion. The model that does not
    answer (the challenger in shadow mode, the champion beside a canary) is named as the
    request's shadow; the inference log writer scores it later."""
    if rollout.mode == "champion" or challenger is None or challenger.version == champion.version:
        challenger = None
    by_challenger = [challenger is not None and rollout.challenger_answers(e) for e in entities]
    scores: dict[int, float] = {}
    for answering, flag in ((champion, False), (challenger, True)):
        picked = [i for i, f in enumerate(found) if isinstance(f, ScoringInput) and by_challenger[i] == flag]
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


def _by_view(refs: Sequence[str]) -> dict[str, list[str]]:
    views: dict[str, list[str]] = {}
    for ref in refs:
        view, name = ref.split(":")
        views.setdefault(view, []).append(name)
    return views


class ProductFeatures:
    """Online features for a product's requests: its row features (entity features and
    request-time ones) and the features of each child row's entity. It fetches what the
    declaration names plus what the loaded versions were trained with, so a challenger with a
    different feature set is fed beside the champion; each model scores its own columns."""

    def __init__(self, store: FeatureStore, product: Product):
        self.store, self.product = store, product
        self.request = list(product.spec.features.request)
        lines = product.spec.features.lines
        self.weight = lines.weight if lines else None
        self._inputs: dict[str, list[str]] = {}  # on-demand view -> the request columns it reads
        self._views: dict[str, list[str]] = {}  # feature view -> its `view:feature` references

    def _on_demand(self, models: Sequence[LoadedModel]) -> dict[str, list[str]]:
        """The on-demand views the product and the loaded versions use, with their inputs."""
        names = [
            *self.product.on_demand,
            *(str(v) for m in models for v in m.feature_spec.get("on_demand", [])),
        ]
        for name in names:
            if name not in self._inputs:
                view = self.store.get_on_demand_feature_view(name)
                self._inputs[name] = [f.name for s in view.source_request_sources.values() for f in s.schema]
        return {n: self._inputs[n] for n in names}

    def _row_refs(self, models: Sequence[LoadedModel]) -> list[str]:
        refs = dict.fromkeys(self.product.row_features)
        for model in models:
            refs.update(dict.fromkeys(model.refs("row_features")))
        return list(refs)

    def _line_refs(self, models: Sequence[LoadedModel]) -> list[str]:
        """Every feature of the views the child rows' features come from (shown per child)."""
        views = dict.fromkeys(r.split(":")[0] for r in self.product.line_features)
        for model in models:
            views.update(dict.fromkeys(r.split(":")[0] for r in model.refs("line_features")))
        return [ref for v in views for ref in self._view_refs(v)]

    def _view_refs(self, view: str) -> list[str]:
        """Every feature of ``view`` (read from the registry once)."""
        if view not in self._views:
            self._views[view] = [f"{view}:{f.name}" for f in self.store.get_feature_view(view).features]
        return self._views[view]

    def _keys(self, view: str) -> list[str]:
        return [self.store.get_entity(e).join_key for e in self.store.get_feature_view(view).entities]

    def probe(self) -> None:
        """One online read of a row feature (raises when the store does not answer)."""
        on_demand = self._on_demand(())
        view = next(v for v in _by_view(self.product.row_features) if v not in on_demand)
        ref = next(r for r in self.product.row_features if r.startswith(f"{view}:"))
        self.store.get_online_features(features=[ref], entity_rows=[dict.fromkeys(self._keys(view), 0)])

    def lookup(
        self, requests: Sequence[dict[str, Any]], models: Sequence[LoadedModel] = ()
    ) -> list[ScoringInput | Unscorable]:
        """Per request (a validated body as a dict): the models' input, or why it cannot be
        scored. ``models``: the loaded versions, whose own features are fetched too."""
        product, row_refs, line_refs = self.product, self._row_refs(models), self._line_refs(models)
        on_demand = self._on_demand(models)
        inputs = list(dict.fromkeys(c for needed in on_demand.values() for c in needed))
        entity_rows = [{k: r[k] for k in (*product.lookup_keys, *inputs)} for r in requests]
        rows = OnlineFeatureLookup(self.store, row_refs).lookup(entity_rows)
        line_names = sorted(
            {r.split(":")[1] for r in product.line_features}
            | {r.split(":")[1] for m in models for r in m.refs("line_features")}
        )
        by_child = self._children(requests, line_refs)
        views = {v: names for v, names in _by_view(row_refs).items() if v not in on_demand}
        row_names = [r.split(":")[1] for r in row_refs]
        out: list[ScoringInput | Unscorable] = []
        lines: list[dict[str, Any]] = []
        for request, row in zip(requests, rows, strict=True):
            unknown_view = next(
                (v for v, names in views.items() if all(row.get(n) is None for n in names)), None
            )
            children = request.get(LINES) or []
            entity = product.line_entity
            unknown_child = next(
                (c[entity] for c in children if all(v is None for v in by_child[c[entity]].values())), None
            )
            if unknown_view is not None:
                named = ", ".join(f"{k} {request.get(k)}" for k in self._keys(unknown_view))
                out.append(Unscorable(f"unknown {named}: no online features ({unknown_view})"))
            elif unknown_child is not None:
                out.append(Unscorable(f"unknown {entity} {unknown_child}: no online features"))
            else:
                features = {**{c: request[c] for c in self.request}, **{n: row.get(n) for n in row_names}}
                lines.extend(
                    {
                        "row": len(out),
                        str(self.weight): c[str(self.weight)],
                        **{f: by_child[c[entity]].get(f) for f in line_names},
                    }
                    for c in children
                )
                out.append(ScoringInput(features, {c[entity]: by_child[c[entity]] for c in children}))
        if lines and self.weight is not None:  # the child-row features of every scorable request
            schema = {"row": pl.Int64, self.weight: pl.Float64, **{f: pl.Float64 for f in line_names}}
            baskets = basket_features(
                pl.DataFrame(lines, schema=schema), line_names, key="row", weight=self.weight
            )
            for basket in baskets.iter_rows(named=True):
                scorable = out[basket.pop("row")]
                if isinstance(scorable, ScoringInput):  # always: lines are of scorable requests
                    scorable.features.update(basket)
        return out

    def _children(self, requests: Sequence[dict[str, Any]], refs: list[str]) -> dict[Any, dict[str, Any]]:
        """The online features of every child entity the requests name, by its id."""
        entity = self.product.line_entity
        if entity is None or not refs:
            return {}
        ids = sorted({c[entity] for r in requests for c in r.get(LINES) or []})
        if not ids:
            return {}
        found = self.store.get_online_features(
            features=refs, entity_rows=[{entity: i} for i in ids]
        ).to_dict()
        return {i: {k: found[k][n] for k in found if k != entity} for n, i in enumerate(ids)}
