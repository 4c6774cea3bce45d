-- How a window's staged rows spread over event time, per minute (an upper bound: rows that
-- already have an outcome are counted too). The sync cuts a window with more rows than it
-- holds in memory at once into slices of whole minutes, each synced like a window of its own.
SELECT TIMESTAMP_TRUNC(a.timestamp, MINUTE) AS minute, COUNT(*) AS row_count
FROM amplitude_events AS a
WHERE a.loaded_at > @lookback_start AND a.loaded_at <= @window_end
  AND a.timestamp >= @event_start AND a.timestamp < @event_end
GROUP BY 1
ORDER BY 1
