-- What the scheduled query staged, per local day and name, split by where the sync's cursor is.
SELECT DATE(bucket, @tz) AS day, name,
  SUM(row_count) AS staged,
  SUM(IF(run_time > @watermark, row_count, 0)) AS staged_after_mark,
  SUM(IF(run_time <= @lookback_start, row_count, 0)) AS staged_before_lookback
FROM ampkit_stage_counts
WHERE bucket >= @start_ts AND bucket < @end_ts
GROUP BY 1, 2
