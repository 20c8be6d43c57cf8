-- description: Every lakehouse table with its layer, rows, Delta version and hours since its
-- description: last commit (data view), from the catalog's live table statistics.
-- param stale_hours = 48: a silver or gold table without a commit for longer is stale
-- alert stale_table: layer IN ('silver', 'gold') AND hours_since_update > $stale_hours
SELECT
    "table",
    layer,
    "rows",
    delta_version,
    last_update AS last_update_utc,
    ROUND(hours_since_update, 2) AS hours_since_update
FROM lakehouse.tables
ORDER BY layer, "table"
