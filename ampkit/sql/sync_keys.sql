-- The distinct (name, source) of a run's window and their volumes: the data map decides per key.
SELECT name, source, COUNT(*) AS row_count
FROM ampkit_pending
WHERE run_id = @run_id
GROUP BY name, source
ORDER BY row_count DESC
