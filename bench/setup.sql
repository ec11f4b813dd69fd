CREATE EXTENSION IF NOT EXISTS edusync;
INSERT INTO edusync.sync_profiles (id, display_name) VALUES ('bench-profile', 'bench')
	ON CONFLICT DO NOTHING;
CREATE SCHEMA IF NOT EXISTS bench;
-- the baseline table: same columns, key (the uuid first) and foreign key as
-- edusync.sync_errors
CREATE TABLE IF NOT EXISTS bench.plain_errors (LIKE edusync.sync_errors INCLUDING DEFAULTS);
ALTER TABLE bench.plain_errors ADD PRIMARY KEY (id, profile_id),
	ADD FOREIGN KEY (profile_id) REFERENCES edusync.sync_profiles (id);
-- a second baseline: the same table with every index edusync.sync_errors
-- has (the key and list_sync_errors' index), to show what is left once the
-- list index, which lists need, is paid by both
CREATE TABLE IF NOT EXISTS bench.indexed_errors (LIKE edusync.sync_errors INCLUDING DEFAULTS INCLUDING INDEXES);
DO $$BEGIN
	ALTER TABLE bench.indexed_errors
		ADD FOREIGN KEY (profile_id) REFERENCES edusync.sync_profiles (id);
EXCEPTION WHEN duplicate_object THEN NULL;
END$$;
