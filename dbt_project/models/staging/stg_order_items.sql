select
    order_item_id,
    order_id,
    product_id,
    quantity,
    unit_price,
    discount
from {{ source('silver', 'order_items') }}
