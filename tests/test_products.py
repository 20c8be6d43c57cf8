"""Data product declarations: the built-in ones resolve, every class of mistake is an error naming
the file, the field and what is allowed (also from `dagster definitions validate`), a new
product's skeleton is valid, and a product declared in a user's folder becomes assets, checks,
jobs and schedules with no Python written for it."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from lakehouse_assets.cli import main
from lakehouse_assets.definitions import build_definitions
from lakehouse_assets.product_declarations import (
    COMPONENT_TYPE,
    DeclarationError,
    load_products,
    skeleton,
)
from lakehouse_assets.settings import LakehouseSettings

# A third product, declared the way a user declares one: which orders come back, from the
# basket's size and the customer's history only, scored online and in batch.
BASKET_RETURN = {
    "name": "basket_return",
    "description": "Whether an order comes back, from its basket size and the customer's history.",
    "owners": ["team:growth", "ana@example.com"],
    "task": "binary_classification",
    "entity": {"keys": ["order_id"], "event_time": "order_ts"},
    "label": {
        "table": "fct_orders",
        "column": "returned_within_30d",
        "known_at": "label_known_at",
        "window_days": 30,
    },
    "features": {
        "views": [
            "customer_daily_features:orders_90d",
            "customer_daily_features:returns_90d",
            "customer_daily_features:segment",
        ],
        "request": ["n_items", "n_lines", "amount"],
    },
    "candidates": [{"family": "logistic_regression", "search": {"C": [1.0]}}],
    "gate": {"primary_metric": "pr_auc", "margin": 0.0, "guards": {"brier": 0.05}},
    "decision_threshold": 0.5,
    "serving": {"online": True, "batch": {"cron": "30 5 * * *"}, "request": {"amount": {"min": 0}}},
}


def declare(folder: Path, attributes: dict, name: str | None = None) -> Path:
    """Write a declaration file for ``attributes`` under ``folder`` and return its path."""
    path = folder / (name or str(attributes.get("name"))) / "defs.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"type": COMPONENT_TYPE, "attributes": attributes}, sort_keys=False))
    return path


def with_changes(base: dict, **changes) -> dict:
    """``base`` with top-level fields replaced; nested dicts merged one level deep."""
    out = json.loads(json.dumps(base))
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def test_the_built_in_products_resolve_to_their_model_inputs():
    products = {p.name: p for p in load_products(LakehouseSettings())}
    assert set(products) == {"return_risk", "demand_forecast"}
    risk, demand = products["return_risk"], products["demand_forecast"]
    assert risk.spec.task == "binary_classification" and demand.spec.task == "regression"
    assert risk.categorical == ("segment",) and "basket_max_category_return_rate_90d" in risk.numeric
    assert risk.feature_service_version == "2" and risk.on_demand == ("order_request_features",)
    assert risk.line_entity == "product_id" and risk.spec.serving.mode == "online"
    assert demand.features == [
        "units_last_7d",
        "units_last_28d",
        "units_sold_90d",
        "return_rate_90d",
        "price",
        "price_band",
        "category",
    ]
    assert demand.spec.serving.mode == "batch"


BAD = [
    (
        {"features": {"views": ["customer_daily_features:nope"], "request": []}},
        "features.views",
        "unknown feature 'nope' (features of customer_daily_features: avg_discount_90d",
    ),
    (
        {"features": {"views": ["shopper_features:orders_90d"], "request": []}},
        "features.views",
        "no feature view 'shopper_features' (allowed: customer_daily_features",
    ),
    (
        {"features": {"service": "churn_v9", "views": []}},
        "features.service",
        "'churn_v9' is not a feature service (allowed: return_risk_v1, return_risk_v2)",
    ),
    (
        {"label": {"table": "fct_churn"}},
        "label.table",
        "'fct_churn' is not a gold mart (allowed: customer_daily_features",
    ),
    (
        {"label": {"column": "churned"}},
        "label.column",
        "['churned'] not a documented column of gold mart fct_orders",
    ),
    (
        {"task": "regression", "decision_threshold": None},
        "gate.primary_metric",
        "['pr_auc'] do not fit the task regression",
    ),
    (
        {"candidates": [{"family": "poisson_glm"}]},
        "candidates[0].family",
        "'poisson_glm' does not fit the task binary_classification (allowed: ['lightgbm', 'logistic_regr",
    ),
    (
        {"candidates": [{"family": "lightgbm", "search": {"depth": [3]}}]},
        "candidates[0].search",
        "['depth'] are not parameters of lightgbm (allowed: ['learning_rate'",
    ),
    (
        {"gate": {"primry_metric": "roc_auc"}},
        "gate.primry_metric",
        "unknown field (allowed: guards, margin, min_online_requests, primary_metric)",
    ),
    ({"split": {"holdout_fraction": "most"}}, "split.holdout_fraction", "valid number"),
    ({"decision_threshold": None}, "decision_threshold", "required for binary_classification"),
    ({"owners": ["ana"]}, "owners", "each is an e-mail address or team:<name>"),
    (
        {"monitoring": {"drift_columns": ["amount", "tenure_days"]}},
        "monitoring.drift_columns",
        "['tenure_days'] are not model inputs",
    ),
    (
        {"features": {"service": "return_risk_v2", "views": [], "request": ["amount"]}},
        "features.request",
        "on-demand view order_request_features needs request columns ['discount']",
    ),
    (
        {"features": {"service": "return_risk_v2", "views": [], "request": ["amount", "discount"]}},
        "features",
        "view product_daily_features is keyed by ['product_id']: neither a column of fct_orders",
    ),
    (
        {"serving": {"online": True, "request": {"segment": {"min": 0}}}},
        "serving.request",
        "['segment'] are not numeric request columns (allowed: amount, n_items, n_lines)",
    ),
    (
        {"serving": {"request": {"amount": {"min": 5, "max": 1}}}},
        "serving.request.amount",
        "min 5.0 is above max 1.0",
    ),
    (
        {"monitoring": {"alert_webhook_env": "growth-alerts"}},
        "monitoring.alert_webhook_env",
        "'growth-alerts' is not an environment variable name",
    ),
]


@pytest.mark.parametrize(("changes", "field", "message"), BAD, ids=[b[1] + ":" + b[2][:25] for b in BAD])
def test_each_mistake_names_the_file_the_field_and_what_is_allowed(tmp_path, changes, field, message):
    path = declare(tmp_path, with_changes(BASKET_RETURN, **changes))
    with pytest.raises(DeclarationError) as raised:
        load_products(LakehouseSettings(products_dirs=(tmp_path,)))
    error = raised.value
    assert (error.path, error.field) == (str(path), field), str(error)
    assert message in error.problem, error.problem


def test_file_level_mistakes_are_named_too(tmp_path):
    settings = LakehouseSettings(products_dirs=(tmp_path,))
    path = declare(tmp_path, BASKET_RETURN, name="other_folder")
    with pytest.raises(DeclarationError, match=r"other_folder/defs.yaml: name: 'basket_return' must match"):
        load_products(settings)
    path.write_text("type: [unclosed\n")
    with pytest.raises(DeclarationError, match="other_folder/defs.yaml: yaml: not valid YAML"):
        load_products(settings)
    path.write_text(yaml.safe_dump({"type": "my.Component", "attributes": BASKET_RETURN}))
    with pytest.raises(DeclarationError, match=f"type: must be {COMPONENT_TYPE}"):
        load_products(settings)
    path.unlink()
    declare(tmp_path, with_changes(BASKET_RETURN, name="return_risk"))
    with pytest.raises(DeclarationError, match="'return_risk' is declared already in .*products/return_risk"):
        load_products(settings)
    with pytest.raises(DeclarationError, match=r"product_overrides: \['churn'\] name no product"):
        load_products(LakehouseSettings(product_overrides={"churn": {"seed": 1}}))
    with pytest.raises(DeclarationError, match="products_dirs: is not a folder"):
        load_products(LakehouseSettings(products_dirs=(tmp_path / "missing",)))


def test_a_bad_declaration_fails_dagster_definitions_validate_with_the_named_error(tmp_path):
    path = declare(tmp_path, with_changes(BASKET_RETURN, label={"column": "churned"}))
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "DAGSTER_HOME": str(tmp_path),
            "LAKEHOUSE_PRODUCTS_DIRS": json.dumps([str(tmp_path)]),
        },
    )
    assert result.returncode != 0
    assert f"{path}: label.column: ['churned'] not a documented column of gold mart fct_orders" in (
        result.stdout + result.stderr
    )


def test_a_declared_product_becomes_assets_checks_jobs_and_a_schedule(tmp_path):
    declare(tmp_path, BASKET_RETURN)
    defs = build_definitions(LakehouseSettings(home=tmp_path / "home", products_dirs=(tmp_path,)))
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    for stage in ("training_set", "challenger", "evaluation", "champion", "batch_scores"):
        spec = specs[f"basket_return_{stage}"]
        assert spec.group_name == "basket_return" and spec.owners == ["team:growth", "ana@example.com"]
        assert spec.description and spec.kinds
    deps = {d.asset_key.to_user_string() for d in specs["basket_return_training_set"].deps}
    assert {"fct_orders", "customer_daily_features", "feature_registry"} <= deps
    checks = {(k.asset_key.to_user_string(), k.name) for k in defs.resolve_asset_graph().asset_check_keys}
    assert ("basket_return_evaluation", "promotion_gate") in checks
    assert ("basket_return_training_set", "freshness_check") in checks
    assert defs.resolve_job_def("basket_return_retrain_job")
    assert defs.resolve_schedule_def("basket_return_batch_scoring").cron_schedule == "30 5 * * *"
    # served online beside return_risk: its own monitors, quality job and sensors
    for monitor in ("feature_drift", "prediction_drift", "model_quality", "online_comparison"):
        assert specs[f"basket_return_{monitor}"].group_name == "monitoring"
        assert specs[monitor].group_name == "monitoring"  # return_risk's keep their names
    assert defs.resolve_job_def("basket_return_model_quality_job")
    sensors = (
        {s.name for s in defs.resolve_all_sensor_defs()}
        if hasattr(defs, "resolve_all_sensor_defs")
        else {s.name for s in defs.sensors or []}
    )
    assert {"basket_return_retrain_on_degradation", "basket_return_label_arrival"} <= sensors
    assert {"return_risk_retrain_on_degradation", "return_risk_label_arrival"} <= sensors
    erasure = {d.asset_key.to_user_string() for d in specs["customer_erasure"].deps}
    assert "basket_return_training_set" in erasure  # erased in the same run as it is rebuilt


@pytest.mark.parametrize("task", ["binary_classification", "regression"])
def test_a_new_products_skeleton_is_a_valid_declaration(tmp_path, task):
    result = CliRunner().invoke(
        main,
        ["products", "new", "churn_risk", "--folder", str(tmp_path), "--task", task],
        env={"LAKEHOUSE_HOME": str(tmp_path / "home")},
    )
    assert result.exit_code == 0, result.output
    (product,) = load_products(LakehouseSettings(products_dirs=(tmp_path,)))[2:]
    assert (product.name, product.spec.task) == ("churn_risk", task)
    again = CliRunner().invoke(main, ["products", "new", "churn_risk", "--folder", str(tmp_path)])
    assert again.exit_code != 0 and "exists already" in again.output
    with pytest.raises(DeclarationError, match="not a product name"):
        skeleton("Churn-Risk", task)


def test_products_lists_every_product_with_its_state(tmp_path):
    declare(tmp_path, BASKET_RETURN)
    result = CliRunner().invoke(
        main,
        ["products", "--json"],
        env={
            "LAKEHOUSE_HOME": str(tmp_path / "home"),
            "LAKEHOUSE_PRODUCTS_DIRS": json.dumps([str(tmp_path)]),
        },
    )
    assert result.exit_code == 0, result.output
    rows = {row["product"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"return_risk", "demand_forecast", "basket_return"}
    assert rows["return_risk"]["serving"] == "online" and rows["demand_forecast"]["serving"] == "batch"
    assert rows["basket_return"]["champion"] is None and rows["basket_return"]["last_trained"] is None
    assert rows["basket_return"]["declaration"].endswith("basket_return/defs.yaml")


def test_the_declaration_is_a_dagster_component(tmp_path):
    import dagster as dg

    from lakehouse_assets.components import DataProduct
    from lakehouse_assets.products.spec import ProductSpec

    assert DataProduct.get_model_cls() is ProductSpec  # the YAML's attributes schema
    path = declare(tmp_path, BASKET_RETURN)
    attributes = yaml.safe_load(path.read_text())["attributes"]
    component = DataProduct(ProductSpec.model_validate(attributes), str(path))
    built = dg.build_defs_for_component(component)
    keys = {key.to_user_string() for a in built.assets or [] for key in a.keys}  # type: ignore[union-attr]
    assert keys == {
        f"basket_return_{s}"
        for s in (
            "training_set",
            "challenger",
            "evaluation",
            "champion",
            "batch_scores",
            "batch_quality",
            "batch_drift",
        )
    }


def test_a_product_may_use_the_streamed_features(tmp_path):
    """The streamed view is a feature view like the daily ones: a declaration can list its
    features, and the training set then waits for the stream's history table."""
    declared = copy.deepcopy(BASKET_RETURN)
    declared["features"]["views"].append("customer_realtime_features:orders_24h")
    declare(tmp_path, declared)
    defs = build_definitions(LakehouseSettings(home=tmp_path / "home", products_dirs=(tmp_path,)))
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    deps = {d.asset_key.to_user_string() for d in specs["basket_return_training_set"].deps}
    assert {"customer_daily_features", "customer_realtime_features"} <= deps
    assert specs["customer_realtime_features"].group_name == "streaming"
