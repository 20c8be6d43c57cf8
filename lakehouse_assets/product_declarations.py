"""Find, validate and resolve the data product declarations.

A declaration is a Dagster component file, `<folder>/<name>/defs.yaml`:

    type: lakehouse_assets.components.DataProduct
    attributes: {name: ..., task: ..., ...}   # products.spec.ProductSpec

The platform's own products live in `lakehouse_assets/products/`; `products_dirs` in the
settings adds folders of a user's own. Every mistake is a `DeclarationError` naming the file,
the field and what is allowed, raised while the code location loads.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, get_args

import yaml  # type: ignore[import-untyped]
from feast import FeatureService, FeatureView
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.types import String
from pydantic import BaseModel, ValidationError

from lakehouse_assets.features.definitions import build_definitions
from lakehouse_assets.products.spec import Product, ProductSpec
from lakehouse_assets.settings import DBT_PROJECT_DIR, LakehouseSettings
from lakehouse_assets.silver.specs import SILVER_SPECS
from lakehouse_assets.tables import silver_table

COMPONENT_TYPE = "lakehouse_assets.components.DataProduct"
BUILT_IN = Path(__file__).parent / "products"
DECLARATION = "defs.yaml"
STRING_TYPES = {"varchar", "string", "text"}


class DeclarationError(ValueError):
    """A data product declaration that cannot be used, and why."""

    def __init__(self, path: Path | str, field: str, problem: str):
        self.path, self.field, self.problem = str(path), field, problem
        super().__init__(f"{path}: {field}: {problem}")


def declaration_files(settings: LakehouseSettings) -> list[Path]:
    """Every `*/defs.yaml` of the built-in folder and of the configured folders."""
    files = []
    for folder in (BUILT_IN, *settings.products_dirs):
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise DeclarationError(folder, "products_dirs", "is not a folder")
        files += sorted(folder.glob(f"*/{DECLARATION}"))
    return files


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` laid over it, nested mappings merged key by key."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _fields_at(location: Iterable[Any]) -> list[str]:
    """The field names the schema allows at ``location`` (a pydantic error location)."""
    model: type[BaseModel] = ProductSpec
    for part in location:
        info = model.model_fields.get(str(part))
        if info is None:
            continue  # a list index or a mapping key
        nested = [
            a
            for a in (*get_args(info.annotation), info.annotation)
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        nested += [
            b
            for a in get_args(info.annotation)
            for b in get_args(a)
            if isinstance(b, type) and issubclass(b, BaseModel)
        ]
        if nested:
            model = nested[0]
    return list(model.model_fields)


def _location(error: Any) -> str:
    return ".".join(str(part) for part in error["loc"]) or "attributes"


def parse_declaration(path: Path, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> ProductSpec:
    """The declaration in ``path`` validated against the schema (overrides for its name laid
    over it first)."""
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise DeclarationError(path, "yaml", f"not valid YAML: {error}") from None
    if not isinstance(document, dict) or document.get("type") != COMPONENT_TYPE:
        raise DeclarationError(path, "type", f"must be {COMPONENT_TYPE}")
    attributes = document.get("attributes")
    if not isinstance(attributes, dict):
        raise DeclarationError(path, "attributes", "must be a mapping of the product's fields")
    override = (overrides or {}).get(str(attributes.get("name")), {})
    try:
        return ProductSpec.model_validate(deep_merge(attributes, override))
    except ValidationError as error:
        first = error.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        field = _location(first)
        named = re.match(r"^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+)*): (.*)$", message, re.DOTALL)
        if not first["loc"] and named:  # a check across fields names the field it is about
            field, message = named.groups()
        if first["type"] == "extra_forbidden":
            message = f"unknown field (allowed: {_allowed(_fields_at(first['loc'][:-1]))})"
        elif first["type"] == "missing":
            message = "required"
        raise DeclarationError(path, field, message) from None


def gold_marts(project_dir: Path = DBT_PROJECT_DIR) -> dict[str, dict[str, str | None]]:
    """The dbt marts and their documented columns (name -> data type or None), read from the
    models' yml files: a product may only use what a mart publishes."""
    marts: dict[str, dict[str, str | None]] = {}
    for path in sorted((project_dir / "models" / "marts").glob("*.yml")):
        for model in (yaml.safe_load(path.read_text()) or {}).get("models", []):
            marts[model["name"]] = {c["name"]: c.get("data_type") for c in model.get("columns", [])}
    return marts


def _feature_objects(lake_root: str) -> dict[str, Any]:
    return {o.name: o for o in build_definitions(lake_root).all()}


