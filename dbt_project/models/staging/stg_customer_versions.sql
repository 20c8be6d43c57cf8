select
    customer_id,
    name,
    city,
    country,
    segment,
    created_at,
    valid_from,
    valid_to,
    is_current
from {{ source('silver', 'customers') }}
