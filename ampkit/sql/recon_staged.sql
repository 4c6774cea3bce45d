-- What the scheduled query staged, per local day and name, split by where the sync's cursor is,
-- and what was loaded in a hole of the ledger: after one run's window and before the next one's,
-- below the watermark (@gap_starts/@gap_ends, from recon_windows.sql), so no run could take it.
-- Each 15-minute bucket's local day is worked out once (a small join), not once per row.
WITH days AS (
  SELECT bucket, DATE(bucket, @tz) AS day
  FROM (SELECT DISTINCT bucket FROM ampkit_stage_counts WHERE bucket >= @start_ts AND bucket < @end_ts) AS b
),
staged AS (
  SELECT s.bucket, s.name, s.run_time, s.row_count,
    EXISTS (SELECT 1 FROM UNNEST(@gap_starts) AS gap_start WITH OFFSET AS i
            WHERE s.run_time > gap_start AND s.run_time <= @gap_ends[SAFE_OFFSET(i)]) AS in_gap
  FROM ampkit_stage_counts AS s
  WHERE s.bucket >= @start_ts AND s.bucket < @end_ts
)
SELECT d.day, s.name,
  SUM(s.row_count) AS staged,
  SUM(IF(s.run_time > @watermark, s.row_count, 0)) AS staged_after_mark,
  SUM(IF(s.run_time <= @lookback_start, s.row_count, 0)) AS staged_before_lookback,
  SUM(IF(s.in_gap, s.row_count, 0)) AS staged_in_gap,
  SUM(IF(s.in_gap AND s.run_time <= @lookback_start, s.row_count, 0)) AS staged_in_gap_before_lookback
FROM staged AS s
JOIN days AS d ON d.bucket = s.bucket
GROUP BY 1, 2
