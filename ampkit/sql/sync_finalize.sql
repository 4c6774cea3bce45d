-- Record every row's outcome, keep the counts, move the watermark, clear the run's working rows: atomically.
-- Rows held back by the data map (`hold`) get no outcome, so a later backfill picks them up.
-- Fenced: a run that stalled past its lease and lost it to another run commits nothing.
BEGIN TRANSACTION;
SELECT IF(EXISTS (SELECT 1 FROM ampkit_lease WHERE name = @name AND holder = @holder), 1,
          ERROR('ampkit: the sync lease was lost before the window was recorded'));
INSERT INTO ampkit_deliveries (id, insert_id, name, source, event_time, loaded_at, outcome, reason, run_id, delivered_at)
SELECT id, insert_id, name, source, event_time, loaded_at, outcome, rule, run_id, @finished_at
FROM ampkit_pending
WHERE run_id = @run_id AND outcome <> 'held';
INSERT INTO ampkit_outcome_counts (run_id, bucket, name, loaded_at, outcome, reason, row_count)
SELECT @run_id, TIMESTAMP_SECONDS(DIV(UNIX_SECONDS(event_time), 900) * 900), name, loaded_at, outcome, rule, COUNT(*)
FROM ampkit_pending
WHERE run_id = @run_id AND outcome <> 'held'
GROUP BY 2, 3, 4, 5, 6;
DELETE FROM ampkit_state WHERE key = 'watermark' AND @move_watermark;
INSERT INTO ampkit_state (key, value, run_id, updated_at)
SELECT 'watermark', @watermark, @run_id, @finished_at FROM (SELECT 1 AS one) AS x WHERE @move_watermark;
DELETE FROM ampkit_pending WHERE run_id = @run_id;
DELETE FROM ampkit_run_rules WHERE run_id = @run_id;
COMMIT TRANSACTION
