-- The whole hours (by their end) in which rows were loaded, so a run skips empty hours quickly.
-- Rounded up in microseconds: a load committed at 10:00:00.5 belongs to the hour ending 11:00 (the
-- window (10:00, 11:00]); whole seconds would put it in the hour ending 10:00 and the run would skip it.
SELECT DISTINCT TIMESTAMP_MICROS(DIV(UNIX_MICROS(loaded_at) + 3599999999, 3600000000) * 3600000000) AS hour_end
FROM amplitude_events
WHERE loaded_at > @window_start AND loaded_at <= @window_end
