"""Pipeline freshness: the gold marts and the feature outputs must have been updated within a
day (plus slack for the 02:00 run); a sensor evaluates the checks."""

import warnings
from datetime import timedelta

from dagster import AssetKey, build_last_update_freshness_checks, build_sensor_for_freshness_checks

FRESH_ASSETS = [AssetKey(name) for name in ("fct_orders", "customer_daily_features",
                                            "product_daily_features", "online_features",
                                            "training_set")]
with warnings.catch_warnings():  # superseded by FreshnessPolicy, which the UI shows as health,
    warnings.simplefilter("ignore")  # not as checks; the checks are what the sensors and CLI read
    FRESHNESS_CHECKS = build_last_update_freshness_checks(assets=FRESH_ASSETS,
                                                          lower_bound_delta=timedelta(hours=26))
    freshness_sensor = build_sensor_for_freshness_checks(freshness_checks=FRESHNESS_CHECKS,
                                                         name="pipeline_freshness")
