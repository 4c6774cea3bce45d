-- A run's events per event type and outcome, with the rule or reason (for the run record's chart).
SELECT name, outcome, reason, COUNT(*) AS events
FROM ampkit_deliveries
WHERE run_id = @run_id
GROUP BY name, outcome, reason
ORDER BY events DESC
