-- The demo's late rows not yet arrived in event_logs (see seed.py), for `ampkit status`.
SELECT 'seed_late_arrivals' AS table_name, COUNT(*) AS row_count, MIN(timestamp) AS first_event, MAX(timestamp) AS last_event,
  CAST(NULL AS TIMESTAMP) AS last_loaded
FROM seed_late_arrivals
