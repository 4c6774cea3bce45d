-- The scheduled query that loads amplitude_events from event_logs, hourly.
-- Incremental and idempotent: a row is staged once, by id, whatever the number of re-runs.
-- @run_time is BigQuery's scheduled-query parameter (the run's time); loaded_at records it, and
-- the hourly sync uses loaded_at as its cursor, so a late event gets a late loaded_at.
-- Rows stamped after @run_time wait for their time: a skewed client clock cannot jump the queue.
-- @amplitude_start_date: the first day Amplitude holds (2020-12-01 for Sourcegraph Cloud).
-- Bytes follow new rows, not history: event_logs is read from @stage_since on (ampkit passes the
-- run time minus 72 hours; the first load, into an empty table, since the Amplitude start date),
-- and the NOT EXISTS looks at amplitude_events' partitions from the same instant on, which is exact:
-- a row waits for its time, so a staged copy of a row stamped since then was loaded since then too.
-- Rows streamed into event_logs later than that are not staged (the reconciliation names them).
-- The private `argument` column is not copied: nothing downstream may send it.
INSERT INTO amplitude_events (
  id, name, url, user_id, anonymous_user_id, source, argument, public_argument, version,
  timestamp, feature_flags, cohort_id, first_source_url, last_source_url, referrer, device_id,
  insert_id, loaded_at)
SELECT
  e.id, e.name, e.url, e.user_id, e.anonymous_user_id, e.source, CAST(NULL AS STRING) AS argument, e.public_argument,
  e.version, e.timestamp, e.feature_flags, e.cohort_id, e.first_source_url, e.last_source_url,
  e.referrer, e.device_id, e.insert_id, @run_time AS loaded_at
FROM event_logs AS e
WHERE e.timestamp >= TIMESTAMP(@amplitude_start_date)
  AND e.timestamp >= @stage_since
  AND e.timestamp <= @run_time
  AND NOT EXISTS (SELECT 1 FROM amplitude_events AS a
                  WHERE a.id = e.id AND a.loaded_at >= @stage_since)
;
-- Counts of what this run staged, per 15-minute bucket of event time and name, for reconciliation.
-- Replaced, not added to: a re-run for the same @run_time (a backfill, a manual rerun) recounts.
BEGIN TRANSACTION;
DELETE FROM ampkit_stage_counts WHERE run_time = @run_time;
INSERT INTO ampkit_stage_counts (run_time, bucket, name, row_count)
SELECT @run_time, TIMESTAMP_MICROS(DIV(UNIX_MICROS(timestamp), 900000000) * 900000000), name, COUNT(*)
FROM amplitude_events
WHERE loaded_at = @run_time
GROUP BY 2, 3;
COMMIT TRANSACTION
