-- description: The demand forecast per product category: units expected over the next 7 days
-- description: (the demand_forecast champion's newest batch scores) beside the units of the last 7.
WITH newest AS (SELECT MAX(forecast_ts) AS forecast_ts FROM gold.demand_forecast_scores)
SELECT
    COALESCE(f.category, 'unknown') AS category,
    ROUND(SUM(s.prediction), 1) AS forecast_units_next_7d,
    SUM(d.units_last_7d) AS units_last_7d,
    COUNT(*) AS products,
    MAX(s.model_version) AS model_version,
    MAX(s.forecast_ts) AS forecast_ts
FROM gold.demand_forecast_scores AS s
INNER JOIN newest ON s.forecast_ts = newest.forecast_ts
INNER JOIN gold.product_demand_daily AS d
    ON s.product_id = d.product_id AND s.forecast_ts = d.forecast_ts
LEFT JOIN gold.product_daily_features AS f
    ON s.product_id = f.product_id AND s.forecast_ts = f.feature_ts
GROUP BY ALL
ORDER BY forecast_units_next_7d DESC
