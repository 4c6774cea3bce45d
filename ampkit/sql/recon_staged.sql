-- What the scheduled query staged, per local day and name, split by where the sync's cursor is.
-- Each 15-minute bucket's local day is worked out once (a small join), not once per row.
WITH days AS (
  SELECT bucket, DATE(bucket, @tz) AS day
  FROM (SELECT DISTINCT bucket FROM ampkit_stage_counts WHERE bucket >= @start_ts AND bucket < @end_ts) AS b
)
SELECT d.day, s.name,
  SUM(s.row_count) AS staged,
  SUM(IF(s.run_time > @watermark, s.row_count, 0)) AS staged_after_mark,
  SUM(IF(s.run_time <= @lookback_start, s.row_count, 0)) AS staged_before_lookback
FROM ampkit_stage_counts AS s
JOIN days AS d ON d.bucket = s.bucket
WHERE s.bucket >= @start_ts AND s.bucket < @end_ts
GROUP BY 1, 2
