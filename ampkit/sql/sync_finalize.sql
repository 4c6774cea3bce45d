-- Record every row's outcome, keep the counts, move the watermark, clear the run's working rows: atomically.
-- Outcomes are decided as in sync_resolve.sql (tests/test_warehouse.py checks the two CASEs are identical; no row is updated in place).
-- Rows held back by the data map (`hold`) get no outcome, so a later backfill picks them up.
-- Fenced: a run that stalled past its lease and lost it to another run commits nothing.
BEGIN TRANSACTION;
SELECT IF(EXISTS (SELECT 1 FROM ampkit_lease WHERE name = @name AND holder = @holder), 1,
          ERROR('ampkit: the sync lease was lost before the window was recorded'));
INSERT INTO ampkit_deliveries (id, insert_id, name, source, event_time, loaded_at, outcome, reason, run_id, delivered_at)
WITH resolved AS (
  SELECT p.id, p.insert_id, p.name, p.source, p.event_time, p.loaded_at,
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
SELECT id, insert_id, name, source, event_time, loaded_at, outcome, rule, @run_id, @finished_at
FROM resolved
WHERE outcome <> 'held';
INSERT INTO ampkit_outcome_counts (run_id, bucket, name, loaded_at, outcome, reason, row_count)
-- Counted from the outcomes just recorded: this slice's rows are the run's deliveries whose id is still pending.
SELECT @run_id, TIMESTAMP_MICROS(DIV(UNIX_MICROS(d.event_time), 900000000) * 900000000), d.name, d.loaded_at, d.outcome, d.reason, COUNT(*)
FROM ampkit_deliveries AS d
WHERE d.run_id = @run_id AND d.id IN (SELECT id FROM ampkit_pending WHERE run_id = @run_id)
  -- The slice's rows were loaded in the window: only its partitions of ampkit_deliveries are read.
  AND d.loaded_at > @lookback_start AND d.loaded_at <= @window_end
GROUP BY 2, 3, 4, 5, 6;
DELETE FROM ampkit_state WHERE key = 'watermark' AND @move_watermark;
INSERT INTO ampkit_state (key, value, run_id, updated_at)
SELECT 'watermark', @watermark, @run_id, @finished_at FROM (SELECT 1 AS one) AS x WHERE @move_watermark;
DELETE FROM ampkit_pending WHERE run_id = @run_id;
DELETE FROM ampkit_run_rules WHERE run_id = @run_id;
COMMIT TRANSACTION
