DELETE FROM event_logs WHERE TRUE;
DELETE FROM seed_late_arrivals WHERE TRUE
