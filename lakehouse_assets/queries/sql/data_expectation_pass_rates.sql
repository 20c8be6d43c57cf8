-- description: Share of change events that met each silver expectation, over all batches
-- description: (data view).
-- alert expectation_failing: rows_checked > 0 AND pass_rate < 0.95 AND action <> 'warn'
SELECT
    "table",
    expectation,
    action,
    SUM(rows_checked) AS rows_checked,
    SUM(rows_failed) AS rows_failed,
    ROUND(1 - SUM(rows_failed) / GREATEST(SUM(rows_checked), 1), 4) AS pass_rate,
    MAX(checked_at) AS last_checked_at
FROM silver.expectation_results
GROUP BY ALL
ORDER BY "table", expectation
