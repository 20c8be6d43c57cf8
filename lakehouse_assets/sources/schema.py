"""Tables of the shop's operational database: one description used by the simulator's DDL, the
CDC triggers and the bronze Delta schemas, so the three can never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

ColumnType = Literal["int", "float", "str", "ts"]

SQLITE_TYPES: dict[ColumnType, str] = {"int": "INTEGER", "float": "REAL", "str": "TEXT", "ts": "TEXT"}
ARROW_TYPES: dict[ColumnType, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "str": pa.string(),
    "ts": pa.timestamp("us"),
}


@dataclass(frozen=True)
class SourceTable:
    """A table of the operational database: its columns and types and its primary key."""

    name: str
    key: str
    columns: tuple[tuple[str, ColumnType], ...]

    @property
    def change_table(self) -> str:
        """The SQLite table the CDC triggers append this table's change events to."""
        return f"_cdc_{self.name}"

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def arrow_fields(self) -> list[pa.Field]:
        return [pa.field(name, ARROW_TYPES[kind]) for name, kind in self.columns]


SOURCE_TABLES: tuple[SourceTable, ...] = (
    SourceTable(
        "customers",
        "customer_id",
        (
            ("customer_id", "int"),
            ("name", "str"),
            ("email", "str"),
            ("city", "str"),
            ("country", "str"),
            ("segment", "str"),
            ("created_at", "ts"),
            ("updated_at", "ts"),
        ),
    ),
    SourceTable(
        "products",
        "product_id",
        (
            ("product_id", "int"),
            ("name", "str"),
            ("category", "str"),
            ("price", "float"),
            ("created_at", "ts"),
            ("updated_at", "ts"),
        ),
    ),
    SourceTable(
        "orders",
        "order_id",
        (
            ("order_id", "int"),
            ("customer_id", "int"),
            ("status", "str"),
            ("order_ts", "ts"),
            ("amount", "float"),
            ("discount", "float"),
            ("updated_at", "ts"),
        ),
    ),
    SourceTable(
        "order_items",
        "order_item_id",
        (
            ("order_item_id", "int"),
            ("order_id", "int"),
            ("product_id", "int"),
            ("quantity", "int"),
            ("unit_price", "float"),
            ("discount", "float"),
        ),
    ),
    SourceTable(
        "returns",
        "return_id",
        (
            ("return_id", "int"),
            ("order_id", "int"),
            ("reason", "str"),
            ("return_ts", "ts"),
            ("refund_amount", "float"),
        ),
    ),
)

SOURCE_TABLES_BY_NAME = {t.name: t for t in SOURCE_TABLES}

# Landing-zone event files: the payments the payment provider drops for each order.
PAYMENT_COLUMNS: tuple[tuple[str, ColumnType], ...] = (
    ("payment_id", "str"),
    ("order_id", "int"),
    ("amount", "float"),
    ("method", "str"),
    ("paid_at", "ts"),
)
PAYMENT_KEYS = ("payment_id", "order_id")

# What each column means, written once: bronze, silver, gold, feature and inference tables that
# carry a column of the same name share its description (a table-specific entry wins). The
# catalog and the assets' column schemas read it; ``pii`` columns identify a person.
COLUMN_GLOSSARY: dict[str, str] = {
    "customer_id": "Customer key of the shop's database.",
    "product_id": "Product key of the shop's database.",
    "order_id": "Order key of the shop's database.",
    "order_item_id": "Order line key of the shop's database.",
    "return_id": "Return key of the shop's database.",
    "payment_id": "Payment provider's id of the payment.",
    "email": "Customer's e-mail address.",
    "city": "Customer's city (address).",
    "country": "Customer's country (address).",
    "segment": "Customer segment (e.g. regular, bargain hunter, premium).",
    "category": "Product category.",
    "price": "Current list price of the product.",
    "status": "Order status: placed, shipped, delivered or returned.",
    "order_ts": "When the order was placed.",
    "amount": "Order amount after discount.",
    "discount": "Discount share applied (0-1).",
    "quantity": "Units of the product in the line.",
    "unit_price": "Price of one unit when ordered.",
    "reason": "Reason given for the return.",
    "return_ts": "When the return was received.",
    "refund_amount": "Amount refunded.",
    "created_at": "When the source row was created.",
    "updated_at": "When the source row last changed.",
    "method": "Payment method.",
    "paid_at": "When the payment was made.",
    "_seq": "Source change sequence (commit order) of the event that produced the row.",
    "_op": "Change operation: insert, update or delete.",
    "_commit_ts": "When the change was committed in the source.",
    "_ingested_at": "When the row reached bronze.",
    "_source": "Where the row was captured from.",
    "_batch_id": "Dagster run that wrote the row.",
    "valid_from": "SCD2: when this version of the row became current.",
    "valid_to": "SCD2: when this version stopped being current (NULL: still current).",
    "is_current": "SCD2: whether this is the current version.",
    "_last_seq": "SCD2: sequence of the last event applied to this version.",
    "_end_seq": "SCD2: sequence of the event that closed this version (NULL: open).",
    "request_id": "Scoring request id (client's or generated).",
    "model_version": "Registered model version that scored the request.",
    "prediction": "The model's answer: a classifier's P(positive), a regressor's value.",
    "product": "Data product (registered model) the row belongs to.",
    "latency_ms": "Time to score the request, in milliseconds.",
}
TABLE_COLUMN_GLOSSARY: dict[str, dict[str, str]] = {
    "customers": {"name": "Customer's full name."},
    "products": {"name": "Product name."},
}
# Columns that identify a person wherever they appear, and per table (a customer's name; a
# product's name is not personal).
PII_COLUMNS = frozenset({"email", "city"})
TABLE_PII_COLUMNS: dict[str, frozenset[str]] = {"customers": frozenset({"name"})}


def describe_column(table: str, column: str) -> str:
    """The glossary description of a column of a table named ``table`` (any layer)."""
    return TABLE_COLUMN_GLOSSARY.get(table, {}).get(column) or COLUMN_GLOSSARY.get(column, "")


def is_pii(table: str, column: str) -> bool:
    """Whether a column holds personal data (tagged in the catalog, erased under GDPR)."""
    return column in PII_COLUMNS or column in TABLE_PII_COLUMNS.get(table, frozenset())
