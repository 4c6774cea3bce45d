-- How a window's staged rows spread over event time, per minute (an upper bound: rows that
-- already have an outcome are counted too). The sync cuts a window with more rows, or more
-- bytes, than it holds in memory at once into slices of whole minutes, each synced like a window
-- of its own. `text_bytes` estimates the events' size: their text columns plus the fixed fields.
SELECT TIMESTAMP_TRUNC(a.timestamp, MINUTE) AS minute, COUNT(*) AS row_count,
  SUM(400 + COALESCE(LENGTH(a.public_argument), 0) + COALESCE(LENGTH(a.feature_flags), 0)
      + COALESCE(LENGTH(a.first_source_url), 0) + COALESCE(LENGTH(a.referrer), 0) + LENGTH(a.name)) AS text_bytes
FROM amplitude_events AS a
WHERE a.loaded_at > @lookback_start AND a.loaded_at <= @window_end
  AND a.timestamp >= @event_start AND a.timestamp < @event_end
GROUP BY 1
ORDER BY 1
