-- description: Rows held back in quarantine per table and reason (data view): silver's dropped
-- description: change events by the expectations they broke, and landing-zone records by reason.
-- alert quarantine_growing: quarantined_rows > 1000
SELECT "table", expectations AS reason, COUNT(*) AS quarantined_rows,
       MAX(_quarantined_at) AS last_quarantined_at
FROM silver.quarantine
GROUP BY ALL
UNION ALL
SELECT 'bronze/' || dataset, split_part(reason, ':', 1), COUNT(*), MAX(_ingested_at)
FROM bronze.landing_quarantine
GROUP BY ALL
ORDER BY quarantined_rows DESC
