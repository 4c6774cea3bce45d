-- What Looker sees: event_logs per local day and name (the one scan of a row-level table).
SELECT DATE(timestamp, @tz) AS day, name,
  COUNT(*) AS looker,
  COUNTIF(timestamp < @start_time) AS before_start
FROM event_logs
WHERE timestamp >= @start_ts AND timestamp < @end_ts
GROUP BY 1, 2
