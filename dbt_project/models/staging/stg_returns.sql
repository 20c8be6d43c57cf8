select
    return_id,
    order_id,
    reason,
    return_ts,
    refund_amount
from {{ source('silver', 'returns') }}
