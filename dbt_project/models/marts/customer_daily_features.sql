-- Customer features as of the end of each day (feature_ts = the next midnight): only orders
-- placed and returns received by then count, so training joins are point-in-time correct.
with windows as (
    select
        customer_id,
        day,
        cast(sum(n_orders) over w7 as bigint) as orders_7d,
        cast(sum(n_orders) over w30 as bigint) as orders_30d,
        cast(sum(n_orders) over w90 as bigint) as orders_90d,
        sum(spend) over w7 as spend_7d,
        sum(spend) over w30 as spend_30d,
        sum(spend) over w90 as spend_90d,
        cast(sum(n_returns) over w30 as bigint) as returns_30d,
        cast(sum(n_returns) over w90 as bigint) as returns_90d,
        sum(discount_sum) over w90 as discount_sum_90d,
        cast(sum(n_orders) over lifetime as bigint) as lifetime_orders,
        max(case when n_orders > 0 then day end) over lifetime as last_order_day
    from {{ ref('int_customer_daily_activity') }}
    window
        w7 as (partition by customer_id order by day rows between 6 preceding and current row),
        w30 as (partition by customer_id order by day rows between 29 preceding and current row),
        w90 as (partition by customer_id order by day rows between 89 preceding and current row),
        lifetime as (partition by customer_id order by day rows between unbounded preceding and current row)
)

select
    w.customer_id,
    w.day as feature_date,
    cast(w.day + interval 1 day as timestamp) as feature_ts,
    v.segment,
    v.city,
    v.country,
    {{ days_between('cast(v.created_at as date)', 'w.day') }} as tenure_days,
    w.orders_7d,
    w.orders_30d,
    w.orders_90d,
    round(w.spend_7d, 2) as spend_7d,
    round(w.spend_30d, 2) as spend_30d,
    round(w.spend_90d, 2) as spend_90d,
    w.returns_30d,
    w.returns_90d,
    -- rounded so both engines' float sums give the same value
    case when w.orders_90d > 0 then round(w.discount_sum_90d / w.orders_90d, 6) end
        as avg_discount_90d,
    w.lifetime_orders,
    {{ days_between('w.last_order_day', 'w.day') }} as days_since_last_order
from windows as w
-- the customer's version valid at the end of the day (none after a GDPR erasure)
inner join {{ ref('stg_customer_versions') }} as v
    on
        w.customer_id = v.customer_id
        and v.valid_from < w.day + interval 1 day
        and (v.valid_to is null or v.valid_to >= w.day + interval 1 day)
