"""The schema of a data product declaration (`products/<name>/defs.yaml`), and what a
validated declaration resolves to: the model's input columns, the feature references it
fetches, and which metrics and model families fit its task.

Pure pydantic: the loader, the training code, the scoring service and the Dagster component
share it without importing each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Task = Literal["binary_classification", "regression"]
Direction = Literal["max", "min"]  # min for abs_bias means: closest to zero

# The metrics each task reports, and which way is better. The gate and the quality monitor
# compare on these names only.
METRICS: dict[str, dict[str, Direction]] = {
    "binary_classification": {
        "roc_auc": "max",
        "pr_auc": "max",
        "log_loss": "min",
        "brier": "min",
        "calibration_error": "min",
        "precision_at_threshold": "max",
        "recall_at_threshold": "max",
    },
    "regression": {
        "mae": "min",
        "rmse": "min",
        "wape": "min",
        "abs_bias": "min",
        "r2": "max",
    },
}

# Model families per task, with the hyperparameters their search space may name.
FAMILIES: dict[str, dict[str, set[str]]] = {
    "binary_classification": {
        "logistic_regression": {"C"},
        "random_forest": {"max_depth", "n_estimators", "min_samples_leaf"},
        "lightgbm": {"num_leaves", "learning_rate", "n_estimators", "min_child_samples"},
    },
    "regression": {
        "poisson_glm": {"alpha"},
        "tweedie_glm": {"alpha", "power"},
        "lightgbm_regressor": {
            "num_leaves",
            "learning_rate",
            "n_estimators",
            "min_child_samples",
            "objective",
        },
    },
}

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
Scalar = float | int | str | bool


class Strict(BaseModel):
    """Unknown fields are errors (a typo must not be ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EntitySpec(Strict):
    """What one row of the product is, and the time it is scored at."""

    keys: list[str] = Field(min_length=1, description="columns that identify a row, e.g. [order_id]")
    event_time: str = Field(description="when the row is scored: features are taken as of this time")


class LabelSpec(Strict):
    """Where the label comes from and when it becomes known."""

    table: str = Field(description="the gold dbt mart holding one row per scored entity and time")
    column: str
    known_at: str = Field(description="column: when the label became known (NULL while unknown)")
    window_days: int = Field(ge=0, description="days after the event time until every label is known")


class LinesSpec(Strict):
    """Child rows of each scored row (e.g. an order's lines): the features of a view keyed by
    a child column are fetched per child row and aggregated per scored row (count, sum of the
    weight, maximum of each feature)."""

    table: str = Field(description="lake table of the child rows, e.g. silver/order_items")
    weight: str = Field(description="numeric column summed over the child rows, e.g. quantity")


class FeaturesSpec(Strict):
    """The model's features: a Feast feature service, or feature references `view:feature`."""

    service: str | None = Field(default=None, description="a Feast feature service name")
    views: list[str] = Field(default_factory=list, description="`view:feature` references")
    request: list[str] = Field(
        default_factory=list,
        description="columns of the label table the caller knows at scoring time (model inputs "
        "and on-demand feature inputs)",
    )
    lines: LinesSpec | None = None

    @model_validator(mode="after")
    def _one_source(self) -> FeaturesSpec:
        if (self.service is None) == (not self.views):
            raise ValueError("name exactly one of features.service or features.views")
        for ref in self.views:
            if ref.count(":") != 1 or not all(ref.split(":")):
                raise ValueError(f"features.views entry {ref!r} is not `view:feature`")
        return self


class SplitSpec(Strict):
    """The time-based split: the newest share of mature labelled rows is the holdout."""

    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    min_rows: int = Field(default=20, ge=2, description="fewer mature labelled rows: not trained")


class CandidateSpec(Strict):
    """A model family and its search space (every combination is one candidate)."""

    family: str
    search: dict[str, list[Scalar]] = Field(default_factory=dict)

    @field_validator("search")
    @classmethod
    def _non_empty(cls, search: dict[str, list[Scalar]]) -> dict[str, list[Scalar]]:
        empty = [k for k, v in search.items() if not v]
        if empty:
            raise ValueError(f"search parameter(s) {empty} list no values")
        return search


class GateSpec(Strict):
    """The promotion gate: the challenger must beat the champion on the primary metric by the
    margin, without a guard metric regressing by more than its tolerance."""

    primary_metric: str
    margin: float = Field(
        default=0.0, description="least gain on the primary metric; negative: a loss it tolerates"
    )
    guards: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    min_online_requests: int = Field(
        default=0, ge=0, description="live shadow/canary requests required before a promotion"
    )


class BatchSpec(Strict):
    """Batch scoring into gold/<product>_scores on a schedule."""

    cron: str = Field(default="0 6 * * *", description="when the scheduled batch scoring runs")

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, cron: str) -> str:
        if len(cron.split()) != 5:
            raise ValueError(f"cron {cron!r} must have five fields (minute hour day month weekday)")
        return cron


class RequestBounds(Strict):
    """What the scoring service accepts for a numeric request column (422 outside)."""

    min: float | None = None
    max: float | None = None
    description: str | None = Field(default=None, description="shown in the OpenAPI document")

    @model_validator(mode="after")
    def _ordered(self) -> RequestBounds:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class ServingSpec(Strict):
    """How predictions reach users: online (REST) and/or batch into a gold Delta table."""

    online: bool = False
    batch: BatchSpec | None = None
    request: dict[str, RequestBounds] = Field(
        default_factory=dict, description="bounds of numeric request columns the service enforces"
    )

    @property
    def mode(self) -> str:
        return " + ".join(m for m, on in (("online", self.online), ("batch", self.batch)) if on) or "none"


