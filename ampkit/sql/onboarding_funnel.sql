-- An ordered funnel (the Cloud sign-up funnel by default), counted per person, in the engine.
--
-- @steps           the step event names, in order: distinct, at most 10 (the chain below is
--                  unrolled because BigQuery's recursive CTEs refuse the MIN() each link needs;
--                  a step the array does not have matches nothing)
-- @start_ts/@end_ts a first step taken in [start_ts, end_ts) starts an attempt
-- @scan_end        end_ts + the conversion window: later steps may finish after end_ts
-- @window_seconds  the conversion window, counted from the attempt's first step (Amplitude's rule)
--
-- Each attempt takes, for every next step, its earliest occurrence at or after the previous
-- step and no later than first step + window; a person counts at the deepest step any of
-- their attempts reaches (Amplitude's "earliest, longest path per user").
--
-- identity: begin (kept identical in onboarding_retention.sql; tests/test_product.py checks)
-- A person is their user_id once known. Before that they are their visitor id
-- (anonymous_user_id; device_id on rows without one, such as backend rows), and a visitor id
-- later seen signed in belongs to that user from its first visit on, as Amplitude merges a
-- device into the user it is later seen with. Rows with neither id are nobody's and skipped.
WITH visits AS (
  SELECT name, timestamp AS ts, user_id,
    COALESCE(NULLIF(IF(anonymous_user_id = 'backend', '', TRIM(anonymous_user_id)), ''),
             NULLIF(TRIM(device_id), '')) AS visitor
  FROM event_logs
  WHERE timestamp >= @start_ts AND timestamp < @scan_end
),
links AS (
  SELECT visitor, user_id FROM (
    SELECT visitor, user_id, ROW_NUMBER() OVER (PARTITION BY visitor ORDER BY ts, user_id) AS n
    FROM visits
    WHERE user_id > 0 AND visitor IS NOT NULL
  )
  WHERE n = 1
),
people AS (
  SELECT v.name, v.ts,
    CASE WHEN v.user_id > 0 THEN CONCAT('user:', CAST(v.user_id AS STRING))
         WHEN l.user_id IS NOT NULL THEN CONCAT('user:', CAST(l.user_id AS STRING))
         ELSE CONCAT('visitor:', v.visitor) END AS person
  FROM visits AS v
  LEFT JOIN links AS l ON l.visitor = v.visitor
  WHERE v.user_id > 0 OR v.visitor IS NOT NULL
),
-- identity: end
steps AS (
  SELECT person, name, ts FROM people WHERE name IN UNNEST(@steps)
),
s1 AS (
  SELECT person, ts AS first_ts, ts AS reached_at FROM steps
  WHERE name = @steps[SAFE_OFFSET(0)] AND ts < @end_ts
),
s2 AS (
  SELECT s.person, s.first_ts, MIN(e.ts) AS reached_at FROM s1 AS s JOIN steps AS e ON e.person = s.person
  WHERE e.name = @steps[SAFE_OFFSET(1)] AND e.ts >= s.reached_at AND e.ts <= TIMESTAMP_ADD(s.first_ts, INTERVAL @window_seconds SECOND)
  GROUP BY s.person, s.first_ts
),
s3 AS (
  SELECT s.person, s.first_ts, MIN(e.ts) AS reached_at FROM s2 AS s JOIN steps AS e ON e.person = s.person
  WHERE e.name = @steps[SAFE_OFFSET(2)] AND e.ts >= s.reached_at AND e.ts <= TIMESTAMP_ADD(s.first_ts, INTERVAL @window_seconds SECOND)
  GROUP BY s.person, s.first_ts
),
s4 AS (
  SELECT s.person, s.first_ts, MIN(e.ts) AS reached_at FROM s3 AS s JOIN steps AS e ON e.person = s.person
  WHERE e.name = @steps[SAFE_OFFSET(3)] AND e.ts >= s.reached_at AND e.ts <= TIMESTAMP_ADD(s.first_ts, INTERVAL @window_seconds SECOND)
  GROUP BY s.person, s.first_ts
),
s5 AS (
  SELECT s.person, s.first_ts, MIN(e.ts) AS reached_at FROM s4 AS s JOIN steps AS e ON e.person = s.person
  WHERE e.name = @steps[SAFE_OFFSET(4)] AND e.ts >= s.reached_at AND e.ts <= TIMESTAMP_ADD(s.first_ts, INTERVAL @window_seconds SECOND)
  GROUP BY s.person, s.first_ts
),
s6 AS (
  SELECT s.person, s.first_ts, MIN(e.ts) AS reached_at FROM s5 AS s JOIN steps AS e ON e.person = s.person
  WHERE e.name = @steps[SAFE_OFFSET(5)] AND e.ts >= s.reached_at AND e.ts <= TIMESTAMP_ADD(s.first_ts, INTERVAL @window_seconds SECOND)
  GROUP BY s.person, s.first_ts
),
s7 AS (
  SELECT s.person, s.first_ts, MIN(e.ts) AS reached_at FROM s6 AS s JOIN steps AS e ON e.person = s.person
  WHERE e.name = @steps[SAFE_OFFSET(6)] AND e.ts >= s.reached_at AND e.ts <= TIMESTAMP_ADD(s.first_ts, INTERVAL @window_seconds SECOND)
  GROUP BY s.person, s.first_ts
),
s8 AS (
  SELECT s.person, s.first_ts, MIN(e.ts) AS reached_at FROM s7 AS s JOIN steps AS e ON e.person = s.person
  WHERE e.name = @steps[SAFE_OFFSET(7)] AND e.ts >= s.reached_at AND e.ts <= TIMESTAMP_ADD(s.first_ts, INTERVAL @window_seconds SECOND)
  GROUP BY s.person, s.first_ts
),
s9 AS (
  SELECT s.person, s.first_ts, MIN(e.ts) AS reached_at FROM s8 AS s JOIN steps AS e ON e.person = s.person
  WHERE e.name = @steps[SAFE_OFFSET(8)] AND e.ts >= s.reached_at AND e.ts <= TIMESTAMP_ADD(s.first_ts, INTERVAL @window_seconds SECOND)
  GROUP BY s.person, s.first_ts
),
s10 AS (
  SELECT s.person, s.first_ts, MIN(e.ts) AS reached_at FROM s9 AS s JOIN steps AS e ON e.person = s.person
  WHERE e.name = @steps[SAFE_OFFSET(9)] AND e.ts >= s.reached_at AND e.ts <= TIMESTAMP_ADD(s.first_ts, INTERVAL @window_seconds SECOND)
  GROUP BY s.person, s.first_ts
),
reached AS (
  SELECT 1 AS step, person FROM s1 UNION ALL SELECT 2, person FROM s2 UNION ALL SELECT 3, person FROM s3
  UNION ALL SELECT 4, person FROM s4 UNION ALL SELECT 5, person FROM s5 UNION ALL SELECT 6, person FROM s6
  UNION ALL SELECT 7, person FROM s7 UNION ALL SELECT 8, person FROM s8 UNION ALL SELECT 9, person FROM s9
  UNION ALL SELECT 10, person FROM s10
)
SELECT step, COUNT(DISTINCT person) AS people
FROM reached
GROUP BY step
ORDER BY step
