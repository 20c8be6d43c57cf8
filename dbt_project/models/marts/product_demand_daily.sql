-- The demand forecast's rows: one per product and day, forecast at the end of the day. The
-- label, units sold over the next 7 days, is known only once those 7 days are over (NULL until
-- then); the recent sales are the product's units over the 7 and 28 days up to the day.
with windows as (
    select
        product_id,
        day,
        sum(units_sold) over last7 as units_last_7d,
        sum(units_sold) over last28 as units_last_28d,
        sum(units_sold) over next7 as units_next_7d
    from {{ ref('int_product_daily_activity') }}
    window
        last7 as (partition by product_id order by day rows between 6 preceding and current row),
        last28 as (partition by product_id order by day rows between 27 preceding and current row),
        next7 as (partition by product_id order by day rows between 1 following and 7 following)
)

select
    w.product_id,
    w.day as forecast_date,
    cast(w.day + interval 1 day as timestamp) as forecast_ts,
    cast(w.units_last_7d as bigint) as units_last_7d,
    cast(w.units_last_28d as bigint) as units_last_28d,
    -- the grid is dense up to the horizon: 7 following rows are the next 7 days
    case
        when cast(w.day + interval 8 day as timestamp) <= h.as_of_ts
            then cast(coalesce(w.units_next_7d, 0) as bigint)
    end as units_next_7d,
    case
        when cast(w.day + interval 8 day as timestamp) <= h.as_of_ts
            then cast(w.day + interval 8 day as timestamp)
    end as label_known_at
from windows as w
cross join {{ ref('int_data_horizon') }} as h
