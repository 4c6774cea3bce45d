-- Remember which version of schema_state.sql the tables were made with, so a run recreates them
-- only when it changed (run_begin.sql reads it back), not with DDL on every run.
DELETE FROM ampkit_state WHERE key = 'schema';
INSERT INTO ampkit_state (key, value, run_id, updated_at) VALUES ('schema', CAST(NULL AS TIMESTAMP), @schema_version, @now)
