SELECT GREATEST(
  COALESCE((SELECT MAX(id) FROM event_logs), 0),
  COALESCE((SELECT MAX(id) FROM seed_late_arrivals), 0)) + 1 AS next_id
