-- What is where: rows per table, time range, and the sync's position.
SELECT 'event_logs' AS table_name, COUNT(*) AS row_count, MIN(timestamp) AS first_event, MAX(timestamp) AS last_event, CAST(NULL AS TIMESTAMP) AS last_loaded
FROM event_logs
UNION ALL
SELECT 'amplitude_events', COUNT(*), MIN(timestamp), MAX(timestamp), MAX(loaded_at) FROM amplitude_events
UNION ALL
-- Outcomes from their counts (kept forever, a row per run, bucket and event), not the row-level
-- table: that one is partitioned and requires a partition filter. Event times to the quarter hour.
SELECT 'ampkit_deliveries', COALESCE(CAST(SUM(row_count) AS INT64), 0), MIN(bucket), MAX(bucket), MAX(loaded_at) FROM ampkit_outcome_counts
UNION ALL
SELECT 'ampkit_dead_letters', COUNT(*), MIN(event_time), MAX(event_time), MAX(loaded_at) FROM ampkit_dead_letters
