-- What the sync did with staged rows, per local day, name, outcome and rule or reason, split as
-- recon_staged.sql splits what was staged (the cursor, the lookback, the ledger's holes).
-- Each 15-minute bucket's local day is worked out once (a small join), not once per row.
WITH days AS (
  SELECT bucket, DATE(bucket, @tz) AS day
  FROM (SELECT DISTINCT bucket FROM ampkit_outcome_counts WHERE bucket >= @start_ts AND bucket < @end_ts) AS b
),
-- The holes are tested once per load time (a staging batch), not once per row.
in_gap AS (
  SELECT b.loaded_at
  FROM (SELECT DISTINCT loaded_at FROM ampkit_outcome_counts WHERE bucket >= @start_ts AND bucket < @end_ts) AS b
  WHERE EXISTS (SELECT 1 FROM UNNEST(@gap_starts) AS gap_start WITH OFFSET AS i
                WHERE b.loaded_at > gap_start AND b.loaded_at <= @gap_ends[SAFE_OFFSET(i)])
)
SELECT d.day, c.name, c.outcome, c.reason,
  SUM(c.row_count) AS n,
  SUM(IF(c.loaded_at > @watermark, c.row_count, 0)) AS n_after_mark,
  SUM(IF(c.loaded_at <= @lookback_start, c.row_count, 0)) AS n_before_lookback,
  SUM(IF(r.finished_at > @lag_cutoff, c.row_count, 0)) AS n_recent,
  SUM(IF(g.loaded_at IS NOT NULL, c.row_count, 0)) AS n_in_gap,
  SUM(IF(g.loaded_at IS NOT NULL AND c.loaded_at <= @lookback_start, c.row_count, 0)) AS n_in_gap_before_lookback
FROM ampkit_outcome_counts AS c
JOIN days AS d ON d.bucket = c.bucket
LEFT JOIN ampkit_runs AS r ON r.run_id = c.run_id
LEFT JOIN in_gap AS g ON g.loaded_at = c.loaded_at
WHERE c.bucket >= @start_ts AND c.bucket < @end_ts
GROUP BY 1, 2, 3, 4
