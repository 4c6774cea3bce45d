-- Decide every row of a run's window, once, and count the outcomes (the accounting identity).
-- The data map's decision first; rows before the Amplitude start date are filtered whatever the
-- map says; a dead-lettered row is rejected with its reason.
UPDATE ampkit_pending AS p
SET outcome = CASE r.action WHEN 'send' THEN 'accepted' WHEN 'hold' THEN 'held' ELSE 'filtered' END,
    rule = IF(r.action = 'send', CAST(NULL AS STRING), r.rule)
FROM ampkit_run_rules AS r
WHERE p.run_id = @run_id AND r.run_id = p.run_id AND r.name = p.name
  AND COALESCE(r.source, '') = COALESCE(p.source, '');
UPDATE ampkit_pending SET outcome = 'filtered', rule = 'before_start'
WHERE run_id = @run_id AND event_time < @start_time;
UPDATE ampkit_pending AS p SET outcome = 'rejected', rule = dl.reason
FROM ampkit_dead_letters AS dl
WHERE p.run_id = @run_id AND dl.run_id = p.run_id AND dl.id = p.id;
SELECT outcome, rule AS reason, COUNT(*) AS row_count
FROM ampkit_pending
WHERE run_id = @run_id
GROUP BY outcome, rule
