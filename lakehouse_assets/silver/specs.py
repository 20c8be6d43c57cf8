"""The silver tables of the shop, declared as apply-changes specs. Add an entity here."""

from lakehouse_assets.silver.apply_changes import ApplyChangesSpec, Expectation
from lakehouse_assets.sources.cdc import bronze_table_name
from lakehouse_assets.sources.schema import SOURCE_TABLES_BY_NAME


def from_source_table(name: str, **options) -> ApplyChangesSpec:
    """A spec over a CDC bronze table: key and columns come from the source table's schema."""
    table = SOURCE_TABLES_BY_NAME[name]
    return ApplyChangesSpec(
        name=name,
        source=bronze_table_name(table),
        keys=(table.key,),
        columns=tuple(table.column_names),
        **options,
    )


SILVER_SPECS: tuple[ApplyChangesSpec, ...] = (
    from_source_table(
        "orders",
        description="Current state of every order (SCD1): status lifecycle applied, cancelled "
        "orders removed.",
        expectations=(
            Expectation("non_negative_amount", "amount >= 0", "drop"),
            Expectation("known_status", "status IN ('placed', 'shipped', 'delivered', 'returned')", "drop"),
            Expectation("has_customer", "customer_id IS NOT NULL", "fail"),
            Expectation("discount_in_range", "discount BETWEEN 0 AND 1", "warn"),
        ),
        zorder_by=("customer_id",),
    ),
    from_source_table(
        "order_items",
        description="Current order lines (SCD1); lines of cancelled orders removed.",
        expectations=(
            Expectation("positive_quantity", "quantity > 0", "drop"),
            Expectation("non_negative_unit_price", "unit_price >= 0", "drop"),
        ),
        zorder_by=("order_id",),
    ),
    from_source_table(
        "products",
        description="Current product catalogue (SCD1) with the latest price.",
        expectations=(
            Expectation("positive_price", "price > 0", "drop"),
            Expectation("has_category", "category IS NOT NULL", "warn"),
        ),
    ),
    from_source_table(
        "returns",
        description="Returns (SCD1), one row per return.",
        expectations=(
            Expectation("non_negative_refund", "refund_amount >= 0", "drop"),
            Expectation("has_order", "order_id IS NOT NULL", "fail"),
        ),
    ),
    from_source_table(
        "customers",
        scd_type=2,
        track_history_columns=("name", "email", "city", "country", "segment"),
        description="Customer history (SCD2): a version per change of name, e-mail, address or "
        "segment with valid_from / valid_to / is_current; a GDPR erasure closes the open version.",
        expectations=(Expectation("email_has_at_sign", "email LIKE '%@%'", "warn"),),
    ),
)
