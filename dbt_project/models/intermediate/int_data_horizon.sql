-- The time up to which the lakehouse has seen the shop's activity (one row).
select
    max(ts) as as_of_ts,
    cast(max(ts) as date) as as_of_date,
    min(cast(first_ts as date)) as first_date
from (
    select
        greatest(order_ts, updated_at) as ts,
        order_ts as first_ts
    from {{ ref('stg_orders') }}
    union all
    select
        return_ts as ts,
        return_ts as first_ts
    from {{ ref('stg_returns') }}
)
