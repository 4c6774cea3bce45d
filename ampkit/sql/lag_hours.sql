-- Per hour of event time in [@since, @until), how long its events took to reach Amplitude, over
-- every run that sent them: events, p50, p95 and max seconds from the event's timestamp, and p95
-- from its loaded_at. Percentiles as in lag_runs.sql. A backfill of older hours is not in range.
WITH buckets AS (
  SELECT event_hour, measure, lag_seconds, SUM(row_count) AS n
  FROM ampkit_lags
  WHERE accepted_at >= @since AND event_hour >= @since AND event_hour < @until
  GROUP BY event_hour, measure, lag_seconds
),
running AS (
  SELECT event_hour, measure, lag_seconds,
    SUM(n) OVER (PARTITION BY event_hour, measure ORDER BY lag_seconds) AS seen,
    SUM(n) OVER (PARTITION BY event_hour, measure) AS total
  FROM buckets
)
SELECT event_hour,
  MAX(IF(measure = 'event', total, NULL)) AS events,
  MIN(IF(measure = 'event' AND seen * 100 >= 50 * total, lag_seconds, NULL)) AS lag_event_p50,
  MIN(IF(measure = 'event' AND seen * 100 >= 95 * total, lag_seconds, NULL)) AS lag_event_p95,
  MAX(IF(measure = 'event', lag_seconds, NULL)) AS lag_event_max,
  MIN(IF(measure = 'loaded' AND seen * 100 >= 95 * total, lag_seconds, NULL)) AS lag_loaded_p95
FROM running
GROUP BY event_hour
ORDER BY event_hour
