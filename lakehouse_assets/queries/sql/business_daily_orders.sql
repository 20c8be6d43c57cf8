-- description: Orders, revenue and returns per day (business view), from the gold order facts.
-- param days = 90: days of history, counted back from the newest order
-- alert return_rate_spike: orders >= 20 AND return_rate > 0.5
WITH horizon AS (SELECT MAX(order_date) AS newest FROM gold.fct_orders)
SELECT
    order_date,
    COUNT(*) AS orders,
    ROUND(SUM(amount), 2) AS revenue,
    COUNT(return_ts) AS returns,
    ROUND(COUNT(return_ts) / COUNT(*), 4) AS return_rate
FROM gold.fct_orders, horizon
WHERE order_date > newest - CAST($days AS INTEGER)
GROUP BY order_date
ORDER BY order_date
