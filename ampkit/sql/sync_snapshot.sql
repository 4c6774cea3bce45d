-- Snapshot the rows of a window that have no outcome yet, so counts and outcomes agree, and say
-- which events they are (one job: on BigQuery every job costs a second or two).
-- The window is on loaded_at; @lookback_start reaches back for rows loaded late (a load that
-- committed after the watermark passed its loaded_at). Rows that already have an outcome are skipped.
-- For a backfill, @event_start/@event_end bound the event time instead.
-- Working rows left by a run that ended without clearing them (killed) go first.
DELETE FROM ampkit_pending WHERE TRUE;
DELETE FROM ampkit_run_rules WHERE TRUE;
DELETE FROM ampkit_rejects WHERE TRUE;
INSERT INTO ampkit_pending (run_id, id, name, source, insert_id, event_time, loaded_at, rule, outcome)
SELECT @run_id, a.id, a.name, a.source,
  -- The event's insert_id: the staged one, else a stable hash of the row's id (code-host rows have none).
  COALESCE(NULLIF(a.insert_id, ''), CONCAT('sg-', TO_HEX(SHA256(CONCAT('event_logs:', CAST(a.id AS STRING)))))),
  a.timestamp, a.loaded_at, CAST(NULL AS STRING), CAST(NULL AS STRING)
FROM amplitude_events AS a
WHERE a.loaded_at > @lookback_start AND a.loaded_at <= @window_end
  -- A row without a timestamp is taken by the hourly run (and dead-lettered), never dropped silently.
  AND ((a.timestamp >= @event_start AND a.timestamp < @event_end)
       OR (a.timestamp IS NULL AND @event_start <= TIMESTAMP '1970-01-01 00:00:00+00'))
  AND NOT EXISTS (
    -- A delivered row keeps its event time, so the event-time bounds hold for its outcome too; they
    -- keep this lookup to the slice being synced rather than every outcome of the loaded_at window.
    SELECT 1 FROM ampkit_deliveries AS d
    WHERE d.id = a.id AND d.loaded_at > @lookback_start AND d.loaded_at <= @window_end
      AND ((d.event_time >= @event_start AND d.event_time < @event_end) OR d.event_time IS NULL))
  -- A row loaded before @kept_from had its outcome rolled up (outcomes_rollup.sql): it was handled,
  -- unless it is a dead letter being replayed (whose rows are never rolled up).
  AND (a.loaded_at >= @kept_from
       OR a.id IN (SELECT id FROM ampkit_dead_letters WHERE replayed_run_id IS NOT NULL));
-- The distinct (name, source) of the snapshot and their volumes per loaded hour: the data map
-- decides per key, the guardrail weighs the hours against their history.
SELECT name, source, TIMESTAMP_TRUNC(loaded_at, HOUR) AS loaded_hour, COUNT(*) AS row_count
FROM ampkit_pending
WHERE run_id = @run_id
GROUP BY name, source, loaded_hour
ORDER BY row_count DESC, name, source, loaded_hour