def _allowed(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


def resolve(
    spec: ProductSpec, path: Path | str, lake_root: str, marts: dict[str, dict[str, str | None]] | None = None
) -> Product:
    """Check the declaration against the gold marts and the Feast definitions; return the
    model's input columns and the feature references to fetch."""
    marts = gold_marts() if marts is None else marts
    if spec.label.table not in marts:
        raise DeclarationError(
            path, "label.table", f"{spec.label.table!r} is not a gold mart (allowed: {_allowed(marts)})"
        )
    columns = marts[spec.label.table]
    named = {
        "entity.keys": spec.entity.keys,
        "entity.event_time": [spec.entity.event_time],
        "label.column": [spec.label.column],
        "label.known_at": [spec.label.known_at],
        "features.request": spec.features.request,
    }
    for field, names in named.items():
        missing = [n for n in names if n not in columns]
        if missing:
            raise DeclarationError(
                path,
                field,
                f"{missing} not a documented column of gold mart {spec.label.table} "
                f"(columns: {_allowed(columns)})",
            )
    objects = _feature_objects(lake_root)
    projections: list[tuple[Any, list[str]]] = []
    service_version = None
    if spec.features.service is not None:
        service = objects.get(spec.features.service)
        services = [n for n, o in objects.items() if isinstance(o, FeatureService)]
        if not isinstance(service, FeatureService):
            raise DeclarationError(
                path,
                "features.service",
                f"{spec.features.service!r} is not a feature service (allowed: {_allowed(services)})",
            )
        service_version = service.tags.get("version")
        for projection in service.feature_view_projections:
            projections.append((objects[projection.name], [f.name for f in projection.features]))
    else:
        views = {n: o for n, o in objects.items() if isinstance(o, FeatureView | OnDemandFeatureView)}
        for ref in spec.features.views:
            view_name, feature = ref.split(":")
            view = views.get(view_name)
            if view is None:
                raise DeclarationError(
                    path,
                    "features.views",
                    f"{ref}: no feature view {view_name!r} (allowed: {_allowed(views)})",
                )
            if feature not in {f.name for f in view.features}:
                raise DeclarationError(
                    path,
                    "features.views",
                    f"{ref}: unknown feature {feature!r} "
                    f"(features of {view_name}: {_allowed(f.name for f in view.features)})",
                )
            if projections and projections[-1][0] is view:
                projections[-1][1].append(feature)
            else:
                projections.append((view, [feature]))
    line_columns: list[str] = []
    if spec.features.lines is not None:
        tables = {silver_table(s.name): list(s.columns) for s in SILVER_SPECS}
        if spec.features.lines.table not in tables:
            raise DeclarationError(
                path, "features.lines.table", f"not a silver table (allowed: {_allowed(tables)})"
            )
        line_columns = tables[spec.features.lines.table]
        if spec.features.lines.weight not in line_columns or not set(spec.entity.keys) <= set(line_columns):
            raise DeclarationError(
                path,
                "features.lines",
                f"{spec.features.lines.table} needs the weight column and the entity keys {spec.entity.keys} "
                f"(columns: {_allowed(line_columns)})",
            )
    numeric = [c for c in spec.features.request if (columns[c] or "").lower() not in STRING_TYPES]
    categorical = [c for c in spec.features.request if c not in numeric]
    row, line, on_demand, line_entity, lookup_keys = [], [], [], None, []
    for view, names in projections:
        types = {f.name: f.dtype for f in view.features}
        if isinstance(view, OnDemandFeatureView):
            needed = [f.name for source in view.source_request_sources.values() for f in source.schema]
            missing = [n for n in needed if n not in spec.features.request]
            if missing:
                raise DeclarationError(
                    path, "features.request", f"on-demand view {view.name} needs request columns {missing}"
                )
            on_demand.append(view.name)
            keys: list[str] = []
        else:
            keys = [objects[e].join_key for e in view.entities]
        if set(keys) <= set(columns):
            row += [f"{view.name}:{n}" for n in names]
            lookup_keys += [k for k in keys if k not in lookup_keys]
            numeric += [n for n in names if types[n] != String]
            categorical += [n for n in names if types[n] == String]
        elif line_columns and set(keys) <= set(line_columns):
            strings = [n for n in names if types[n] == String]
            if strings:
                raise DeclarationError(
                    path, "features", f"line features must be numeric, {strings} are strings"
                )
            line += [f"{view.name}:{n}" for n in names]
            line_entity = keys[0]
        else:
            raise DeclarationError(
                path,
                "features",
                f"view {view.name} is keyed by {keys}: neither a column of {spec.label.table}"
                + (
                    f" nor of {spec.features.lines.table}"
                    if spec.features.lines
                    else " (declare features.lines?)"
                ),
            )
    if line:
        numeric += ["basket_lines", "basket_units", *(f"basket_max_{r.split(':')[1]}" for r in line)]
    unknown = [c for c in spec.monitoring.drift_columns if c not in numeric + categorical]
    if unknown:
        raise DeclarationError(
            path,
            "monitoring.drift_columns",
            f"{unknown} are not model inputs (inputs: {_allowed(numeric + categorical)})",
        )
    bounded = [c for c in spec.serving.request if c not in numeric or c not in spec.features.request]
    if bounded:
        raise DeclarationError(
            path,
            "serving.request",
            f"{bounded} are not numeric request columns "
            f"(allowed: {_allowed(c for c in spec.features.request if c in numeric)})",
        )
    text_keys = [k for k in (*lookup_keys, *spec.entity.keys) if (columns[k] or "").lower() in STRING_TYPES]
    return Product(
        spec,
        str(path),
        tuple(numeric),
        tuple(categorical),
        tuple(row),
        tuple(line),
        line_entity,
        tuple(on_demand),
        service_version,
        tuple(lookup_keys),
        tuple(dict.fromkeys(text_keys)),
    )


def load_products(settings: LakehouseSettings) -> list[Product]:
    """Every declared product, validated and resolved; two declarations of one name are an error."""
    marts = gold_marts()
    products: dict[str, Product] = {}
    for path in declaration_files(settings):
        spec = parse_declaration(path, settings.product_overrides)
        if spec.name in products:
            raise DeclarationError(
                path, "name", f"{spec.name!r} is declared already in {products[spec.name].path}"
            )
        if spec.name != path.parent.name:
            raise DeclarationError(
                path, "name", f"{spec.name!r} must match its folder name {path.parent.name!r}"
            )
        products[spec.name] = resolve(spec, path, settings.lake_root, marts)
    unknown = sorted(set(settings.product_overrides) - set(products))
    if unknown:
        raise DeclarationError(
            "settings", "product_overrides", f"{unknown} name no product (declared: {_allowed(products)})"
        )
    return list(products.values())


def load_product(settings: LakehouseSettings, name: str) -> Product:
    """One declared product by name."""
    products = {p.name: p for p in load_products(settings)}
    if name not in products:
        raise KeyError(f"no data product {name!r} (declared: {_allowed(products)})")
    return products[name]


def online_products(products: list[Product]) -> list[Product]:
    """The products the scoring service serves (serving.online), in name order."""
    return sorted((p for p in products if p.spec.serving.online), key=lambda p: p.name)


def default_product(products: list[Product], preferred: str) -> Product | None:
    """The online product the unversioned routes (/v1/predict), the CLI and the lake API use when
    none is named: ``preferred`` (settings: serving.default_product) if it is served online,
    else the first online product; None when nothing is served online."""
    online = online_products(products)
    return next((p for p in online if p.name == preferred), online[0] if online else None)


SKELETON_HEAD = """\
# {name}: a data product declaration (schema: lakehouse_assets/products/spec.py). It starts as
# a working example over the shop's gold tables: change the label, features and candidates.
type: {component}
attributes:
  name: {name}
  description: >-
    What the model predicts, for whom, and who acts on it.
  owners: [team:ml]
"""
SKELETON_TAIL = """\
  serving:
    batch: {{cron: "0 6 * * *"}}
"""
# what differs per task: a working example over the shop's gold marts
SKELETONS = {
    "binary_classification": """\
  task: binary_classification
  entity:
    keys: [order_id]
    event_time: order_ts
  label:
    table: fct_orders            # a gold dbt mart with the label column documented
    column: returned_within_30d
    known_at: label_known_at
    window_days: 30
  features:
    views:                       # or `service: <feature service>`
      - customer_daily_features:orders_90d
      - customer_daily_features:returns_90d
      - customer_daily_features:segment
    request: [amount, discount]
  candidates:
    - family: logistic_regression
      search: {{C: [0.1, 1.0]}}
    - family: lightgbm
      search: {{num_leaves: [15]}}
  gate:
    primary_metric: roc_auc
    margin: 0.005
    guards: {{log_loss: 0.01}}
  decision_threshold: 0.5
""",
    "regression": """\
  task: regression
  entity:
    keys: [product_id]
    event_time: forecast_ts
  label:
    table: product_demand_daily
    column: units_next_7d
    known_at: label_known_at
    window_days: 7
  features:
    views:
      - product_daily_features:units_sold_90d
      - product_daily_features:price
    request: [units_last_7d]
  candidates:
    - family: poisson_glm
      search: {{alpha: [0.1, 1.0]}}
  gate:
    primary_metric: mae
    margin: 0.01
""",
}


def skeleton(name: str, task: str) -> str:
    """The YAML of a new, valid declaration of ``task`` named ``name``, to edit."""
    text = (SKELETON_HEAD + SKELETONS[task] + SKELETON_TAIL).format(name=name, component=COMPONENT_TYPE)
    try:
        ProductSpec.model_validate(yaml.safe_load(text)["attributes"])
    except ValidationError as error:
        raise DeclarationError(f"{name}/{DECLARATION}", "name", error.errors()[0]["msg"]) from None
    return text
