-- One row per order with the supervised label "returned within 30 days of the order" and the
-- time the label became known: at the return if it came within 30 days, else 30 days after the
-- order. Orders younger than 30 days without a return have no label yet (NULL).
with first_returns as (
    select
        order_id,
        min(return_ts) as return_ts
    from {{ ref('stg_returns') }}
    group by order_id
),

labelled as (
    select
        o.*,
        r.return_ts,
        o.order_ts + interval 30 day as label_deadline,
        h.as_of_ts
    from {{ ref('stg_orders') }} as o
    left join first_returns as r using (order_id)
    cross join {{ ref('int_data_horizon') }} as h
)

select
    l.order_id,
    l.customer_id,
    l.order_ts,
    l.order_date,
    l.status,
    l.amount,
    l.discount,
    coalesce(b.n_items, 0) as n_items,
    coalesce(b.n_lines, 0) as n_lines,
    b.main_category,
    l.return_ts,
    case
        when l.return_ts <= l.label_deadline then true
        when l.label_deadline <= l.as_of_ts then false
    end as returned_within_30d,
    case
        when l.return_ts <= l.label_deadline then l.return_ts
        when l.label_deadline <= l.as_of_ts then l.label_deadline
    end as label_known_at
from labelled as l
left join {{ ref('int_order_baskets') }} as b using (order_id)
