-- trust.sql: what a hostile review of 0.1.0 broke, in a plain session:
-- replays inside one statement, links built without the send-time checks,
-- dot-segments in a profile id, and text that cannot be sent as UTF-8.
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
	VALUES ('t1', 'trust'), ('..', 'dots'), ('.', 'dot');

-- A replay of an id inside the same statement answers the stored error
-- (same content) or refuses it with 23505 (other content), never 23503.
SELECT count(*) AS calls, count(DISTINCT a::text) AS answers
FROM (SELECT edusync.create_sync_error('t1', '{"id": "0b6b1a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
		"entryType": "Student", "errorCode": "c", "errorMessage": "same"}') a
	  FROM generate_series(1, 2)) s;
SELECT edusync.create_sync_error('t1', 'Student', 'c', 'other ' || g,
		id => '1b6b1a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b')
FROM generate_series(1, 2) g;
\echo :SQLSTATE
SELECT count(*) AS stored FROM edusync.sync_errors WHERE profile_id = 't1';

-- The typed overload too: recorded_date_time left out means "now" in
-- both calls of the statement, so the replay is the same content.
SELECT count(DISTINCT a::text) AS answers
FROM (SELECT edusync.create_sync_error('t1', 'Teacher', 'c', 'typed',
		id => '2b6b1a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b') a
	  FROM generate_series(1, 3)) s;

-- URL settings are checked when set (22023), not at the first send.
SET edusync.graph_url = 'http://graph.example.com/beta/';
\echo :SQLSTATE
SET edusync.graph_url = 'ht!tp:/nowhere';
\echo :SQLSTATE
SET edusync.graph_url = 'https://user:pw@graph.example.com/beta';
\echo :SQLSTATE
SET edusync.errors_path = '/education/synchronizationProfiles/errors';
\echo :SQLSTATE
SET edusync.errors_path = 'education/{profile_id}';
\echo :SQLSTATE
SET edusync.token_url = 'http://login.example.com/{tenant}/token';
\echo :SQLSTATE
ALTER SYSTEM SET edusync.databases = 'a,,b';
\echo :SQLSTATE
SHOW edusync.graph_url;
-- Links are text, built from the configured base without a send's checks.
-- (A $skiptoken holds the last row's recordedDateTime, here the time of
-- the call: it is masked.)
SET edusync.graph_url = 'https://graph.contoso.test/beta/';
SELECT edusync.list_sync_errors('t1', 1)->>'@odata.context' AS context;
SELECT regexp_replace(edusync.list_sync_errors('t1', 1)->>'@odata.nextLink',
	'skiptoken=[A-Za-z0-9_-]+$', 'skiptoken=...') AS next_link;
-- an errors_path with a query of its own: the paging goes after an &
SET edusync.errors_path = '/education/synchronizationProfiles/{profile_id}/errors?code=abc';
SELECT regexp_replace(edusync.list_sync_errors('t1', 1)->>'@odata.nextLink',
	'skiptoken=[A-Za-z0-9_-]+$', 'skiptoken=...') AS next_link;
RESET edusync.errors_path;
RESET edusync.graph_url;

-- Dot-segments cannot climb the path: "." and ".." are percent-encoded.
SELECT count(*) FROM (SELECT edusync.create_sync_error(p, 'Student', 'c', 'dots ' || g)
	FROM (VALUES ('.'), ('..')) v(p), generate_series(1, 2) g) s;
SELECT regexp_replace(edusync.list_sync_errors('..', 1)->>'@odata.nextLink',
	'skiptoken=[A-Za-z0-9_-]+$', 'skiptoken=...') AS dots;
SELECT regexp_replace(edusync.list_sync_errors('.', 1)->>'@odata.nextLink',
	'skiptoken=[A-Za-z0-9_-]+$', 'skiptoken=...') AS dot;

-- Without an endpoint, forwarding is refused with 55000 and a hint (the
-- preload check comes first in this cluster, which does not preload).
SHOW edusync.graph_url;
