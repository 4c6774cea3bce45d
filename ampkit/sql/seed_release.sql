-- Synthetic data only: late rows whose arrival time has come land in event_logs.
INSERT INTO event_logs
SELECT * EXCEPT (arrive_at) FROM seed_late_arrivals WHERE arrive_at <= @now;
DELETE FROM seed_late_arrivals WHERE arrive_at <= @now
