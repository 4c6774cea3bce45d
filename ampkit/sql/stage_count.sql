SELECT COUNT(*) AS staged FROM amplitude_events
