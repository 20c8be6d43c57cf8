-- A dense product x day grid with units sold (by order day) and units returned (by return day).
with days as (
    select cast(day as date) as day
    from {{ ref('int_data_horizon') }},
        generate_series(first_date, as_of_date, interval 1 day) as t(day)
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
join days as d on d.day >= least(cast(p.created_at as date), (select first_date from {{ ref('int_data_horizon') }}))
left join sold as s on s.product_id = p.product_id and s.day = d.day
left join returned as r on r.product_id = p.product_id and r.day = d.day
