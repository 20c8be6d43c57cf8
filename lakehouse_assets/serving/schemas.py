"""Request and response bodies of the scoring API (every field documented in the OpenAPI)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, field_validator

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


def _valid_text(value: str | None) -> str | None:
    """Text the log and the response can store: no lone surrogates (not valid Unicode)."""
    if value is not None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(
                f"is not valid Unicode text (it holds a lone surrogate at position {error.start})"
            ) from None
    return value


class OrderLine(BaseModel):
    """One line of an order: a product and how many units."""

    model_config = REQUEST

    product_id: int = Field(gt=0, le=MAX_ID, description="catalogue product id", examples=[17])
    quantity: int = Field(gt=0, le=1000, description="units ordered", examples=[1])


class Order(BaseModel):
    """An order as the client knows it at checkout."""

    model_config = REQUEST

    customer_id: int = Field(gt=0, le=MAX_ID, description="the ordering customer's id", examples=[42])
    items: list[OrderLine] = Field(
        min_length=1, description="order lines (at least one; at most serving.max_items, else 413)"
    )
    amount: float = Field(
        ge=0,
        le=1_000_000,
        allow_inf_nan=False,
        description="order total after discount, in EUR",
        examples=[129.9],
    )
    discount: float = Field(
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="discount share applied to the order (0..1)",
        examples=[0.1],
    )
    order_id: int | None = Field(
        default=None,
        gt=0,
        le=MAX_ID,
        examples=[1001],
        description="the shop's order id, when known at checkout: joins the prediction with the "
        "order's return label later (model quality monitoring)",
    )
    request_id: str | None = Field(
        default=None,
        max_length=100,
        description="caller's id for this prediction (one is made up when missing); returned and logged",
    )

    _request_id_is_text = field_validator("request_id")(_valid_text)


class Prediction(BaseModel):
    """The return probability of one order and what it was computed from."""

    request_id: str = Field(description="the caller's request id, or a generated one")
    return_probability: float = Field(description="probability that the order is returned within 30 days")
    model_name: str = Field(description="registered model that scored the order")
    model_version: int = Field(description="its registry version")
    served_by: Literal["champion", "challenger"] = Field(
        default="champion",
        description="which alias answered: the challenger only for canary customers in canary mode",
    )
    features: dict[str, float | str | None] = Field(
        description="the model's input: request values, customer features looked up online and "
        "request-time features"
    )
    product_features: dict[str, dict[str, float | str | None]] = Field(
        description="online features of each ordered product, by product id"
    )


class BatchRequest(BaseModel):
    """Several orders scored in one call."""

    model_config = REQUEST

    orders: list[Order] = Field(
        min_length=1, description="orders to score in one call (at most serving.max_batch)"
    )


class BatchPrediction(BaseModel):
    """The predictions of a batch, in request order."""

    predictions: list[Prediction] = Field(description="one per order, in request order")


class RolloutChange(BaseModel):
    """How the challenger takes part in traffic from now on."""

    model_config = REQUEST

    mode: Literal["champion", "shadow", "canary"] = Field(
        description="champion: only the champion scores; shadow: the challenger scores every "
        "request too and both scores are logged, the champion answers; canary: the challenger "
        "answers canary_share of the customers (always the same ones), the champion the rest"
    )
    canary_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="share of customers the challenger answers in canary mode (0..1)",
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
