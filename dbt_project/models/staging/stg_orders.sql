select
    order_id,
    customer_id,
    status,
    order_ts,
    cast(order_ts as date) as order_date,
    amount,
    discount,
    updated_at
from {{ source('silver', 'orders') }}
