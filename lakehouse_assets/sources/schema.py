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
