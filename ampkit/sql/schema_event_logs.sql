-- The raw product events that Looker reads (Sourcegraph's event_logs, as streamed to BigQuery).
CREATE TABLE IF NOT EXISTS event_logs (
  id INT64 NOT NULL,
  name STRING NOT NULL,
  url STRING,
  user_id INT64,
  anonymous_user_id STRING,
  source STRING,
  argument STRING,
  public_argument STRING,
  version STRING,
  timestamp TIMESTAMP,
  feature_flags STRING,
  cohort_id DATE,
  first_source_url STRING,
  last_source_url STRING,
  referrer STRING,
  device_id STRING,
  insert_id STRING
)
PARTITION BY DATE(timestamp)
CLUSTER BY name;

-- The staging table the hourly sync reads: event_logs from the Amplitude start date on,
-- plus loaded_at, the time the scheduled query loaded the row (the sync's cursor).
CREATE TABLE IF NOT EXISTS amplitude_events (
  id INT64 NOT NULL,
  name STRING NOT NULL,
  url STRING,
  user_id INT64,
  anonymous_user_id STRING,
  source STRING,
  argument STRING,
  public_argument STRING,
  version STRING,
  timestamp TIMESTAMP,
  feature_flags STRING,
  cohort_id DATE,
  first_source_url STRING,
  last_source_url STRING,
  referrer STRING,
  device_id STRING,
  insert_id STRING,
  loaded_at TIMESTAMP NOT NULL
)
PARTITION BY DATE(loaded_at)
CLUSTER BY name;
