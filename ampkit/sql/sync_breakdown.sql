-- A run's events per event type and outcome, with the rule or reason (for the run record's chart).
-- From the run's outcome counts (written with its outcomes, in the same transaction): the numbers
-- grouping its rows in ampkit_deliveries gave when it finished (a later dead-letter replay removes
-- rows there but not here), without reading that table's history.
SELECT name, outcome, reason, CAST(SUM(row_count) AS INT64) AS events
FROM ampkit_outcome_counts
WHERE run_id = @run_id
GROUP BY name, outcome, reason
ORDER BY events DESC
