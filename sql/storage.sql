-- storage.sql: a create stores its row as an INSERT statement would, also
-- when a superuser has changed edusync.sync_errors.  A new error's row is
-- inserted without a statement (row_insert.c) only while the table has
-- nothing that only a statement would apply: statement triggers,
-- transition tables, rules, or columns other than its own.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS edusync;
RESET client_min_messages;
CREATE EXTENSION edusync;
INSERT INTO edusync.sync_profiles (id, display_name) VALUES ('s1', 'storage');
CREATE TABLE storage_log (what text);

-- The plain table: the row goes in without a statement (DEBUG2 says so),
-- created_at as its default gives.
BEGIN;
SET LOCAL client_min_messages = debug2;
SELECT edusync.create_sync_error('s1', 'Student', 'c', 'plain') IS NOT NULL AS created;
RESET client_min_messages;
SELECT created_at = now() AS created_now FROM edusync.sync_errors
	WHERE error_message = 'plain';
COMMIT;

-- The profile is locked FOR KEY SHARE without a query where that is the
-- same as the foreign key's own check (READ COMMITTED); elsewhere the check
-- is left to the key, as with an INSERT statement.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SET LOCAL client_min_messages = debug2;
SELECT edusync.create_sync_error('s1', 'Student', 'c', 'rr') IS NOT NULL AS created;
COMMIT;
ALTER TABLE edusync.sync_profiles ENABLE ROW LEVEL SECURITY;
BEGIN;
SET LOCAL client_min_messages = debug2;
SELECT edusync.create_sync_error('s1', 'Student', 'c', 'rls') IS NOT NULL AS created;
COMMIT;
ALTER TABLE edusync.sync_profiles DISABLE ROW LEVEL SECURITY;

-- Partial indexes a superuser adds take the rows their predicates hold
-- for, and only them: "column = 'constant'" read by row_insert.c, any
-- other predicate by the executor.  Counted through each index (whose
-- predicate the planner does not check again) and through the table.
CREATE INDEX s_code_c ON edusync.sync_errors (id) WHERE error_code = 'pc';
CREATE INDEX s_code_other ON edusync.sync_errors (id) WHERE error_code = 'pz';
CREATE INDEX s_code_both ON edusync.sync_errors (id)
	WHERE error_code = 'pc' AND entry_type = 'Teacher';
CREATE INDEX s_long ON edusync.sync_errors (id) WHERE length(error_message) > 4;
SET client_min_messages = debug2;
SELECT count(edusync.create_sync_error('s1', e, c, m))
FROM (VALUES ('Student', 'pc', 'p1'), ('Teacher', 'pc', 'p2'), ('Teacher', 'pz', 'p3 long')) v(e, c, m);
RESET client_min_messages;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT count(*) AS code_c FROM edusync.sync_errors WHERE error_code = 'pc';
SELECT count(*) AS code_other FROM edusync.sync_errors WHERE error_code = 'pz';
SELECT count(*) AS code_both FROM edusync.sync_errors WHERE error_code = 'pc' AND entry_type = 'Teacher';
SELECT count(*) AS long FROM edusync.sync_errors WHERE length(error_message) > 4;
EXPLAIN (COSTS OFF) SELECT count(*) FROM edusync.sync_errors WHERE error_code = 'pc';
RESET enable_seqscan;
RESET enable_bitmapscan;
SET enable_indexscan = off;
SET enable_bitmapscan = off;
SELECT count(*) FILTER (WHERE error_code = 'pc') AS code_c,
	count(*) FILTER (WHERE error_code = 'pz') AS code_other,
	count(*) FILTER (WHERE error_code = 'pc' AND entry_type = 'Teacher') AS code_both,
	count(*) FILTER (WHERE length(error_message) > 4) AS long
FROM edusync.sync_errors;
RESET enable_indexscan;
RESET enable_bitmapscan;
DROP INDEX edusync.s_code_c, edusync.s_code_other, edusync.s_code_both, edusync.s_long;

-- A read-only transaction stores nothing, refused as the INSERT statement
-- is (25006).
BEGIN TRANSACTION READ ONLY;
SELECT edusync.create_sync_error('s1', 'Student', 'c', 'read only');
\echo :SQLSTATE
ROLLBACK;

