-- What Looker sees: event_logs per local day and name (the one scan of a row-level table).
-- Counted per 15-minute bucket first (any real time zone's days are whole sets of them, as for
-- ampkit_stage_counts), so the time-zone conversion runs once per bucket, not once per row.
WITH quarters AS (
  SELECT DIV(UNIX_MICROS(timestamp), 900000000) AS quarter, name,
    COUNT(*) AS looker,
    COUNTIF(timestamp < @start_time) AS before_start
  FROM event_logs
  WHERE timestamp >= @start_ts AND timestamp < @end_ts
  GROUP BY 1, 2
)
SELECT DATE(TIMESTAMP_MICROS(quarter * 900000000), @tz) AS day, name,
  CAST(SUM(looker) AS INT64) AS looker,
  CAST(SUM(before_start) AS INT64) AS before_start
FROM quarters
GROUP BY 1, 2
