-- read.sql: get_sync_error and list_sync_errors.
\set VERBOSITY default
\set SHOW_CONTEXT never
-- This file stands alone: a fresh extension (quietly dropped first, when an
-- earlier file left one) and its own profiles.  A refused statement shows
-- the error as psql does (message, DETAIL, HINT), then its SQLSTATE.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS edusync;
RESET client_min_messages;
CREATE EXTENSION edusync;
INSERT INTO edusync.sync_profiles (id, display_name) VALUES
	('p1', 'Contoso High School'),
	('p2', 'Fabrikam Elementary');
-- the same id in two profiles, with other content
SELECT edusync.create_sync_error('p1', '{
  "id": "bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc",
  "entryType": "Student",
  "errorCode": "UnsynchronizableChange",
  "errorMessage": "Student cannot be updated ...",
  "joiningValue": "richard.2wilson@testschool.edu",
  "recordedDateTime": "2017-07-05T00:52:45Z",
  "reportableIdentifier": "richard.2wilson"
}') IS NOT NULL AS stored;
SELECT edusync.create_sync_error('p2', '{"id": "bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc",
	"entryType": "Section", "errorCode": "c", "errorMessage": "m",
	"recordedDateTime": "2018-01-01T00:00:00Z"}') IS NOT NULL AS stored;

-- get answers byte for byte what create answered; NULL when absent.
SELECT edusync.get_sync_error('p1', 'bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc');
SELECT edusync.get_sync_error('p1', 'bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc')::text =
	   edusync.create_sync_error('p1', '{"id": "bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc",
		"entryType": "Student", "errorCode": "UnsynchronizableChange",
		"errorMessage": "Student cannot be updated ...",
		"joiningValue": "richard.2wilson@testschool.edu",
		"reportableIdentifier": "richard.2wilson"}')::text AS same_bytes;
SELECT edusync.get_sync_error('p1', '00000000-0000-0000-0000-000000000000') IS NULL AS absent;
SELECT edusync.get_sync_error('nope', 'bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc') IS NULL AS absent;
SELECT edusync.get_sync_error('p2', 'bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc')->>'entryType' AS other_profile;
SELECT edusync.get_sync_error(NULL, NULL) IS NULL AS strict;

-- list: newest first (recordedDateTime, then id), paged with $top/$skip.
INSERT INTO edusync.sync_profiles (id, display_name) VALUES ('list/me?#%', 'odd id');
SELECT edusync.create_sync_error('list/me?#%', jsonb_build_object(
	'id', format('00000000-0000-4000-8000-%s', lpad(i::text, 12, '0')),
	'entryType', 'Student', 'errorCode', 'c', 'errorMessage', 'error ' || i,
	'recordedDateTime', format('2020-01-%sT00:00:00Z', lpad((i % 3 + 1)::text, 2, '0'))))
	IS NOT NULL
FROM generate_series(1, 5) AS i;
SELECT jsonb_pretty(edusync.list_sync_errors('list/me?#%', 2));
SELECT l->'@odata.nextLink', jsonb_path_query_array(l, '$.value[*].errorMessage')
FROM edusync.list_sync_errors('list/me?#%', 2, 2) AS l;
SELECT l ? '@odata.nextLink' AS has_next, jsonb_path_query_array(l, '$.value[*].errorMessage')
FROM edusync.list_sync_errors('list/me?#%', 2, 4) AS l;
SELECT l ? '@odata.nextLink' AS has_next, jsonb_array_length(l->'value')
FROM edusync.list_sync_errors('list/me?#%') AS l;
SELECT jsonb_array_length(edusync.list_sync_errors('list/me?#%', 10, 100)->'value') AS past_the_end;
-- every listed answer is the answer get gives
SELECT bool_and(v = edusync.get_sync_error('list/me?#%', (v->>'id')::uuid))
FROM jsonb_array_elements(edusync.list_sync_errors('list/me?#%', 999)->'value') AS v;
-- a profile with no errors yet: an empty page
INSERT INTO edusync.sync_profiles (id, display_name) VALUES ('empty', 'no errors');
SELECT edusync.list_sync_errors('empty');

-- refused: unknown profile 23503, $top out of 1..999 or negative $skip 22023
SELECT edusync.list_sync_errors('nope');
\echo :SQLSTATE
SELECT edusync.list_sync_errors('p1', 0);
\echo :SQLSTATE
SELECT edusync.list_sync_errors('p1', 1000);
\echo :SQLSTATE
SELECT edusync.list_sync_errors('p1', 10, -1);
\echo :SQLSTATE
SELECT edusync.list_sync_errors('', 10);
\echo :SQLSTATE
