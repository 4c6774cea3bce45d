-- Decide every row of a run's window, once, and count the outcomes (the accounting identity).
-- The data map's decision first; rows before the Amplitude start date are filtered whatever the
-- map says; a dead-lettered row is rejected with its reason. Read-only: sync_finalize.sql records
-- the same decisions (the same expressions), so no row is updated in place.
WITH resolved AS (
  SELECT
    CASE WHEN dl.reason IS NOT NULL THEN 'rejected'
         WHEN p.event_time < @start_time THEN 'filtered'
         WHEN r.action = 'send' THEN 'accepted'
         WHEN r.action = 'hold' THEN 'held'
         WHEN r.action IS NOT NULL THEN 'filtered'
    END AS outcome,
    CASE WHEN dl.reason IS NOT NULL THEN dl.reason
         WHEN p.event_time < @start_time THEN 'before_start'
         WHEN r.action = 'send' THEN CAST(NULL AS STRING)
         ELSE r.rule
    END AS rule
  FROM ampkit_pending AS p
  LEFT JOIN ampkit_run_rules AS r
    ON r.run_id = p.run_id AND r.name = p.name AND COALESCE(r.source, '') = COALESCE(p.source, '')
  LEFT JOIN (SELECT id, MIN(reason) AS reason FROM ampkit_dead_letters WHERE run_id = @run_id GROUP BY id) AS dl
    ON dl.id = p.id
  WHERE p.run_id = @run_id
)
SELECT outcome, rule AS reason, COUNT(*) AS row_count
FROM resolved
GROUP BY outcome, rule
