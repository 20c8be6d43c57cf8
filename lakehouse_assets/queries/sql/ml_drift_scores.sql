-- description: Drift per monitor run (ML view): share of drifted columns and the largest
-- description: drift score, for feature and prediction drift.
-- alert dataset_drift: dataset_drift
SELECT
    computed_at,
    monitor,
    source,
    model_version,
    ROUND(AVG(CAST(drifted AS INTEGER)), 4) AS drifted_share,
    MAX(score) AS max_score,
    BOOL_OR(dataset_drift) AS dataset_drift,
    MAX(current_rows) AS current_rows
FROM monitoring.drift_metrics
GROUP BY ALL
ORDER BY computed_at, monitor
