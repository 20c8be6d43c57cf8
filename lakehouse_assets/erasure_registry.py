"""The GDPR erasure registry: which customers (and their orders) were erased. Governance writes
it (``governance/erasure.py``); lower layers read it, e.g. bronze's reconciliation, which must
not count an erased change event as lost."""

from __future__ import annotations

from lakehouse_assets.engine import LakeEngine
from lakehouse_assets.tables import ERASED_ORDERS_TABLE, ERASURES_TABLE

KEY = "customer_id"
ORDER_KEY = "order_id"  # tables without a customer id are erased through the customer's orders


def erased_keys(engine: LakeEngine) -> dict[str, list[int]]:
    """The erased customer ids and their order ids, as recorded."""
    keys: dict[str, list[int]] = {KEY: [], ORDER_KEY: []}
    for table, column in ((ERASURES_TABLE, KEY), (ERASED_ORDERS_TABLE, ORDER_KEY)):
        if engine.exists(table):
            keys[column] = engine.read(table, columns=[column])[column].to_list()
    return keys
