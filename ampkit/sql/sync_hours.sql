-- The whole hours (by their end) in which rows were loaded, so a run skips empty hours quickly.
SELECT DISTINCT TIMESTAMP_SECONDS(DIV(UNIX_SECONDS(loaded_at) + 3599, 3600) * 3600) AS hour_end
FROM amplitude_events
WHERE loaded_at > @window_start AND loaded_at <= @window_end
