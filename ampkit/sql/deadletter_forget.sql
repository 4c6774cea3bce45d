-- Let dead-lettered rows be sent again: mark the dead letters replayed, drop the rows' rejected
-- outcomes (with matching negative counts), so the next backfill over their time range retries them.
-- @lookback_start and @window_end bound the rows' loaded_at (deadletter_range.sql finds them), so
-- BigQuery reads those partitions of ampkit_deliveries only.
BEGIN TRANSACTION;
UPDATE ampkit_dead_letters SET replayed_run_id = @run_id
WHERE replayed_run_id IS NULL AND reason IN UNNEST(@reasons) AND created_at >= @since;
INSERT INTO ampkit_outcome_counts (run_id, bucket, name, loaded_at, outcome, reason, row_count)
SELECT @run_id, TIMESTAMP_MICROS(DIV(UNIX_MICROS(d.event_time), 900000000) * 900000000), d.name, d.loaded_at, d.outcome, d.reason, -COUNT(*)
FROM ampkit_deliveries AS d
WHERE d.outcome = 'rejected' AND d.loaded_at >= @lookback_start AND d.loaded_at <= @window_end
  AND d.id IN (SELECT id FROM ampkit_dead_letters WHERE replayed_run_id = @run_id)
GROUP BY 2, 3, 4, 5, 6;
DELETE FROM ampkit_deliveries
WHERE outcome = 'rejected' AND loaded_at >= @lookback_start AND loaded_at <= @window_end AND id IN (SELECT id FROM ampkit_dead_letters WHERE replayed_run_id = @run_id);
COMMIT TRANSACTION;
SELECT COUNT(*) AS rows_to_replay, MIN(event_time) AS first_event, MAX(event_time) AS last_event
FROM ampkit_dead_letters WHERE replayed_run_id = @run_id
