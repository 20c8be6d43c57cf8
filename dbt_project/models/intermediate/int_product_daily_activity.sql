-- A dense product x day grid with units sold (by order day) and units returned (by return day).
with days as (
    select day from {{ ref('int_calendar_days') }}
),

sold as (
    select
        i.product_id,
        o.order_date as day,
        sum(i.quantity) as units_sold
    from {{ ref('stg_order_items') }} as i
    inner join {{ ref('stg_orders') }} as o using (order_id)
    group by all
),

returned as (
    select
        i.product_id,
        cast(r.return_ts as date) as day,
        sum(i.quantity) as units_returned
    from {{ ref('stg_returns') }} as r
    inner join {{ ref('stg_order_items') }} as i using (order_id)
    group by all
)

select
    p.product_id,
    d.day,
    cast(coalesce(s.units_sold, 0) as bigint) as units_sold,
    cast(coalesce(r.units_returned, 0) as bigint) as units_returned
from {{ ref('stg_products') }} as p
cross join {{ ref('int_data_horizon') }} as h
inner join days as d on d.day >= least(cast(p.created_at as date), h.first_date)
left join sold as s on p.product_id = s.product_id and d.day = s.day
left join returned as r on p.product_id = r.product_id and d.day = r.day
