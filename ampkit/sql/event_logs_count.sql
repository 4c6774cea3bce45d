SELECT COUNT(*) AS row_count FROM event_logs
