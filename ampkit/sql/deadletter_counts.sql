SELECT reason, COUNT(*) AS events, COUNTIF(replayed_run_id IS NULL) AS open_events, MIN(created_at) AS first, MAX(created_at) AS last
FROM ampkit_dead_letters
WHERE created_at >= @since
GROUP BY reason
ORDER BY events DESC
