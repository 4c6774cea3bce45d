-- What is where: rows per table, time range, and the sync's position.
SELECT 'event_logs' AS table_name, COUNT(*) AS row_count, MIN(timestamp) AS first_event, MAX(timestamp) AS last_event, CAST(NULL AS TIMESTAMP) AS last_loaded
FROM event_logs
UNION ALL
SELECT 'amplitude_events', COUNT(*), MIN(timestamp), MAX(timestamp), MAX(loaded_at) FROM amplitude_events
UNION ALL
SELECT 'ampkit_deliveries', COUNT(*), MIN(event_time), MAX(event_time), MAX(loaded_at) FROM ampkit_deliveries
UNION ALL
SELECT 'ampkit_dead_letters', COUNT(*), MIN(event_time), MAX(event_time), MAX(loaded_at) FROM ampkit_dead_letters
