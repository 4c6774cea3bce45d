-- Decide every row of a run's slice, once, and count the outcomes per event (the accounting identity):
-- what a dry run reports. The data map's decision first; rows before the Amplitude start date are filtered
-- whatever the map says; a rejected row (its reason in the @reject_* parameters, or in ampkit_rejects
-- when there were too many) is rejected. Read-only: sync_finalize.sql records the same decisions
-- (the same expressions; tests/test_warehouse.py checks the CASEs are identical).
WITH rejected AS (
  SELECT id, MIN(reason) AS reason
  FROM (
    SELECT reject_id AS id, @reject_reasons[SAFE_OFFSET(i)] AS reason FROM UNNEST(@reject_ids) AS reject_id WITH OFFSET AS i
    UNION ALL
    SELECT id, reason FROM ampkit_rejects WHERE run_id = @run_id
  ) AS r
  GROUP BY id
),
resolved AS (
  SELECT
    p.name,
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
  LEFT JOIN rejected AS dl
    ON dl.id = p.id
  WHERE p.run_id = @run_id
)
SELECT name, outcome, rule AS reason, COUNT(*) AS row_count
FROM resolved
GROUP BY name, outcome, rule
