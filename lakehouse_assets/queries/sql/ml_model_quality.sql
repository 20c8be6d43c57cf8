-- description: Holdout quality of every evaluated challenger and the champion it was compared
-- description: with (ML view), from the promotion gate's evaluations.
-- alert champion_below_floor: champion_roc_auc < 0.55
SELECT
    evaluated_at,
    model_name,
    challenger_version,
    champion_version,
    decision,
    CAST(json_extract(challenger_metrics, '$.roc_auc') AS DOUBLE) AS challenger_roc_auc,
    CAST(json_extract(champion_metrics, '$.roc_auc') AS DOUBLE) AS champion_roc_auc,
    CAST(json_extract(challenger_metrics, '$.brier') AS DOUBLE) AS challenger_brier,
    holdout_rows
FROM ml.model_evaluations
ORDER BY evaluated_at
