-- lifecycle.sql: forwarding without preloading, DROP and CREATE EXTENSION
-- again, and a hostile search_path.
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

-- This cluster does not preload edusync: forwarding is refused with 55000
-- (and a hint), the error is not stored.
SELECT count(*) AS before FROM edusync.sync_errors \gset
SET edusync.forward = 'sync';
SELECT edusync.create_sync_error('p1', '{"entryType": "Student", "errorCode": "c", "errorMessage": "m"}');
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', 'Student', 'c', 'm');
\echo :SQLSTATE
SET edusync.forward = 'async';
SELECT edusync.create_sync_error('p1', 'Student', 'c', 'm');
\echo :SQLSTATE
RESET edusync.forward;
SELECT count(*) - :before AS new_rows FROM edusync.sync_errors;
SELECT set_config('edusync.forward', 'sometimes', false);
\echo :SQLSTATE
SELECT set_config('edusync.nonexistent', 'x', false);
\echo :SQLSTATE

-- retry_failed() queues failed deliveries again (of one profile, or all),
-- with a fresh count of attempts; delivery_queue sums the queue up.
INSERT INTO edusync.sync_profiles (id, display_name) VALUES ('q2', 'queue');
SELECT count(*) FROM (
	SELECT edusync.create_sync_error(p, 'Student', 'c', 'queued ' || p || g)
	FROM (VALUES ('p1'), ('q2')) v(p), generate_series(1, 2) g) s;
INSERT INTO edusync.deliveries (profile_id, error_id, status, attempts, last_status, last_error)
	SELECT profile_id, id, 'failed', 8, 503, 'ServiceUnavailable: Service unavailable.'
	FROM edusync.sync_errors WHERE error_message LIKE 'queued %';
SELECT pending, failed, delivered_last_hour, oldest_pending_age IS NULL AS none_pending
	FROM edusync.delivery_queue;
SELECT edusync.retry_failed('q2');
SELECT profile_id, status, attempts, last_status FROM edusync.deliveries ORDER BY 1, 2;
SELECT edusync.retry_failed();
SELECT edusync.retry_failed();
SELECT pending, failed, oldest_pending_age IS NOT NULL AS some_pending FROM edusync.delivery_queue;
DELETE FROM edusync.deliveries;

-- A hostile search_path changes nothing.
CREATE SCHEMA regress_evil;
CREATE TABLE regress_evil.sync_errors (LIKE edusync.sync_errors);
CREATE FUNCTION regress_evil.now() RETURNS timestamptz LANGUAGE sql AS $$SELECT 'epoch'::timestamptz$$;
SET search_path = regress_evil, public;
SELECT edusync.create_sync_error('p1', 'Student', 'c', 'evil')->>'errorMessage';
SELECT count(*) AS evil_rows FROM regress_evil.sync_errors;
RESET search_path;
SELECT count(*) AS stored FROM edusync.sync_errors WHERE error_message = 'evil';
-- Nor do operators and functions that shadow pg_catalog's, put first by the
-- caller: every entry point runs as the extension's owner, with its names
-- qualified and the search path pinned (no SET clause on the functions).
CREATE FUNCTION regress_evil.evil_texteq(text, text) RETURNS boolean
	LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'regress_evil.= (text) ran'; END$$;
CREATE OPERATOR regress_evil.= (LEFTARG = text, RIGHTARG = text,
	FUNCTION = regress_evil.evil_texteq);
CREATE FUNCTION regress_evil.evil_uuideq(uuid, uuid) RETURNS boolean
	LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'regress_evil.= (uuid) ran'; END$$;
CREATE OPERATOR regress_evil.= (LEFTARG = uuid, RIGHTARG = uuid,
	FUNCTION = regress_evil.evil_uuideq);
CREATE FUNCTION regress_evil.unnest(anyarray) RETURNS SETOF anyelement
	LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'regress_evil.unnest ran'; END$$;
CREATE FUNCTION regress_evil.length(text) RETURNS integer
	LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'regress_evil.length ran'; END$$;
SELECT p.proname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
	WHERE p.pronamespace = 'edusync'::regnamespace AND l.lanname = 'c'
	AND p.prosecdef AND p.proconfig IS NOT NULL;
SET search_path = regress_evil, pg_catalog, public;
SELECT edusync.create_sync_error('p1', 'Student', 'c', 'shadowed',
	id => 'a0000000-0000-4000-8000-00000000000a')->>'errorMessage';
