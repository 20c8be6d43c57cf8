-- One row per order: basket size and the category carrying most of its value (ties broken by
-- category name, so every engine picks the same one).
with lines as (
    select
        i.order_id,
        i.product_id,
        i.quantity,
        i.quantity * i.unit_price as line_value,
        p.category
    from {{ ref('stg_order_items') }} as i
    left join {{ ref('stg_products') }} as p using (product_id)
),
ranked as (
    select
        *,
        row_number() over (
            partition by order_id order by line_value desc, category
        ) as value_rank
    from lines
)
select
    order_id,
    cast(sum(quantity) as bigint) as n_items,
    count(*) as n_lines,
    count(distinct product_id) as n_products,
    max(case when value_rank = 1 then category end) as main_category
from ranked
group by order_id
