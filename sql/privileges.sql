-- privileges.sql: nothing is usable by PUBLIC; the README's GRANTs make a
-- writer and a reader; neither can read secrets, change forwarding
-- settings, or write the tables around the functions.
\set VERBOSITY default
\set SHOW_CONTEXT never
-- This file stands alone: a fresh extension (quietly dropped first, when an
-- earlier file left one) and its own profiles.  A refused statement shows
-- the error as psql does (message, DETAIL, HINT), then its SQLSTATE.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS edusync;
RESET client_min_messages;
CREATE EXTENSION edusync;
INSERT INTO edusync.sync_profiles (id, display_name)
	VALUES ('p1', 'Contoso High School');
CREATE ROLE regress_edusync_nobody;
CREATE ROLE regress_edusync_writer;
CREATE ROLE regress_edusync_reader;

-- the GRANTs of the README
GRANT USAGE ON SCHEMA edusync TO regress_edusync_writer, regress_edusync_reader;
GRANT EXECUTE ON FUNCTION
	edusync.create_sync_error(text, jsonb),
	edusync.create_sync_error(text, text, text, text, text, text, timestamptz, uuid),
	edusync.create_sync_errors(text, jsonb),
	edusync.get_sync_error(text, uuid),
	edusync.list_sync_errors(text, int, int, text)
	TO regress_edusync_writer;
GRANT EXECUTE ON FUNCTION
	edusync.get_sync_error(text, uuid),
	edusync.list_sync_errors(text, int, int, text)
	TO regress_edusync_reader;
GRANT SELECT ON edusync.sync_profiles TO regress_edusync_writer, regress_edusync_reader;

-- secrets set by the superuser for this session (the library is loaded
-- first, so the settings are defined with their protections)
LOAD 'edusync';
SET edusync.bearer_token = 'regress-secret-token';
SET edusync.client_secret = 'regress-client-secret';

-- No grants: nothing works.
SET ROLE regress_edusync_nobody;
SELECT edusync.create_sync_error('p1', '{"entryType": "Student", "errorCode": "c", "errorMessage": "m"}');
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', 'Student', 'c', 'm');
\echo :SQLSTATE
SELECT edusync.get_sync_error('p1', 'bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc');
\echo :SQLSTATE
SELECT edusync.list_sync_errors('p1');
\echo :SQLSTATE
SELECT edusync.retry_failed();
\echo :SQLSTATE
SELECT count(*)::text FROM edusync.sync_errors;
\echo :SQLSTATE
SELECT count(*)::text FROM edusync.sync_profiles;
\echo :SQLSTATE
SELECT count(*)::text FROM edusync.deliveries;
\echo :SQLSTATE
SELECT count(*)::text FROM edusync.delivery_queue;
\echo :SQLSTATE
SELECT NULL::edusync.education_sync_error::text;
\echo :SQLSTATE
RESET ROLE;

-- The writer creates and reads errors, through the functions only.
SET ROLE regress_edusync_writer;
SELECT edusync.create_sync_error('p1', '{"id": "0d0e0f10-1112-4314-9516-171819202122",
	"entryType": "Student", "errorCode": "c", "errorMessage": "by the writer",
	"recordedDateTime": "2021-01-01T00:00:00Z"}')->>'errorMessage';
SELECT edusync.create_sync_error('p1', 'Student', 'c', 'typed, by the writer')->>'errorMessage';
SELECT edusync.get_sync_error('p1', '0d0e0f10-1112-4314-9516-171819202122')->>'errorMessage';
SELECT jsonb_typeof(edusync.list_sync_errors('p1', 1)->'value');
INSERT INTO edusync.sync_errors (profile_id, id, entry_type, error_code, error_message, recorded_date_time)
	VALUES ('p1', gen_random_uuid(), 'Student', 'c', 'direct', now()) RETURNING 'inserted';
\echo :SQLSTATE
UPDATE edusync.sync_errors SET error_message = 'changed' RETURNING 'updated';
\echo :SQLSTATE
DELETE FROM edusync.sync_errors RETURNING 'deleted';
\echo :SQLSTATE
INSERT INTO edusync.sync_profiles VALUES ('mine', 'mine') RETURNING 'inserted';
\echo :SQLSTATE
UPDATE edusync.deliveries SET status = 'failed' RETURNING 'updated';
\echo :SQLSTATE
SELECT edusync.retry_failed();
\echo :SQLSTATE
-- secrets are hidden, forwarding settings are not the writer's to change
SHOW edusync.bearer_token;
\echo :SQLSTATE
SHOW edusync.client_secret;
\echo :SQLSTATE
SELECT current_setting('edusync.bearer_token');
\echo :SQLSTATE
SELECT count(*) FROM pg_settings WHERE name IN ('edusync.bearer_token', 'edusync.client_secret');
SELECT count(*) FROM pg_settings WHERE setting LIKE '%regress-secret%' OR setting LIKE '%regress-client%';
SET edusync.graph_url = 'https://evil.example/beta';
\echo :SQLSTATE
SET edusync.bearer_token = 'x';
\echo :SQLSTATE
SET edusync.max_attempts = 1;
\echo :SQLSTATE
SELECT set_config('edusync.forward', 'off', false);
RESET ROLE;

-- The reader reads only.
SET ROLE regress_edusync_reader;
SELECT edusync.get_sync_error('p1', '0d0e0f10-1112-4314-9516-171819202122')->>'errorMessage';
SELECT edusync.create_sync_error('p1', 'Student', 'c', 'by the reader');
\echo :SQLSTATE
SELECT count(*)::text FROM edusync.sync_errors;
\echo :SQLSTATE
SHOW edusync.client_secret;
\echo :SQLSTATE
RESET ROLE;

-- A superuser sees the secrets.
SHOW edusync.bearer_token;

RESET edusync.bearer_token;
RESET edusync.client_secret;
REVOKE ALL ON SCHEMA edusync FROM regress_edusync_writer, regress_edusync_reader;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA edusync FROM regress_edusync_writer, regress_edusync_reader;
REVOKE ALL ON ALL TABLES IN SCHEMA edusync FROM regress_edusync_writer, regress_edusync_reader;
DROP ROLE regress_edusync_nobody, regress_edusync_writer, regress_edusync_reader;
