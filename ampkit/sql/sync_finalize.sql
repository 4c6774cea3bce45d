-- Record a slice's outcomes, keep the counts, move the watermark: one transaction, one job.
-- Fenced: the lease is renewed inside the transaction, so a run that took it meanwhile makes this
-- transaction abort (BigQuery: "concurrent update"), and a run that lost it commits nothing.
-- Outcomes are decided as in sync_resolve.sql (tests/test_warehouse.py checks the two CASEs are
-- identical). Rows held back by the data map (`hold`) get no outcome, so a later backfill picks
-- them up. The accounting identity is checked where it is recorded: every row of the slice has one
-- outcome, and Amplitude accepted exactly the rows recorded as accepted, or nothing commits.
BEGIN TRANSACTION;
UPDATE ampkit_lease SET expires_at = @expires_at WHERE name = @name AND holder = @holder;
SELECT IF(EXISTS (SELECT 1 FROM ampkit_lease WHERE name = @name AND holder = @holder), 1,
          ERROR('ampkit: the sync lease was lost before the window was recorded'));
UPDATE ampkit_pending AS t
SET outcome = s.outcome, rule = s.rule
FROM (
  SELECT p.id,
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
  LEFT JOIN (
    SELECT id, MIN(reason) AS reason
    FROM (
      SELECT reject_id AS id, @reject_reasons[SAFE_OFFSET(i)] AS reason FROM UNNEST(@reject_ids) AS reject_id WITH OFFSET AS i
      UNION ALL
      SELECT id, reason FROM ampkit_rejects WHERE run_id = @run_id
    ) AS j
    GROUP BY id
  ) AS dl
    ON dl.id = p.id
  WHERE p.run_id = @run_id
) AS s
WHERE t.run_id = @run_id AND t.id = s.id;
SELECT IF(COUNT(*) = @extracted AND COUNTIF(outcome = 'accepted') = @accepted AND COUNTIF(outcome IS NULL) = 0, 1,
          ERROR(CONCAT('ampkit: the outcomes do not add up: extracted ', CAST(@extracted AS STRING),
                       ', decided ', CAST(COUNTIF(outcome IS NOT NULL) AS STRING), ' of ', CAST(COUNT(*) AS STRING),
                       ', accepted by Amplitude ', CAST(@accepted AS STRING),
                       ', accepted in the outcomes ', CAST(COUNTIF(outcome = 'accepted') AS STRING))))
FROM ampkit_pending
WHERE run_id = @run_id;
-- The dead letters, with the outcomes: a run that fails before this point leaves none behind.
INSERT INTO ampkit_dead_letters (run_id, id, insert_id, name, event_time, loaded_at, reason, detail, event, created_at, replayed_run_id)
SELECT @run_id, reject_id, @reject_insert_ids[SAFE_OFFSET(i)], @reject_names[SAFE_OFFSET(i)],
  TIMESTAMP(NULLIF(@reject_event_times[SAFE_OFFSET(i)], '')), TIMESTAMP(NULLIF(@reject_loaded_ats[SAFE_OFFSET(i)], '')),
  @reject_reasons[SAFE_OFFSET(i)], @reject_details[SAFE_OFFSET(i)], @reject_events[SAFE_OFFSET(i)], @finished_at,
  CAST(NULL AS STRING)
FROM UNNEST(@reject_ids) AS reject_id WITH OFFSET AS i
UNION ALL
SELECT run_id, id, insert_id, name, event_time, loaded_at, reason, detail, event, @finished_at, CAST(NULL AS STRING)
FROM ampkit_rejects
WHERE run_id = @run_id;
INSERT INTO ampkit_deliveries (id, insert_id, name, source, event_time, loaded_at, outcome, reason, run_id, delivered_at)
SELECT id, insert_id, name, source, event_time, loaded_at, outcome, rule, @run_id, @finished_at
FROM ampkit_pending
WHERE run_id = @run_id AND outcome <> 'held';
INSERT INTO ampkit_outcome_counts (run_id, bucket, name, loaded_at, outcome, reason, row_count)
SELECT @run_id, TIMESTAMP_MICROS(DIV(UNIX_MICROS(event_time), 900000000) * 900000000), name, loaded_at, outcome, rule, COUNT(*)
FROM ampkit_pending
WHERE run_id = @run_id AND outcome <> 'held'
GROUP BY 2, 3, 4, 5, 6;
-- The guardrail's history: what this slice handled per loaded hour and the map's decision (rows
-- held back get no outcome and come again, so they are counted when they get one).
INSERT INTO ampkit_volumes (run_id, loaded_hour, name, source, action, rule, row_count)
SELECT @run_id, TIMESTAMP_TRUNC(p.loaded_at, HOUR), p.name, p.source, r.action, r.rule, COUNT(*)
FROM ampkit_pending AS p
LEFT JOIN ampkit_run_rules AS r
  ON r.run_id = p.run_id AND r.name = p.name AND COALESCE(r.source, '') = COALESCE(p.source, '')
WHERE p.run_id = @run_id AND p.outcome <> 'held' AND p.loaded_at IS NOT NULL
GROUP BY 2, 3, 4, 5, 6;
-- How long the slice's accepted events took to reach Amplitude (lag.py's histogram), with them.
INSERT INTO ampkit_lags (run_id, accepted_at, event_hour, measure, lag_seconds, row_count, newest_at)
SELECT @run_id, @accepted_at, event_hour, @lag_measures[SAFE_OFFSET(i)], @lag_buckets[SAFE_OFFSET(i)],
  @lag_counts[SAFE_OFFSET(i)], @lag_newest[SAFE_OFFSET(i)]
FROM UNNEST(@lag_hours) AS event_hour WITH OFFSET AS i;
-- Departures an operator accepted for this window (`ampkit sync --accept-volume`), with it.
INSERT INTO ampkit_approvals (kind, subject, map_version, window_start, window_end, run_id, approved_by, approved_at, note)
SELECT 'volume', subject, @data_map_version, @window_start, @watermark, @run_id, @approved_by, @finished_at,
  @accepted_notes[SAFE_OFFSET(i)]
FROM UNNEST(@accepted_volumes) AS subject WITH OFFSET AS i;
-- The data map version the open window is synced with (its hash, kept in run_id as 'schema' keeps
-- its version): the guardrail asks for approval when a run brings another one.
DELETE FROM ampkit_state WHERE key = 'data_map' AND @move_watermark AND run_id <> @data_map_version;
INSERT INTO ampkit_state (key, value, run_id, updated_at)
SELECT 'data_map', @finished_at, @data_map_version, @finished_at FROM (SELECT 1 AS one) AS x
WHERE @move_watermark AND NOT EXISTS (SELECT 1 FROM ampkit_state WHERE key = 'data_map');
DELETE FROM ampkit_state WHERE key = 'watermark' AND @move_watermark;
INSERT INTO ampkit_state (key, value, run_id, updated_at)
SELECT 'watermark', @watermark, @run_id, @finished_at FROM (SELECT 1 AS one) AS x WHERE @move_watermark;
COMMIT TRANSACTION;
SELECT outcome, rule AS reason, COUNT(*) AS row_count
FROM ampkit_pending
WHERE run_id = @run_id
GROUP BY outcome, rule
