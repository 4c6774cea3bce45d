-- When each data map version was first used, for naming the change behind a vanished family.
SELECT data_map_version, MIN(started_at) AS first_used, MAX(started_at) AS last_used
FROM ampkit_runs
WHERE status = 'ok' AND data_map_version IS NOT NULL
GROUP BY 1
ORDER BY first_used
