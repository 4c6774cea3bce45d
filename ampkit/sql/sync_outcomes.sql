-- What happened to every row of a run's window: the counts behind the accounting identity.
SELECT
  CASE WHEN dl.id IS NOT NULL THEN 'rejected'
       WHEN p.event_time < @start_time THEN 'filtered'
       WHEN r.action <> 'send' THEN 'filtered'
       ELSE 'accepted' END AS outcome,
  CASE WHEN dl.id IS NOT NULL THEN dl.reason
       WHEN p.event_time < @start_time THEN 'before_start'
       WHEN r.action <> 'send' THEN r.rule
       ELSE CAST(NULL AS STRING) END AS reason,
  COUNT(*) AS row_count
FROM ampkit_pending AS p
JOIN ampkit_run_rules AS r
  ON r.run_id = p.run_id AND r.name = p.name AND COALESCE(r.source, '') = COALESCE(p.source, '')
LEFT JOIN ampkit_dead_letters AS dl ON dl.run_id = p.run_id AND dl.id = p.id
WHERE p.run_id = @run_id
GROUP BY 1, 2
