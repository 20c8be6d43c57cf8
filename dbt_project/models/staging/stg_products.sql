select
    product_id,
    name,
    category,
    price,
    case when price < 25 then 'low' when price < 150 then 'mid' else 'high' end as price_band,
    created_at
from {{ source('silver', 'products') }}
