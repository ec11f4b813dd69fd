CREATE EXTENSION IF NOT EXISTS edusync;
INSERT INTO edusync.sync_profiles (id, display_name) VALUES ('bench-profile', 'bench')
	ON CONFLICT DO NOTHING;
CREATE SCHEMA IF NOT EXISTS bench;
-- the baseline table: same columns, key and foreign key as edusync.sync_errors
CREATE TABLE IF NOT EXISTS bench.plain_errors (LIKE edusync.sync_errors INCLUDING DEFAULTS);
ALTER TABLE bench.plain_errors ADD PRIMARY KEY (profile_id, id),
	ADD FOREIGN KEY (profile_id) REFERENCES edusync.sync_profiles (id);
-- diagnostic only: the same C function without SECURITY DEFINER and its
-- pinned search_path, to show what the pinning costs
CREATE OR REPLACE FUNCTION bench.create_unpinned(profile_id text, body jsonb) RETURNS jsonb
	AS '$libdir/edusync', 'create_sync_error_body' LANGUAGE C VOLATILE;
