-- description: Orders, revenue and returns per product category (the order's main category)
-- description: and day: which categories drive returns.
-- param days = 90: days of history, counted back from the newest order
-- alert category_return_rate_spike: orders >= 10 AND return_rate > 0.6
WITH horizon AS (SELECT MAX(order_date) AS newest FROM gold.fct_orders)
SELECT
    order_date,
    COALESCE(main_category, 'unknown') AS category,
    COUNT(*) AS orders,
    ROUND(SUM(amount), 2) AS revenue,
    COUNT(return_ts) AS returns,
    ROUND(COUNT(return_ts) / COUNT(*), 4) AS return_rate
FROM gold.fct_orders, horizon
WHERE order_date > newest - CAST($days AS INTEGER)
GROUP BY ALL
ORDER BY order_date, category
