-- ampkit's own state. Created idempotently on either backend; BigQuery in production, so a wiped
-- container loses nothing.

-- One row per run: window, counts per stage, per-rule drops, per-reason rejections.
CREATE TABLE IF NOT EXISTS ampkit_runs (
  run_id STRING NOT NULL,
  started_at TIMESTAMP NOT NULL,
  finished_at TIMESTAMP,
  status STRING NOT NULL,
  mode STRING,
  window_start TIMESTAMP,
  window_end TIMESTAMP,
  extracted INT64,
  sent INT64,
  accepted INT64,
  filtered_total INT64,
  rejected_total INT64,
  filtered STRING,
  rejected STRING,
  data_map_version STRING,
  duration_seconds FLOAT64,
  requests INT64,
  retries INT64,
  notebook_path STRING,
  host STRING,
  error STRING
);

-- Named cursors; 'watermark' is the loaded_at up to which every row has an outcome.
CREATE TABLE IF NOT EXISTS ampkit_state (
  key STRING NOT NULL,
  value TIMESTAMP,
  run_id STRING,
  updated_at TIMESTAMP
);

-- The lease that keeps runs from overlapping, across hosts.
CREATE TABLE IF NOT EXISTS ampkit_lease (
  name STRING NOT NULL,
  holder STRING,
  acquired_at TIMESTAMP,
  expires_at TIMESTAMP
);

-- The rows of the window a run is working on (a snapshot, so counts and outcomes agree).
CREATE TABLE IF NOT EXISTS ampkit_pending (
  run_id STRING NOT NULL,
  id INT64,
  name STRING,
  source STRING,
  insert_id STRING,
  event_time TIMESTAMP,
  loaded_at TIMESTAMP,
  rule STRING,
  outcome STRING
);

-- One row per extracted row: what happened to it (accepted, filtered by a rule, rejected).
CREATE TABLE IF NOT EXISTS ampkit_deliveries (
  id INT64,
  insert_id STRING,
  name STRING,
  source STRING,
  event_time TIMESTAMP,
  loaded_at TIMESTAMP,
  outcome STRING NOT NULL,
  reason STRING,
  run_id STRING NOT NULL,
  delivered_at TIMESTAMP
)
PARTITION BY DATE(loaded_at)
CLUSTER BY outcome, name
-- A query that forgot the loaded_at bound fails instead of billing every partition ever written.
OPTIONS (require_partition_filter = TRUE);

-- Events that could not be delivered, with the reason and the event as it would have been sent.
CREATE TABLE IF NOT EXISTS ampkit_dead_letters (
  run_id STRING NOT NULL,
  id INT64,
  insert_id STRING,
  name STRING,
  event_time TIMESTAMP,
  loaded_at TIMESTAMP,
  reason STRING NOT NULL,
  detail STRING,
  event STRING,
  created_at TIMESTAMP,
  replayed_run_id STRING
);

-- Rejected rows of the slice a run is sending, too many to travel as query parameters (a load
-- job writes them); sync_finalize.sql moves them into ampkit_dead_letters with the outcomes.
CREATE TABLE IF NOT EXISTS ampkit_rejects (
  run_id STRING NOT NULL,
  id INT64,
  insert_id STRING,
  name STRING,
  event_time TIMESTAMP,
  loaded_at TIMESTAMP,
  reason STRING NOT NULL,
  detail STRING,
  event STRING
);

-- The data map's decision for each (name, source) of a run's window, written by the run.
CREATE TABLE IF NOT EXISTS ampkit_run_rules (
  run_id STRING NOT NULL,
  name STRING,
  source STRING,
  action STRING NOT NULL,
  rule STRING NOT NULL,
  reason STRING
);

-- Counts kept as the data moves, so reconciliation never rescans the row-level tables:
-- rows staged per staging run, and outcomes per sync run, in 15-minute UTC buckets of event
-- time (any real time zone's days are whole sets of 15-minute buckets).
CREATE TABLE IF NOT EXISTS ampkit_stage_counts (
  run_time TIMESTAMP NOT NULL,
  bucket TIMESTAMP,
  name STRING,
  row_count INT64
);

CREATE TABLE IF NOT EXISTS ampkit_outcome_counts (
  run_id STRING NOT NULL,
  bucket TIMESTAMP,
  name STRING,
  loaded_at TIMESTAMP,
  outcome STRING,
  reason STRING,
  row_count INT64
);

-- The guardrail's history (docs/GUARDRAIL.md): rows per loaded hour, event and source, with the data
-- map's decision, as each run handled them. A baseline reads a few hours of each of the last weeks,
-- so the table is cut in hourly partitions, and kept 63 days (the guardrail looks back 8 weeks at most).
CREATE TABLE IF NOT EXISTS ampkit_volumes (
  run_id STRING NOT NULL,
  loaded_hour TIMESTAMP NOT NULL,
  name STRING,
  source STRING,
  action STRING,
  rule STRING,
  row_count INT64
)
PARTITION BY TIMESTAMP_TRUNC(loaded_hour, HOUR)
OPTIONS (require_partition_filter = TRUE, partition_expiration_days = 63);

-- How long accepted events took to reach Amplitude (docs/FRESHNESS.md): per run, event hour and
-- measure ('event': from the event's timestamp, 'loaded': from its loaded_at), the events whose lag
-- rounds up to lag_seconds (two significant figures), and the newest of them. Runs, hours and days
-- merge exactly; the day partitions of acceptance keep the charts' and freshness checks' reads small.
CREATE TABLE IF NOT EXISTS ampkit_lags (
  run_id STRING NOT NULL,
  accepted_at TIMESTAMP NOT NULL,
  event_hour TIMESTAMP NOT NULL,
  measure STRING NOT NULL,
  lag_seconds INT64 NOT NULL,
  row_count INT64 NOT NULL,
  newest_at TIMESTAMP
)
PARTITION BY DATE(accepted_at)
OPTIONS (require_partition_filter = TRUE, partition_expiration_days = 400);

-- What people approved: a data map version reviewed with `ampkit datamap approve` (kind
-- 'data_map', subject its version), a volume departure accepted for one run's window with
-- `ampkit sync --accept-volume` (kind 'volume', subject the rule or family).
CREATE TABLE IF NOT EXISTS ampkit_approvals (
  kind STRING NOT NULL,
  subject STRING NOT NULL,
  map_version STRING,
  window_start TIMESTAMP,
  window_end TIMESTAMP,
  run_id STRING,
  approved_by STRING,
  approved_at TIMESTAMP,
  note STRING
);

-- What Amplitude's Export API returned for a reconciliation (row level: insert_id set differences).
CREATE TABLE IF NOT EXISTS ampkit_amplitude_export (
  recon_id STRING NOT NULL,
  insert_id STRING,
  event_type STRING,
  platform STRING,
  event_time TIMESTAMP,
  uploaded_at TIMESTAMP
);
