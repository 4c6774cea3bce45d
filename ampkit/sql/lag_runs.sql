-- Per run accepted since @since, how long its events took to reach Amplitude, from their timestamp
-- ('event') and from their loaded_at ('loaded'): events, p50, p95 and max seconds, and the newest
-- event it sent. A percentile is the smallest lag bucket whose running count reaches that share of
-- the run's events (ampkit/lag.py's `quantile`, on the same buckets).
WITH buckets AS (
  SELECT run_id, measure, lag_seconds, SUM(row_count) AS n, MAX(newest_at) AS newest_at
  FROM ampkit_lags
  WHERE accepted_at >= @since
  GROUP BY run_id, measure, lag_seconds
),
running AS (
  SELECT run_id, measure, lag_seconds, newest_at,
    SUM(n) OVER (PARTITION BY run_id, measure ORDER BY lag_seconds) AS seen,
    SUM(n) OVER (PARTITION BY run_id, measure) AS total
  FROM buckets
)
SELECT run_id,
  MAX(IF(measure = 'event', total, NULL)) AS lag_events,
  MIN(IF(measure = 'event' AND seen * 100 >= 50 * total, lag_seconds, NULL)) AS lag_event_p50,
  MIN(IF(measure = 'event' AND seen * 100 >= 95 * total, lag_seconds, NULL)) AS lag_event_p95,
  MAX(IF(measure = 'event', lag_seconds, NULL)) AS lag_event_max,
  MIN(IF(measure = 'loaded' AND seen * 100 >= 50 * total, lag_seconds, NULL)) AS lag_loaded_p50,
  MIN(IF(measure = 'loaded' AND seen * 100 >= 95 * total, lag_seconds, NULL)) AS lag_loaded_p95,
  MAX(IF(measure = 'loaded', lag_seconds, NULL)) AS lag_loaded_max,
  MAX(IF(measure = 'event', newest_at, NULL)) AS newest_event_at
FROM running
GROUP BY run_id
