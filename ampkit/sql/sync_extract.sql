-- The transform: a run's sendable rows as Amplitude events, built and checked in the engine.
-- One row per event: `event` is the request-ready JSON (followed by a comma, so consecutive
-- events concatenate into a request body without per-event work), `reject_reason` is set for
-- rows that cannot become a valid event (they go to the dead-letter table, never to Amplitude).
-- The private `argument` column is never read here: only public_argument leaves the company.
-- First the data map's decisions for the snapshot's keys (parallel arrays; '' stands for NULL, which
-- BigQuery refuses in an array parameter), in the same job as the transform.
INSERT INTO ampkit_run_rules (run_id, name, source, action, rule, reason)
SELECT @run_id, key_name, NULLIF(@key_sources[SAFE_OFFSET(i)], ''), @key_actions[SAFE_OFFSET(i)],
  @key_rules[SAFE_OFFSET(i)], NULLIF(@key_reasons[SAFE_OFFSET(i)], '')
FROM UNNEST(@key_names) AS key_name WITH OFFSET AS i
-- Once per key, however often the query runs: a second copy would decide its rows twice.
WHERE NOT EXISTS (SELECT 1 FROM ampkit_run_rules AS k
                  WHERE k.run_id = @run_id AND k.name = key_name
                    AND COALESCE(k.source, '') = @key_sources[SAFE_OFFSET(i)]);
