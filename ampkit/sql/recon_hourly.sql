-- Accepted vs exported per UTC hour and name: missing hours and time-zone checks.
SELECT hour, name, SUM(accepted) AS accepted, SUM(accepted_recent) AS accepted_recent, SUM(amplitude) AS amplitude
FROM (
  SELECT TIMESTAMP_TRUNC(c.bucket, HOUR) AS hour, c.name, c.row_count AS accepted,
    IF(r.finished_at > @lag_cutoff, c.row_count, 0) AS accepted_recent, 0 AS amplitude
  FROM ampkit_outcome_counts AS c
  LEFT JOIN ampkit_runs AS r ON r.run_id = c.run_id
  WHERE c.outcome = 'accepted' AND c.bucket >= @start_ts AND c.bucket < @end_ts
  UNION ALL
  SELECT TIMESTAMP_TRUNC(x.event_time, HOUR), x.event_type, 0, 0, 1
  FROM ampkit_amplitude_export AS x
  WHERE x.recon_id = @recon_id AND x.event_time >= @start_ts AND x.event_time < @end_ts
) AS t
GROUP BY 1, 2
