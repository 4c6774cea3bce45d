-- Roll up the row outcomes of rows loaded in [@kept_from, @rollup_before): past Amplitude's dedup
-- window, the lookback and dead-letter triage, a row's own outcome is no longer needed; its
-- 15-minute counts stay for ever. `outcomes_kept_from` in ampkit_state says where rows begin, so a
-- backfill never takes a rolled-up row for one without an outcome (sync_snapshot.sql).
BEGIN TRANSACTION;
-- The rows of dead letters stay: replaying one removes its rejected row (deadletter_forget.sql) so
-- a backfill sends it again, and the row it then gets is what keeps the next backfill from
-- sending it a third time.
DELETE FROM ampkit_deliveries
WHERE loaded_at >= @kept_from AND loaded_at < @rollup_before
  AND id NOT IN (SELECT id FROM ampkit_dead_letters WHERE id IS NOT NULL);
-- A run's counts become one row per (15-minute bucket, event, outcome, reason) once its rows and
-- the run itself are older than the horizon (a recent backfill of old rows keeps its run: the
-- reconciliation reads its finish time for the export lag).
INSERT INTO ampkit_outcome_counts (run_id, bucket, name, loaded_at, outcome, reason, row_count)
SELECT 'rollup', bucket, name, MAX(loaded_at), outcome, reason, SUM(row_count)
FROM ampkit_outcome_counts
WHERE run_id <> 'rollup' AND loaded_at < @rollup_before
  AND run_id IN (SELECT run_id FROM ampkit_runs WHERE finished_at < @rollup_before)
GROUP BY bucket, name, outcome, reason
HAVING SUM(row_count) <> 0;
DELETE FROM ampkit_outcome_counts
WHERE run_id <> 'rollup' AND loaded_at < @rollup_before
  AND run_id IN (SELECT run_id FROM ampkit_runs WHERE finished_at < @rollup_before);
DELETE FROM ampkit_state WHERE key = 'outcomes_kept_from';
INSERT INTO ampkit_state (key, value, run_id, updated_at)
SELECT 'outcomes_kept_from', @rollup_before, @run_id, @now;
COMMIT TRANSACTION;
SELECT COUNT(*) AS rows_kept FROM ampkit_deliveries WHERE loaded_at >= @kept_from AND loaded_at < @rollup_before
