-- What Amplitude holds (from its Export API), per local day, event type and platform (= source),
-- with copies of one insert_id and insert_ids the sync never had accepted.
WITH export AS (
  SELECT x.insert_id, x.event_type, x.platform, x.event_time,
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
)
SELECT DATE(e.event_time, @tz) AS day, e.event_type AS name, e.platform,
  COUNT(*) AS amplitude,
  COUNTIF(e.copy_number > 1) AS duplicated,
  COUNTIF(e.copy_number = 1 AND k.insert_id IS NULL) AS amplitude_only
FROM export AS e
LEFT JOIN known AS k ON k.insert_id = e.insert_id
GROUP BY 1, 2, 3
