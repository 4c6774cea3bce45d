-- Weekly retention cohorts, counted per person, in the engine.
--
-- @active_events   the events that make a person active that week
-- @start_ts/@scan_end the range read, half open; start_ts should be a Monday midnight in @tz
--                  so that the first cohort is a whole week (the name scan_end comes from the
--                  identity block, shared with the funnel, which reads past its own end)
-- @tz              the Amplitude project's time zone: weeks are Monday weeks of its local dates
--
-- A person's cohort is the week of their first active event in the range; the answer is, per
-- cohort and week number N (0 = the cohort week), how many of the cohort were active in week N.
-- The cohort's size is its week-0 count.
--
-- identity: begin (kept identical in onboarding_funnel.sql; tests/test_product.py checks)
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
active AS (
  -- The Monday of each local day: day - (ISO weekday - 1). This is DATE_TRUNC(day, WEEK(MONDAY))
  -- spelled so that DuckDB gives BigQuery's answer (its DATE_TRUNC and DATE_SUB return TIMESTAMPs).
  SELECT person, DATE(TIMESTAMP_ADD(TIMESTAMP(day), INTERVAL (1 - CAST(FORMAT_DATE('%u', day) AS INT64)) DAY)) AS week
  FROM (
    SELECT person, DATE(ts, @tz) AS day
    FROM people
    WHERE name IN UNNEST(@active_events)
  )
  GROUP BY 1, 2
),
cohorts AS (
  SELECT person, MIN(week) AS cohort_week FROM active GROUP BY person
)
SELECT c.cohort_week,
  -- Both are Mondays, so the day difference is a whole number of weeks.
  CAST(DATE_DIFF(a.week, c.cohort_week, DAY) / 7 AS INT64) AS week_number,
  COUNT(*) AS people
FROM cohorts AS c
JOIN active AS a ON a.person = c.person
GROUP BY 1, 2
ORDER BY 1, 2
