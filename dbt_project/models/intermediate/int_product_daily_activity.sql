-- A dense product x day grid with units sold (by order day) and units returned (by return day).
with days as (
    select day from {{ ref('int_calendar_days') }}
),
sold as (
    select i.product_id, o.order_date as day, sum(i.quantity) as units_sold
    from {{ ref('stg_order_items') }} as i
    join {{ ref('stg_orders') }} as o using (order_id)
    group by all
),
returned as (
    select i.product_id, cast(r.return_ts as date) as day, sum(i.quantity) as units_returned
    from {{ ref('stg_returns') }} as r
    join {{ ref('stg_order_items') }} as i using (order_id)
    group by all
)
select
    p.product_id,
    d.day,
    cast(coalesce(s.units_sold, 0) as bigint) as units_sold,
    cast(coalesce(r.units_returned, 0) as bigint) as units_returned
from {{ ref('stg_products') }} as p
cross join {{ ref('int_data_horizon') }} as h
join days as d on d.day >= least(cast(p.created_at as date), h.first_date)
left join sold as s on s.product_id = p.product_id and s.day = d.day
left join returned as r on r.product_id = p.product_id and r.day = d.day
