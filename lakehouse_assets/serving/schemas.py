"""Request and response bodies of the scoring API (every field documented in the OpenAPI)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

MAX_ID = 2**63 - 1  # ids are 64-bit integers in the lake and the feature store
# Strict: a boolean or a numeric string is not an id, a quantity or an amount.
REQUEST = ConfigDict(extra="forbid", strict=True)


def validation_problems(error: RequestValidationError) -> list[dict[str, Any]]:
    """What was wrong with a request, per field: where, why and the rule's name. The input is
    left out: it may be a number JSON cannot encode (NaN, Infinity) or text that is not valid
    Unicode."""
    problems = []
    for problem in error.errors():
        message = str(problem.get("msg", "invalid"))
        problems.append(
            {
                "loc": [str(p) for p in problem.get("loc", ())],
                "msg": message.encode("utf-8", "backslashreplace").decode("utf-8"),
                "type": str(problem.get("type", "value_error")),
            }
        )
    return problems


def valid_text(value: str | None) -> str | None:
    """Text the log and the response can store: no lone surrogates (not valid Unicode)."""
    if value is not None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(
                f"is not valid Unicode text (it holds a lone surrogate at position {error.start})"
            ) from None
    return value


class Prediction(BaseModel):
    """One request's prediction and what it was computed from."""

    request_id: str = Field(description="the caller's request id, or a generated one")
    prediction: float = Field(
        description="binary classification: the probability of the positive label; "
        "regression: the predicted value"
    )
    model_name: str = Field(description="registered model (the data product) that scored the request")
    model_version: int = Field(description="its registry version")
    served_by: Literal["champion", "challenger"] = Field(
        default="champion",
        description="which alias answered: the challenger only for canary entities in canary mode",
    )
    features: dict[str, float | str | None] = Field(
        description="the model's input: request values, features looked up online, request-time "
        "and child-row features (of every model taking part in the rollout)"
    )
    line_features: dict[str, dict[str, float | str | None]] = Field(
        description="online features of each child row's entity (e.g. each ordered product), by id"
    )


class BatchPrediction(BaseModel):
    """The predictions of a batch, in request order."""

    predictions: list[Prediction] = Field(description="one per request, in request order")


class ModelState(BaseModel):
    """A served product: its task, the loaded versions and the rollout."""

    name: str = Field(description="the data product (its registered model)")
    task: str = Field(description="binary_classification or regression")
    path: str = Field(description="its scoring route")
    champion_version: int | None = Field(description="the loaded champion version")
    challenger_version: int | None = Field(description="the loaded challenger version")
    mode: str = Field(description="rollout mode: champion, shadow or canary")
    canary_share: float = Field(description="share of entities the challenger answers in canary mode")


class RolloutChange(BaseModel):
    """How the challenger takes part in traffic from now on."""

    model_config = REQUEST

    mode: Literal["champion", "shadow", "canary"] = Field(
        description="champion: only the champion scores; shadow: the challenger scores every "
        "request too and both scores are logged, the champion answers; canary: the challenger "
        "answers canary_share of the entities (always the same ones), the champion the rest"
    )
    canary_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="share of entities the challenger answers in canary mode (0..1)",
    )


class RolloutState(RolloutChange):
    """The rollout in force and the versions loaded."""

    champion_version: int | None = Field(description="the loaded champion version")
    challenger_version: int | None = Field(
        description="the loaded challenger version (none: the champion answers everything)"
    )


class Problem(BaseModel):
    """An error response."""

    detail: str = Field(description="what was wrong with the request")
