-- What Amplitude holds (from its Export API), per local day, event type and platform (= source),
-- with copies of one insert_id and insert_ids the sync never had accepted.
WITH export AS (
  SELECT x.insert_id, x.event_type, x.platform, x.event_time,
    TIMESTAMP_MICROS(DIV(UNIX_MICROS(x.event_time), 900000000) * 900000000) AS bucket,
    ROW_NUMBER() OVER (PARTITION BY x.insert_id ORDER BY x.uploaded_at) AS copy_number
  FROM ampkit_amplitude_export AS x
  WHERE x.recon_id = @recon_id AND x.event_time >= @start_ts AND x.event_time < @end_ts
),
known AS (
  SELECT DISTINCT d.insert_id
  FROM ampkit_deliveries AS d
  WHERE d.outcome = 'accepted' AND d.event_time >= TIMESTAMP_SUB(@start_ts, INTERVAL 1 DAY)
    AND d.event_time < TIMESTAMP_ADD(@end_ts, INTERVAL 1 DAY)
    -- A row is loaded no earlier than its event time (it waits for its time): the same bound on
    -- loaded_at is exact, and BigQuery reads the partitions since the range began, not all history.
    AND d.loaded_at >= TIMESTAMP_SUB(@start_ts, INTERVAL 1 DAY)
),
-- Accepted rows whose own outcome was rolled up (outcomes_rollup.sql), per 15-minute bucket and
-- event: their counts minus the rows still listed. None while every row is kept.
rolled_up AS (
  SELECT bucket, name, SUM(n) AS rolled
  FROM (
    SELECT c.bucket, c.name, c.row_count AS n
    FROM ampkit_outcome_counts AS c
    WHERE c.outcome = 'accepted' AND c.bucket >= @start_ts AND c.bucket < @end_ts
    UNION ALL
    SELECT TIMESTAMP_MICROS(DIV(UNIX_MICROS(d.event_time), 900000000) * 900000000), d.name, -1
    FROM ampkit_deliveries AS d
    WHERE d.outcome = 'accepted' AND d.event_time >= @start_ts AND d.event_time < @end_ts
      AND d.loaded_at >= @start_ts
  ) AS u
  GROUP BY bucket, name
  HAVING SUM(n) > 0
),
-- Where rows were rolled up, an unknown insert_id may be one of them: per bucket and event, the
-- unknown first copies beyond the rolled-up count are Amplitude's own (a copy sent outside ampkit
-- and one missing in the same quarter hour of one event then cancel out).
unknown AS (
  SELECT e.bucket, e.event_type AS name, COUNTIF(e.copy_number = 1 AND k.insert_id IS NULL) AS n
  FROM export AS e
  LEFT JOIN known AS k ON k.insert_id = e.insert_id
  GROUP BY 1, 2
)
SELECT DATE(e.event_time, @tz) AS day, e.event_type AS name, e.platform,
  COUNT(*) AS amplitude,
  COUNTIF(e.copy_number > 1) AS duplicated,
  COUNTIF(e.copy_number = 1 AND k.insert_id IS NULL) AS amplitude_only
FROM export AS e
LEFT JOIN known AS k ON k.insert_id = e.insert_id
GROUP BY 1, 2, 3
UNION ALL
-- The correction, as a row of its own with no platform: minus the unknown copies that rolled-up rows explain.
SELECT DATE(u.bucket, @tz), u.name, CAST(NULL AS STRING), 0, 0, -SUM(LEAST(u.n, r.rolled))
FROM unknown AS u
JOIN rolled_up AS r ON r.bucket = u.bucket AND r.name = u.name
WHERE u.n > 0
GROUP BY 1, 2