class MonitoringSpec(Strict):
    """What the monitors watch."""

    drift_columns: list[str] = Field(default_factory=list, description="default: every model input")
    drift_share: float = Field(default=0.5, gt=0, le=1, description="share of drifted columns = drift")
    quality_metric: str | None = Field(default=None, description="default: the gate's primary metric")
    quality_floor: float | None = Field(default=None, description="fail beyond this on fresh labels")
    quality_max_drop: float = Field(default=0.05, ge=0, description="fail this far worse than holdout")
    retrain_on_failure: bool = True
    alert_webhook_env: str | None = Field(
        default=None,
        description="environment variable holding this product's alert webhook (a secret, so "
        "not in the YAML); default: the platform's (monitoring.alert_webhook_url)",
    )

    @field_validator("alert_webhook_env")
    @classmethod
    def _env_name(cls, name: str | None) -> str | None:
        if name is not None and not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
            raise ValueError(f"{name!r} is not an environment variable name (A-Z, 0-9, _)")
        return name


class ProductSpec(Strict):
    """One data product: a model the platform trains, registers, promotes, serves and monitors."""

    name: str
    description: str
    owners: list[str] = Field(min_length=1)
    task: Task
    entity: EntitySpec
    label: LabelSpec
    features: FeaturesSpec
    split: SplitSpec = SplitSpec()
    candidates: list[CandidateSpec] = Field(min_length=1)
    gate: GateSpec
    decision_threshold: float | None = Field(
        default=None, gt=0, lt=1, description="binary classification: probability counted as positive"
    )
    seed: int = 7
    serving: ServingSpec = ServingSpec()
    monitoring: MonitoringSpec = MonitoringSpec()

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not NAME.match(name):
            raise ValueError(
                f"{name!r} is not a product name: lower case letters, digits and _, from a letter"
            )
        return name

    @field_validator("owners")
    @classmethod
    def _owners(cls, owners: list[str]) -> list[str]:
        bad = [o for o in owners if not (o.startswith("team:") or "@" in o)]
        if bad:
            raise ValueError(f"owners {bad}: each is an e-mail address or team:<name>")
        return owners

    @model_validator(mode="after")
    def _fits_task(self) -> ProductSpec:
        metrics, families = METRICS[self.task], FAMILIES[self.task]
        named = {
            "gate.primary_metric": [self.gate.primary_metric],
            "gate.guards": list(self.gate.guards),
            "monitoring.quality_metric": [self.monitoring.quality_metric]
            if self.monitoring.quality_metric
            else [],
        }
        for where, names in named.items():
            unfit = [m for m in names if m not in metrics]
            if unfit:
                raise ValueError(
                    f"{where}: {unfit} do not fit the task {self.task} (allowed: {sorted(metrics)})"
                )
        for number, candidate in enumerate(self.candidates):
            if candidate.family not in families:
                raise ValueError(
                    f"candidates[{number}].family: {candidate.family!r} does not fit the task "
                    f"{self.task} (allowed: {sorted(families)})"
                )
            unknown = sorted(set(candidate.search) - families[candidate.family])
            if unknown:
                raise ValueError(
                    f"candidates[{number}].search: {unknown} are not parameters of "
                    f"{candidate.family} (allowed: {sorted(families[candidate.family])})"
                )
        if self.task == "binary_classification" and self.decision_threshold is None:
            raise ValueError("decision_threshold: required for binary_classification (e.g. 0.5)")
        if self.task != "binary_classification" and self.decision_threshold is not None:
            raise ValueError(f"decision_threshold: only binary_classification has one, not {self.task}")
        return self

    @property
    def model_name(self) -> str:
        """The registered model (one per product) and its MLflow experiment."""
        return self.name

    @property
    def quality_metric(self) -> str:
        return self.monitoring.quality_metric or self.gate.primary_metric

    def better(self, metric: str) -> Direction:
        return METRICS[self.task][metric]


@dataclass(frozen=True)
class Product:
    """A validated declaration resolved against the feature store and the gold marts: the
    model's input columns (in a fixed order) and the feature references to fetch."""

    spec: ProductSpec
    path: str  # the declaration file
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    row_features: tuple[str, ...]  # `view:feature` fetched as of each row's event time
    line_features: tuple[str, ...] = ()  # fetched per child row, aggregated (features.lines)
    line_entity: str | None = None  # the child rows' join key of the line features' view
    on_demand: tuple[str, ...] = ()  # on-demand feature views the features use
    feature_service_version: str | None = None
    lookup_keys: tuple[str, ...] = ()  # join keys of the row features' views (online lookup)
    text_keys: tuple[str, ...] = ()  # entity / lookup keys that are strings (the rest: integers)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def features(self) -> list[str]:
        """The model's input columns, numeric first."""
        return [*self.numeric, *self.categorical]

    @property
    def label(self) -> str:
        return self.spec.label.column

    @property
    def time(self) -> str:
        return self.spec.entity.event_time

    @property
    def keys(self) -> list[str]:
        return list(self.spec.entity.keys)

    @property
    def quality_metric(self) -> str:
        return self.spec.quality_metric

    @property
    def request_keys(self) -> list[str]:
        """The ids a scoring request sends: the lookup keys, then the other entity keys."""
        return [*self.lookup_keys, *(k for k in self.keys if k not in self.lookup_keys)]

    @property
    def line_feature_names(self) -> list[str]:
        return [ref.split(":")[1] for ref in self.line_features]

    def feature_spec(self) -> dict[str, object]:
        """What a model version records about its features (registry tags)."""
        return {
            "service": self.spec.features.service,
            "service_version": self.feature_service_version,
            "row_features": list(self.row_features),
            "line_features": list(self.line_features),
            "on_demand": list(self.on_demand),
            "request": list(self.spec.features.request),
            "inputs": self.features,
        }
