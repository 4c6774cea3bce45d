-- What the scheduled query staged, per local day and name, split by where the sync's cursor is,
-- and what was loaded in a hole of the ledger: after one run's window and before the next one's,
-- below the watermark (@gap_starts/@gap_ends, from recon_windows.sql), so no run could take it.
-- Each 15-minute bucket's local day is worked out once (a small join), not once per row.
WITH days AS (
  SELECT bucket, DATE(bucket, @tz) AS day
  FROM (SELECT DISTINCT bucket FROM ampkit_stage_counts WHERE bucket >= @start_ts AND bucket < @end_ts) AS b
),
-- The holes are tested once per staging batch (a load time), not once per row.
in_gap AS (
  SELECT b.run_time
  FROM (SELECT DISTINCT run_time FROM ampkit_stage_counts WHERE bucket >= @start_ts AND bucket < @end_ts) AS b
  WHERE EXISTS (SELECT 1 FROM UNNEST(@gap_starts) AS gap_start WITH OFFSET AS i
                WHERE b.run_time > gap_start AND b.run_time <= @gap_ends[SAFE_OFFSET(i)])
)
SELECT d.day, s.name,
  SUM(s.row_count) AS staged,
  SUM(IF(s.run_time > @watermark, s.row_count, 0)) AS staged_after_mark,
  SUM(IF(s.run_time <= @lookback_start, s.row_count, 0)) AS staged_before_lookback,
  SUM(IF(g.run_time IS NOT NULL, s.row_count, 0)) AS staged_in_gap,
  SUM(IF(g.run_time IS NOT NULL AND s.run_time <= @lookback_start, s.row_count, 0)) AS staged_in_gap_before_lookback
FROM ampkit_stage_counts AS s
JOIN days AS d ON d.bucket = s.bucket
LEFT JOIN in_gap AS g ON g.run_time = s.run_time
WHERE s.bucket >= @start_ts AND s.bucket < @end_ts
GROUP BY 1, 2
