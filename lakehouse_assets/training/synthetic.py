"""A synthetic training set with a known signal, in the training_set table's columns: for tests
and benchmarks (the demo trains on the simulated shop's real training set)."""

from datetime import datetime, timedelta

import numpy as np
import polars as pl

LABEL = "returned_within_30d"  # the return-risk label column of gold fct_orders


def synthetic_training_set(orders: int = 1500, days: int = 90, seed: int = 3) -> pl.DataFrame:
    """Returns depend on segment, discount, amount and the basket's category (as in the
    simulator), plus noise."""
    rng = np.random.default_rng(seed)
    segment = rng.choice(["regular", "premium", "bargain"], orders, p=[0.6, 0.25, 0.15])
    discount = rng.choice([0.0, 0.1, 0.2], orders, p=[0.7, 0.2, 0.1])
    amount = rng.gamma(2.0, 60.0, orders)
    orders_90d = rng.poisson(3, orders).astype(float)
    spend_90d = orders_90d * rng.gamma(2.0, 50.0, orders)
    lines = rng.integers(1, 5, orders)
    category_rate = rng.choice([0.03, 0.06, 0.09, 0.22], orders)  # the basket's riskiest category
    product_rate = np.clip(category_rate + rng.normal(0, 0.05, orders), 0, 1)
    logit = (
        -2.4
        + 1.2 * (segment == "bargain")
        - 0.8 * (segment == "premium")
        + 5 * discount
        + 0.004 * amount
        + 8 * (category_rate - 0.08)
    )
    returned = rng.random(orders) < 1 / (1 + np.exp(-logit))
    start = datetime(2026, 1, 1)
    order_ts = sorted(start + timedelta(minutes=int(m)) for m in rng.integers(0, days * 1440, orders))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(orders_90d > 0, amount / (spend_90d / orders_90d), np.nan)
    return pl.DataFrame(
        {
            "order_id": np.arange(1, orders + 1),
            "customer_id": rng.integers(1, 300, orders),
            "order_ts": order_ts,
            "amount": amount,
            "discount": discount,
            LABEL: returned,
            "orders_7d": rng.poisson(0.5, orders).astype(float),
            "orders_30d": rng.poisson(1.5, orders).astype(float),
            "orders_90d": orders_90d,
            "spend_30d": spend_90d / 3,
            "spend_90d": spend_90d,
            "returns_90d": rng.poisson(0.3, orders).astype(float),
            "avg_discount_90d": rng.random(orders) * 0.1,
            "days_since_last_order": rng.integers(0, 60, orders).astype(float),
            "tenure_days": rng.integers(0, 700, orders).astype(float),
            "segment": segment,
            "amount_vs_avg_basket": ratio,
            "discount_share": discount,
            "basket_lines": lines.astype(float),
            "basket_units": (lines + rng.poisson(0.3, orders)) * 1.0,
            "basket_max_return_rate_90d": product_rate,
            "basket_max_category_return_rate_90d": category_rate,
        }
    ).with_columns(pl.col("amount_vs_avg_basket").fill_nan(None))