WITH sendable AS (
  SELECT
    a.id, a.name, a.source, a.timestamp, a.loaded_at,
    -- Zero-padded to 6 digits as Sourcegraph did (Amplitude wants at least 5); LPAD would cut longer ids.
    IF(a.user_id > 0, IF(a.user_id < 100000, LPAD(CAST(a.user_id AS STRING), 6, '0'), CAST(a.user_id AS STRING)),
       CAST(NULL AS STRING)) AS user_key,
    COALESCE(NULLIF(TRIM(a.device_id), ''),
             IF(a.anonymous_user_id IN ('backend', ''), CAST(NULL AS STRING), TRIM(a.anonymous_user_id))) AS raw_device,
    p.insert_id AS insert_key,
    -- Values that look like e-mail addresses or access tokens never leave, even in public_argument
    -- or in URLs. The JSON is re-serialized first, so an escaped `\u0040` cannot hide an address.
    REGEXP_REPLACE(
      -- BigQuery's TO_JSON_STRING of a NULL (no or invalid JSON) is the text 'null', not NULL: without
      -- the NULLIF every row with no public_argument was dead-lettered as malformed on BigQuery.
      REGEXP_REPLACE(COALESCE(NULLIF(TO_JSON_STRING(SAFE.PARSE_JSON(NULLIF(TRIM(a.public_argument), ''))), 'null'),
                              NULLIF(TRIM(a.public_argument), ''), '{}'),
        r'[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}', '[redacted-email]'),
      r'(sgp_|ghp_|gho_|github_pat_|glpat-|xox[abprs]-|AKIA)[A-Za-z0-9_-]{8,}|[A-Fa-f0-9]{40,}', '[redacted-token]') AS properties_text,
    REGEXP_REPLACE(
      REGEXP_REPLACE(a.first_source_url, r'[A-Za-z0-9._%+-]+(@|%40)[A-Za-z0-9.-]+\.[A-Za-z]{2,}', '[redacted-email]'),
      r'(sgp_|ghp_|gho_|github_pat_|glpat-|xox[abprs]-|AKIA)[A-Za-z0-9_-]{8,}|[A-Fa-f0-9]{40,}', '[redacted-token]') AS first_source_url,
    REGEXP_REPLACE(
      REGEXP_REPLACE(a.referrer, r'[A-Za-z0-9._%+-]+(@|%40)[A-Za-z0-9.-]+\.[A-Za-z]{2,}', '[redacted-email]'),
      r'(sgp_|ghp_|gho_|github_pat_|glpat-|xox[abprs]-|AKIA)[A-Za-z0-9_-]{8,}|[A-Fa-f0-9]{40,}', '[redacted-token]') AS referrer,
    COALESCE(NULLIF(TRIM(a.feature_flags), ''), '{}') AS flags_text,
    a.cohort_id, a.version, a.anonymous_user_id
  FROM ampkit_pending AS p
  JOIN amplitude_events AS a ON a.id = p.id
  JOIN ampkit_run_rules AS r
    ON r.run_id = p.run_id AND r.name = p.name AND COALESCE(r.source, '') = COALESCE(p.source, '')
  WHERE p.run_id = @run_id AND r.action = 'send' AND (p.event_time >= @start_time OR p.event_time IS NULL)
    -- The window's loaded_at range, where the snapshot took its rows: BigQuery reads only those
    -- partitions of amplitude_events, not all of history.
    AND a.loaded_at > @lookback_start AND a.loaded_at <= @window_end
),
checked AS (
  SELECT
    *,
    -- An id Amplitude would refuse (too short, blocklisted) is dropped; the row then needs the other id.
    IF(raw_device IS NULL OR LENGTH(raw_device) < @min_id_length OR LOWER(raw_device) IN UNNEST(@blocklist),
       CAST(NULL AS STRING), raw_device) AS device_key,
    SAFE.PARSE_JSON(properties_text) AS properties,
    SAFE.PARSE_JSON(flags_text) AS flags,
    -- JSON parsers that accept NaN and Infinity (DuckDB's) let them through as bare tokens, which
    -- Amplitude refuses with a 400 naming no event: found outside strings, the text is not JSON.
    (STRPOS(properties_text, 'NaN') > 0 OR STRPOS(properties_text, 'Infinity') > 0)
      AND REGEXP_CONTAINS(REGEXP_REPLACE(properties_text, r'"(?:[^"\\]|\\.)*"', '""'), r'NaN|Infinity') AS properties_nonfinite,
    (STRPOS(flags_text, 'NaN') > 0 OR STRPOS(flags_text, 'Infinity') > 0)
      AND REGEXP_CONTAINS(REGEXP_REPLACE(flags_text, r'"(?:[^"\\]|\\.)*"', '""'), r'NaN|Infinity') AS flags_nonfinite,
    -- Nesting depth is only looked at where it could exceed the limit (more opening brackets than
    -- it allows): the brackets outside strings, matched against @depth_pattern (balanced within it).
    IF(LENGTH(properties_text) - LENGTH(REPLACE(REPLACE(properties_text, '{', ''), '[', '')) > @max_depth,
       NOT REGEXP_CONTAINS(REGEXP_REPLACE(REGEXP_REPLACE(properties_text, r'"(?:[^"\\]|\\.)*"', ''), r'[^\[\]{}]', ''),
                           @depth_pattern), FALSE) AS properties_too_deep,
    -- Feature flags sit one level down, in user_properties.
    IF(LENGTH(flags_text) - LENGTH(REPLACE(REPLACE(flags_text, '{', ''), '[', '')) > @max_depth - 1,
       NOT REGEXP_CONTAINS(REGEXP_REPLACE(REGEXP_REPLACE(flags_text, r'"(?:[^"\\]|\\.)*"', ''), r'[^\[\]{}]', ''),
                           @flags_depth_pattern), FALSE) AS flags_too_deep,
    ROW_NUMBER() OVER (PARTITION BY insert_key ORDER BY id) AS copy_number
  FROM sendable
)
SELECT
  id, name, timestamp AS event_time, loaded_at, insert_key AS insert_id, device_key AS device_id, user_key AS user_id,
  CASE
    WHEN name IS NULL OR TRIM(name) = '' THEN 'missing_event_type'
    WHEN LENGTH(name) > 1024 THEN 'event_type_too_long'
    WHEN user_key IS NULL AND device_key IS NULL AND raw_device IS NOT NULL THEN 'invalid_id'
    WHEN user_key IS NULL AND device_key IS NULL THEN 'no_id'
    WHEN timestamp IS NULL THEN 'invalid_time'
    WHEN timestamp > @future_limit THEN 'future_time'
    WHEN properties IS NULL THEN 'malformed_public_argument'
    WHEN NOT STARTS_WITH(TRIM(properties_text), '{') THEN 'malformed_public_argument'
    WHEN properties_nonfinite THEN 'malformed_public_argument'
    WHEN properties_too_deep THEN 'properties_too_deep'
    WHEN LENGTH(properties_text) > @max_properties_bytes THEN 'properties_too_large'
    -- A string value over 1,024 characters needs a text over 1,024 characters: the length test first
    -- spares the (costly) regex for nearly every row.
    WHEN LENGTH(properties_text) > 1024
         AND REGEXP_CONTAINS(properties_text, r'"(?:[^"\\]|\\.){1000}(?:[^"\\]|\\.){25,}"') THEN 'property_too_long'
    WHEN copy_number > 1 THEN 'duplicate_insert_id'
    -- Accepted before within the dedup horizon; looked up among this run's insert_ids only, so the
    -- lookup stays the size of the window, not of the horizon's deliveries.
    WHEN insert_key IN (SELECT d.insert_id FROM ampkit_deliveries AS d
                        WHERE d.outcome = 'accepted' AND d.loaded_at > @dedup_start
                          AND d.insert_id IN (SELECT insert_id FROM ampkit_pending WHERE run_id = @run_id)) THEN 'duplicate_insert_id'
    ELSE CAST(NULL AS STRING)
  END AS reject_reason,
  COALESCE(device_key, CONCAT('user:', user_key)) AS lane_key,
  -- Events of one id always share a lane, and a lane sends in time order.
  ABS(MOD(FARM_FINGERPRINT(COALESCE(device_key, CONCAT('user:', user_key), '')), @lanes)) AS lane,
  -- Built field by field so that absent ids are left out rather than sent as null.
  CONCAT(
    '{"event_type":', TO_JSON_STRING(name),
    IF(user_key IS NULL, '', CONCAT(',"user_id":', TO_JSON_STRING(user_key))),
    IF(device_key IS NULL, '', CONCAT(',"device_id":', TO_JSON_STRING(device_key))),
    -- Milliseconds truncated as BigQuery's UNIX_MILLIS does (DuckDB's EPOCH_MS rounds: 13.0088 s became 13.009).
    ',"time":', CAST(DIV(UNIX_MICROS(timestamp), 1000) AS STRING),
    ',"insert_id":', TO_JSON_STRING(insert_key),
    IF(source IS NULL, '', CONCAT(',"platform":', TO_JSON_STRING(source))),
    IF(version IS NULL, '', CONCAT(',"app_version":', TO_JSON_STRING(version))),
    -- JSON null is SQL NULL once DuckDB re-serializes it, but 'null' text in BigQuery: '{}' on both.
    ',"event_properties":', COALESCE(NULLIF(TO_JSON_STRING(properties), 'null'), '{}'),
    ',"user_properties":', TO_JSON_STRING(STRUCT(
      IF(anonymous_user_id IN ('backend', ''), CAST(NULL AS STRING), anonymous_user_id) AS anonymous_user_id,
      -- Flags that are not a JSON object Amplitude would take are left out, not the event.
      IF(STARTS_WITH(TRIM(flags_text), '{') AND NOT flags_nonfinite AND NOT flags_too_deep, flags, CAST(NULL AS JSON)) AS feature_flags,
      CAST(cohort_id AS STRING) AS cohort_id,
      first_source_url,
      referrer)),
    '},') AS event
FROM checked
ORDER BY timestamp, id
