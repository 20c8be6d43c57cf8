-- One row per order: basket size and the category carrying most of its value.
with lines as (
    select
        i.order_id,
        i.product_id,
        i.quantity,
        i.quantity * i.unit_price as line_value,
        p.category
    from {{ ref('stg_order_items') }} as i
    left join {{ ref('stg_products') }} as p using (product_id)
)
select
    order_id,
    sum(quantity) as n_items,
    count(*) as n_lines,
    count(distinct product_id) as n_products,
    arg_max(category, line_value) as main_category
from lines
group by order_id
