-- Synthetic data only: late rows wait here until the clock passes arrive_at (see ampkit/seed.py).
CREATE TABLE IF NOT EXISTS seed_late_arrivals (
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
  arrive_at TIMESTAMP NOT NULL
)
