"""The request bodies of a product's scoring routes, made from its declaration: the lookup keys
of its online features, its request columns (bounds from serving.request), its child rows when
it has line features, and the entity keys that join a prediction with its label later."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, create_model, field_validator

from lakehouse_assets.products.spec import Product
from lakehouse_assets.serving.schemas import MAX_ID, REQUEST, valid_text

LINES = "items"  # the body field holding a request's child rows (an order's lines)
MAX_WEIGHT = 1_000_000  # largest child-row weight (e.g. units on an order line)


@dataclass(frozen=True)
class RequestModels:
    """One product's request bodies: a single request and a batch of them."""

    single: type[BaseModel]
    batch: type[BaseModel]


def camel(name: str) -> str:
    """``basket_return`` -> ``BasketReturn`` (the schema names in the OpenAPI document)."""
    return "".join(part.capitalize() for part in name.split("_"))


def _key(product: Product, key: str, required: bool, what: str) -> tuple[Any, Any]:
    if key in product.text_keys:
        kind: Any = str if required else str | None
        return kind, Field(... if required else None, min_length=1, max_length=200, description=what)
    kind = int if required else int | None
    return kind, Field(... if required else None, gt=0, le=MAX_ID, description=what, examples=[42])


def _request_column(product: Product, column: str) -> tuple[Any, Any]:
    table = product.spec.label.table
    if column in product.categorical:
        return str, Field(max_length=200, description=f"`{column}` as in gold {table} (a category)")
    bounds = product.spec.serving.request.get(column)
    return float, Field(
        ge=bounds.min if bounds else None,
        le=bounds.max if bounds else None,
        allow_inf_nan=False,
        description=(
            bounds.description if bounds and bounds.description else f"`{column}` as in gold {table}"
        ),
    )


def request_models(product: Product, max_lines: int, max_batch: int) -> RequestModels:
    """The pydantic models of ``product``'s request bodies (documented in the OpenAPI)."""
    name = camel(product.name)
    fields: dict[str, Any] = {}
    for key in product.lookup_keys:
        fields[key] = _key(product, key, True, f"`{key}`: whose online features are looked up")
    for column in product.spec.features.request:
        fields[column] = _request_column(product, column)
    lines = product.spec.features.lines
    if lines is not None and product.line_entity is not None:
        line_fields: dict[str, Any] = {
            product.line_entity: _key(product, product.line_entity, True, f"`{product.line_entity}`"),
            lines.weight: (
                float,
                Field(ge=0, le=MAX_WEIGHT, allow_inf_nan=False, description=f"`{lines.weight}`"),
            ),
        }
        line = create_model(
            f"{name}Line",
            __config__=REQUEST,
            __doc__=f"One child row ({lines.table}) of a {product.name} request.",
            **line_fields,
        )
        fields[LINES] = (
            list[line],  # type: ignore[valid-type]
            Field(min_length=1, description=f"the child rows ({lines.table}; at most {max_lines}, else 413)"),
        )
    for key in product.keys:
        if key not in fields:
            fields[key] = _key(
                product, key, False, f"`{key}`, when known: joins the prediction with its label later"
            )
    fields["request_id"] = (
        str | None,
        Field(
            default=None,
            max_length=100,
            description="caller's id for this prediction (one is made up when missing); returned and logged",
        ),
    )
    single = create_model(
        f"{name}Request",
        __config__=REQUEST,
        __doc__=f"A {product.name} scoring request: {product.spec.description}",
        __validators__={"_text": field_validator("request_id")(valid_text)},
        **fields,
    )
    batch = create_model(
        f"{name}BatchRequest",
        __config__=REQUEST,
        __doc__=f"Several {product.name} requests scored in one call.",
        requests=(
            list[single],  # type: ignore[valid-type]
            Field(min_length=1, description=f"requests to score in one call (at most {max_batch})"),
        ),
    )
    return RequestModels(single, batch)
