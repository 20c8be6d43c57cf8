-- One row per order: basket size and its main category, the category with the largest share
-- of the order's value (the sum of its lines' quantity x unit price; ties broken by category
-- name, so every engine picks the same one).
with lines as (
    select
        i.order_id,
        i.product_id,
        i.quantity,
        p.category,
        i.quantity * i.unit_price as line_value
    from {{ ref('stg_order_items') }} as i
    left join {{ ref('stg_products') }} as p on i.product_id = p.product_id
),

category_values as (
    select
        order_id,
        category,
        sum(line_value) as category_value
    from lines
    group by order_id, category
),

main_categories as (
    select
        order_id,
        category as main_category,
        row_number() over (
            partition by order_id order by category_value desc, category asc
        ) as value_rank
    from category_values
),

baskets as (
    select
        order_id,
        cast(sum(quantity) as bigint) as n_items,
        count(*) as n_lines,
        count(distinct product_id) as n_products
    from lines
    group by order_id
)

select
    b.order_id,
    b.n_items,
    b.n_lines,
    b.n_products,
    m.main_category
from baskets as b
inner join main_categories as m on b.order_id = m.order_id and m.value_rank = 1