SELECT edusync.create_sync_error('p1', 'Student', 'c', 'shadowed',
	id => 'a0000000-0000-4000-8000-00000000000a')->>'errorMessage' AS replayed;
SELECT edusync.create_sync_error('p1', '{"entryType": "Student", "errorCode": "c",
	"errorMessage": "shadowed body"}')->>'errorMessage';
SELECT count(*) FROM edusync.create_sync_errors('p1', '[{"entryType": "Student",
	"errorCode": "c", "errorMessage": "shadowed bulk"}]');
SELECT edusync.get_sync_error('p1', 'a0000000-0000-4000-8000-00000000000a')->>'errorMessage';
SELECT jsonb_array_length(edusync.list_sync_errors('p1', 1, 0)->'value') AS page;
SELECT edusync.create_sync_error('nope', 'Student', 'c', 'm');
RESET search_path;

-- DROP EXTENSION takes everything but the (now empty) schema; CREATE
-- EXTENSION works again, also in the same session (whose prepared plans
-- must follow the new tables).
DROP EXTENSION edusync;
SELECT count(*) AS objects_left FROM pg_class WHERE relnamespace = 'edusync'::regnamespace;
SELECT count(*) AS functions_left FROM pg_proc WHERE pronamespace = 'edusync'::regnamespace;
SET search_path = regress_evil, public;
CREATE EXTENSION edusync;
RESET search_path;
SELECT count(*) FROM regress_evil.sync_errors;
INSERT INTO edusync.sync_profiles (id, display_name) VALUES ('p1', 'again');
SELECT edusync.create_sync_error('p1', '{"id": "bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc",
	"entryType": "Student", "errorCode": "c", "errorMessage": "after re-create",
	"recordedDateTime": "2017-07-05T00:52:45Z"}');
SELECT edusync.create_sync_error('p1', 'Student', 'c', 'a new id after re-create')->>'errorMessage';
SELECT count(*) FROM edusync.sync_errors;
SELECT edusync.list_sync_errors('p1')->'value'->0->>'errorMessage';
-- the schema and its contents are not relocatable, and are PUBLIC-free
SELECT extrelocatable, extnamespace::regnamespace FROM pg_extension WHERE extname = 'edusync';
SELECT count(*) AS public_grants FROM information_schema.role_routine_grants
	WHERE routine_schema = 'edusync' AND grantee = 'PUBLIC';
SELECT has_schema_privilege('public', 'edusync', 'USAGE') AS public_usage;
-- the data tables are dumped by pg_dump
SELECT extconfig::regclass[] FROM pg_extension WHERE extname = 'edusync';
DROP SCHEMA regress_evil CASCADE;

-- An edusync schema owned by an ordinary role is refused: its owner could
-- otherwise replace what the extension installs there.
DROP EXTENSION edusync;
DROP SCHEMA edusync;
CREATE ROLE regress_edusync_squatter;
CREATE SCHEMA edusync AUTHORIZATION regress_edusync_squatter;
CREATE EXTENSION edusync;
\echo :SQLSTATE
DROP SCHEMA edusync;
DROP ROLE regress_edusync_squatter;
CREATE EXTENSION edusync;
SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'edusync';

-- A schema edusync where others may create objects, or that holds another
-- role's objects, is refused too: such an object (an overload of ours that
-- takes text, say) is what callers with an untyped literal would reach.
DROP EXTENSION edusync;
CREATE ROLE regress_edusync_planter;
GRANT USAGE, CREATE ON SCHEMA edusync TO regress_edusync_planter;
CREATE EXTENSION edusync;
\echo :SQLSTATE
SET ROLE regress_edusync_planter;
CREATE FUNCTION edusync.get_sync_error(text, text) RETURNS jsonb
	LANGUAGE sql AS $$SELECT '{"planted": true}'::jsonb$$;
RESET ROLE;
REVOKE CREATE ON SCHEMA edusync FROM regress_edusync_planter;
CREATE EXTENSION edusync;
\echo :SQLSTATE
DROP FUNCTION edusync.get_sync_error(text, text);
GRANT CREATE ON SCHEMA edusync TO PUBLIC;
CREATE EXTENSION edusync;
\echo :SQLSTATE
REVOKE ALL ON SCHEMA edusync FROM PUBLIC, regress_edusync_planter;
DROP ROLE regress_edusync_planter;
CREATE EXTENSION edusync;
SELECT proname, count(*) AS overloads FROM pg_proc
	WHERE pronamespace = 'edusync'::regnamespace GROUP BY 1 ORDER BY 1;
