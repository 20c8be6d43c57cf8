-- A dense customer x day grid (from the customer's first day to the horizon) with that day's
-- orders, spend, discounts and returns, so rolling windows can count rows as days.
with days as (
    select day from {{ ref('int_calendar_days') }}
),

customers as (
    select
        customer_id,
        min(cast(least(created_at, valid_from) as date)) as first_day
    from {{ ref('stg_customer_versions') }}
    group by customer_id
),

orders as (
    select
        customer_id,
        order_date as day,
        count(*) as n_orders,
        sum(amount) as spend,
        sum(discount) as discount_sum
    from {{ ref('stg_orders') }}
    group by all
),

returns as (
    select
        o.customer_id,
        cast(r.return_ts as date) as day,
        count(*) as n_returns
    from {{ ref('stg_returns') }} as r
    inner join {{ ref('stg_orders') }} as o using (order_id)
    group by all
)

select
    c.customer_id,
    d.day,
    cast(coalesce(o.n_orders, 0) as bigint) as n_orders,
    coalesce(o.spend, 0) as spend,
    coalesce(o.discount_sum, 0) as discount_sum,
    cast(coalesce(r.n_returns, 0) as bigint) as n_returns
from customers as c
inner join days as d on c.first_day <= d.day
left join orders as o on c.customer_id = o.customer_id and d.day = o.day
left join returns as r on c.customer_id = r.customer_id and d.day = r.day
