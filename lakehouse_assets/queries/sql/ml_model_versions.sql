-- description: Which model version held each alias over time (ML view): promotions,
-- description: challengers and rollbacks from the registry's alias history.
SELECT model_name, alias, to_version AS version, from_version, changed_at, changed_by, reason
FROM ml.alias_history
WHERE to_version IS NOT NULL
ORDER BY changed_at
