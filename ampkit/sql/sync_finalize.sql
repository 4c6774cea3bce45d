-- Record every row's outcome, move the watermark, and clear the run's working rows, atomically.
-- Rows held back by the data map (`hold`) get no outcome, so a later backfill picks them up.
BEGIN TRANSACTION;
INSERT INTO ampkit_deliveries (id, insert_id, name, source, event_time, loaded_at, outcome, reason, run_id, delivered_at)
SELECT p.id, p.insert_id, p.name, p.source, p.event_time, p.loaded_at,
  CASE WHEN dl.id IS NOT NULL THEN 'rejected'
       WHEN p.event_time < @start_time THEN 'filtered'
       WHEN r.action <> 'send' THEN 'filtered'
       ELSE 'accepted' END,
  CASE WHEN dl.id IS NOT NULL THEN dl.reason
       WHEN p.event_time < @start_time THEN 'before_start'
       WHEN r.action <> 'send' THEN r.rule
       ELSE CAST(NULL AS STRING) END,
  @run_id, @finished_at
FROM ampkit_pending AS p
JOIN ampkit_run_rules AS r
  ON r.run_id = p.run_id AND r.name = p.name AND COALESCE(r.source, '') = COALESCE(p.source, '')
LEFT JOIN ampkit_dead_letters AS dl ON dl.run_id = p.run_id AND dl.id = p.id
WHERE p.run_id = @run_id AND (r.action <> 'hold' OR p.event_time < @start_time);
DELETE FROM ampkit_state WHERE key = 'watermark' AND @move_watermark;
INSERT INTO ampkit_state (key, value, run_id, updated_at)
SELECT 'watermark', @watermark, @run_id, @finished_at FROM (SELECT 1 AS one) AS x WHERE @move_watermark;
DELETE FROM ampkit_pending WHERE run_id = @run_id;
DELETE FROM ampkit_run_rules WHERE run_id = @run_id;
COMMIT TRANSACTION
