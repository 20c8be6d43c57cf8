-- Product features as of the end of each day: units sold and returned over 30/90 days and the
-- 90-day return rate (returns counted when received), the same rate over the product's whole
-- category (steadier for products with few sales), with category and price band.
with windows as (
    select
        product_id,
        day,
        cast(sum(units_sold) over w30 as bigint) as units_sold_30d,
        cast(sum(units_sold) over w90 as bigint) as units_sold_90d,
        cast(sum(units_returned) over w90 as bigint) as units_returned_90d
    from {{ ref('int_product_daily_activity') }}
    window
        w30 as (partition by product_id order by day rows between 29 preceding and current row),
        w90 as (partition by product_id order by day rows between 89 preceding and current row)
),

category_days as (
    select
        p.category,
        a.day,
        sum(a.units_sold) as units_sold,
        sum(a.units_returned) as units_returned
    from {{ ref('int_product_daily_activity') }} as a
    inner join {{ ref('stg_products') }} as p using (product_id)
    group by p.category, a.day
),

-- days of a category are contiguous (every product's grid runs to the horizon), so 90 rows
-- are 90 days
category_windows as (
    select
        category,
        day,
        sum(units_sold) over w90 as units_sold_90d,
        sum(units_returned) over w90 as units_returned_90d
    from category_days
    window
        w90 as (partition by category order by day rows between 89 preceding and current row)
)

select
    w.product_id,
    w.day as feature_date,
    cast(w.day + interval 1 day as timestamp) as feature_ts,
    p.category,
    p.price,
    p.price_band,
    w.units_sold_30d,
    w.units_sold_90d,
    w.units_returned_90d,
    case when w.units_sold_90d > 0 then w.units_returned_90d / w.units_sold_90d end
        as return_rate_90d,
    case when c.units_sold_90d > 0 then c.units_returned_90d / c.units_sold_90d end
        as category_return_rate_90d
from windows as w
inner join {{ ref('stg_products') }} as p using (product_id)
left join category_windows as c on p.category = c.category and w.day = c.day