-- Statement triggers, before and after, fire once.  (Triggers run with
-- the call's pinned search_path: they qualify their names.)
CREATE FUNCTION log_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.storage_log VALUES (TG_TABLE_NAME || ' ' || TG_WHEN || ' ' || TG_LEVEL);
	RETURN NULL;
END $$;
CREATE TRIGGER s_before BEFORE INSERT ON edusync.sync_errors
	FOR EACH STATEMENT EXECUTE FUNCTION log_statement();
CREATE TRIGGER s_after AFTER INSERT ON edusync.sync_errors
	FOR EACH STATEMENT EXECUTE FUNCTION log_statement();
SET client_min_messages = debug2;
SELECT edusync.create_sync_error('s1', 'Student', 'c', 'statement triggers') IS NOT NULL AS created;
RESET client_min_messages;
SELECT what FROM storage_log ORDER BY what;
DROP TRIGGER s_before ON edusync.sync_errors;
DROP TRIGGER s_after ON edusync.sync_errors;
TRUNCATE storage_log;

-- A transition table holds the new row.
CREATE FUNCTION log_new_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.storage_log SELECT 'new row: ' || error_message FROM new_rows;
	RETURN NULL;
END $$;
CREATE TRIGGER s_new AFTER INSERT ON edusync.sync_errors
	REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION log_new_rows();
SELECT edusync.create_sync_error('s1', 'Student', 'c', 'transition table') IS NOT NULL AS created;
SELECT what FROM storage_log;
DROP TRIGGER s_new ON edusync.sync_errors;
TRUNCATE storage_log;

-- A rule applies.
CREATE RULE s_also AS ON INSERT TO edusync.sync_errors
	DO ALSO INSERT INTO public.storage_log VALUES ('rule: ' || NEW.error_message);
SELECT edusync.create_sync_error('s1', 'Student', 'c', 'a rule') IS NOT NULL AS created;
SELECT what FROM storage_log;
DROP RULE s_also ON edusync.sync_errors;
TRUNCATE storage_log;

-- Row triggers apply on either path: a BEFORE trigger changes the stored
-- row, an AFTER trigger sees it.
CREATE FUNCTION upper_code() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.error_code := upper(NEW.error_code);
	RETURN NEW;
END $$;
CREATE FUNCTION log_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.storage_log VALUES ('row: ' || NEW.error_code);
	RETURN NULL;
END $$;
CREATE TRIGGER s_upper BEFORE INSERT ON edusync.sync_errors
	FOR EACH ROW EXECUTE FUNCTION upper_code();
CREATE TRIGGER s_row AFTER INSERT ON edusync.sync_errors
	FOR EACH ROW EXECUTE FUNCTION log_row();
SET client_min_messages = debug2;
SELECT edusync.create_sync_error('s1', 'Student', 'lower', 'row triggers') IS NOT NULL AS created;
RESET client_min_messages;
SELECT error_code FROM edusync.sync_errors WHERE error_message = 'row triggers';
SELECT what FROM storage_log;
DROP TRIGGER s_upper ON edusync.sync_errors;
DROP TRIGGER s_row ON edusync.sync_errors;
TRUNCATE storage_log;

-- A BEFORE trigger that keeps the row out: no row, as with the statement
-- (which then finds no row for the id it generated either).
CREATE FUNCTION keep_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RETURN NULL;
END $$;
CREATE TRIGGER s_keep_out BEFORE INSERT ON edusync.sync_errors
	FOR EACH ROW EXECUTE FUNCTION keep_out();
\set VERBOSITY sqlstate
SELECT edusync.create_sync_error('s1', 'Student', 'c', 'kept out');
\set VERBOSITY default
DROP TRIGGER s_keep_out ON edusync.sync_errors;
SELECT count(*) AS kept_out FROM edusync.sync_errors WHERE error_message = 'kept out';

-- A column added with a default gets its default; once dropped, creates
-- go on (by the statement: the dropped column stays in the table's shape).
ALTER TABLE edusync.sync_errors ADD COLUMN note text DEFAULT 'noted';
SELECT edusync.create_sync_error('s1', 'Student', 'c', 'added column') IS NOT NULL AS created;
SELECT note FROM edusync.sync_errors WHERE error_message = 'added column';
ALTER TABLE edusync.sync_errors DROP COLUMN note;
SELECT edusync.create_sync_error('s1', 'Student', 'c', 'dropped column') IS NOT NULL AS created;

-- Constraints refuse as the statement's would, with nothing left behind
-- (terse: the failing row holds a random id and the time).
ALTER TABLE edusync.sync_errors ADD CONSTRAINT s_short CHECK (length(error_message) < 20);
\set VERBOSITY terse
SELECT edusync.create_sync_error('s1', 'Student', 'c', 'a message that is too long');
\echo :SQLSTATE
\set VERBOSITY default
ALTER TABLE edusync.sync_errors DROP CONSTRAINT s_short;
SELECT edusync.create_sync_error('nope', 'Student', 'c', 'unknown profile');
\echo :SQLSTATE

SELECT error_message FROM edusync.sync_errors ORDER BY error_message;

DROP TABLE storage_log;
DROP FUNCTION log_statement(), log_new_rows(), upper_code(), log_row(), keep_out();
DROP EXTENSION edusync;
