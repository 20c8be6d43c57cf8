-- description: Scoring requests and latency per minute (ML view), from the inference log.
-- alert slow_serving: requests >= 50 AND p99_ms > 50
SELECT
    date_trunc('minute', served_at) AS minute,
    COUNT(*) AS requests,
    ROUND(quantile_cont(latency_ms, 0.5), 3) AS p50_ms,
    ROUND(quantile_cont(latency_ms, 0.99), 3) AS p99_ms,
    COUNT(DISTINCT model_version) AS model_versions
FROM serving.inference_log
GROUP BY ALL
ORDER BY minute
