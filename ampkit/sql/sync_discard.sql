-- A dry run leaves nothing behind.
DELETE FROM ampkit_pending WHERE run_id = @run_id;
DELETE FROM ampkit_run_rules WHERE run_id = @run_id
