-- How old the newest event is at each stage (docs/FRESHNESS.md): in event_logs, staged in
-- amplitude_events, and accepted by Amplitude, looking back from @since (partitions before it are
-- not read: older than that is stale whatever it is), ignoring rows stamped after @now (a skewed
-- client clock must not look fresh: a histogram cell whose newest event is ahead of @now counts
-- from its event hour); and the last run that ended ok.
SELECT
  (SELECT MAX(timestamp) FROM event_logs WHERE timestamp >= @since AND timestamp <= @now) AS event_logs,
  (SELECT MAX(timestamp) FROM amplitude_events
   WHERE loaded_at >= @since AND timestamp <= @now) AS amplitude_events,
  (SELECT MAX(loaded_at) FROM amplitude_events WHERE loaded_at >= @since AND loaded_at <= @now) AS staged_at,
  (SELECT MAX(IF(newest_at <= @now, newest_at, event_hour)) FROM ampkit_lags
   WHERE accepted_at >= @since AND measure = 'event' AND event_hour <= @now) AS accepted,
  (SELECT MAX(accepted_at) FROM ampkit_lags WHERE accepted_at >= @since) AS accepted_at,
  (SELECT MAX(finished_at) FROM ampkit_runs WHERE status = 'ok') AS last_ok_run
