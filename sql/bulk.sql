-- bulk.sql: create_sync_errors(profile_id, bodies), a JSON array of Graph
-- request bodies: every accepted and refused input, all or nothing.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS edusync;
RESET client_min_messages;
CREATE EXTENSION edusync;
\set VERBOSITY default

INSERT INTO edusync.sync_profiles (id, display_name) VALUES
	('b1', 'Bulk High School'), ('b2', 'Other School');

-- Accepted: one 201 body per element, in the array's order.
SELECT n, jsonb_pretty(a) FROM edusync.create_sync_errors('b1', '[
	{"id": "00000000-0000-4000-8000-000000000001", "entryType": "Student",
	 "errorCode": "UnsynchronizableChange", "errorMessage": "first",
	 "joiningValue": "s1@school.edu", "recordedDateTime": "2017-07-05T02:52:45.1+02:00",
	 "reportableIdentifier": "s1"},
	{"@odata.type": "#Microsoft.Education.DataSync.educationSynchronizationError",
	 "id": "00000000-0000-4000-8000-000000000002", "entryType": "Teacher",
	 "errorCode": "c", "errorMessage": "second", "recordedDateTime": "2017-07-05T00:52:45Z"}
]') WITH ORDINALITY AS t(a, n);
-- what get answers for them, byte for byte
CREATE TEMP TABLE answers AS
SELECT a FROM edusync.create_sync_errors('b1', '[{"id": "00000000-0000-4000-8000-000000000003",
	"entryType": "School", "errorCode": "c", "errorMessage": "third",
	"recordedDateTime": "2017-07-06T00:00:00Z"}]') AS a;
SELECT a::text = edusync.get_sync_error('b1', (a->>'id')::uuid)::text AS same_as_get FROM answers;
-- without id and recordedDateTime: a new id each, the transaction's start
BEGIN;
SELECT count(DISTINCT a->>'id') AS ids,
	   bool_and((a->>'recordedDateTime')::timestamptz = now()) AS at_now
FROM edusync.create_sync_errors('b1', '[
	{"entryType": "Student", "errorCode": "c", "errorMessage": "no id 1"},
	{"entryType": "Student", "errorCode": "c", "errorMessage": "no id 2"},
	{"entryType": "Student", "errorCode": "c", "errorMessage": "no id 3"}]') AS a;
ROLLBACK;
-- an empty array: no rows
SELECT count(*) AS empty FROM edusync.create_sync_errors('b1', '[]');
SELECT count(*) AS stored FROM edusync.sync_errors WHERE profile_id = 'b1';

-- Replays, as in the single create: the same id twice with the same
-- content in one array, and an id stored before, answer the stored row.
SELECT a->>'id' AS id, a->>'errorMessage' AS message, a->>'recordedDateTime' AS recorded
FROM edusync.create_sync_errors('b1', '[
	{"id": "00000000-0000-4000-8000-000000000004", "entryType": "Student",
	 "errorCode": "c", "errorMessage": "twice", "recordedDateTime": "2018-01-01T00:00:00Z"},
	{"id": "00000000-0000-4000-8000-000000000004", "entryType": "Student",
	 "errorCode": "c", "errorMessage": "twice"},
	{"id": "00000000-0000-4000-8000-000000000001", "entryType": "Student",
	 "errorCode": "UnsynchronizableChange", "errorMessage": "first",
	 "joiningValue": "s1@school.edu", "reportableIdentifier": "s1"},
	{"id": "00000000-0000-4000-8000-000000000005", "entryType": "Student",
	 "errorCode": "c", "errorMessage": "new beside replays", "recordedDateTime": "2018-01-02T00:00:00Z"}
]') AS a;
SELECT id, error_message FROM edusync.sync_errors WHERE profile_id = 'b1' ORDER BY id;
-- the same id under another profile is another error
SELECT a->>'errorMessage' AS other_profile FROM edusync.create_sync_errors('b2',
	'[{"id": "00000000-0000-4000-8000-000000000001", "entryType": "Student",
	  "errorCode": "c", "errorMessage": "b2 first"}]') AS a;
-- a whole array sent again: every element is a replay, nothing new
SELECT count(*) AS replays FROM edusync.create_sync_errors('b1', '[
	{"id": "00000000-0000-4000-8000-000000000002", "entryType": "Teacher",
	 "errorCode": "c", "errorMessage": "second", "recordedDateTime": "2017-07-05T00:52:45Z"},
	{"id": "00000000-0000-4000-8000-000000000003", "entryType": "School",
	 "errorCode": "c", "errorMessage": "third"}]');
SELECT count(*) AS stored FROM edusync.sync_errors WHERE profile_id = 'b1';

-- Refused arguments.
SELECT edusync.create_sync_errors(NULL, '[]');
\echo :SQLSTATE
SELECT edusync.create_sync_errors('', '[]');
\echo :SQLSTATE
SELECT edusync.create_sync_errors('nope', '[{"entryType": "S", "errorCode": "c", "errorMessage": "m"}]');
\echo :SQLSTATE
SELECT edusync.create_sync_errors('nope', '[]');
\echo :SQLSTATE
SELECT edusync.create_sync_errors('b1', NULL);
\echo :SQLSTATE
SELECT edusync.create_sync_errors('b1', '{"entryType": "S", "errorCode": "c", "errorMessage": "m"}');
\echo :SQLSTATE
SELECT edusync.create_sync_errors('b1', '"[]"');
\echo :SQLSTATE
SELECT edusync.create_sync_errors('b1', 'null');
\echo :SQLSTATE

-- Refused elements: the message names the culprit's index (0-based) and
-- the SQLSTATE is the single create's.  Element 0 is valid every time:
-- nothing of the call is stored.
\set ok '{"id": "00000000-0000-4000-8000-0000000000aa", "entryType": "Student", "errorCode": "c", "errorMessage": "never stored"}'
SELECT edusync.create_sync_errors('b1', jsonb_build_array(:'ok'::jsonb, 42));
\echo :SQLSTATE
SELECT edusync.create_sync_errors('b1', jsonb_build_array(:'ok'::jsonb, NULL));
\echo :SQLSTATE
SELECT edusync.create_sync_errors('b1', jsonb_build_array(:'ok'::jsonb, '[]'::jsonb));
\echo :SQLSTATE
SELECT edusync.create_sync_errors('b1', jsonb_build_array(:'ok'::jsonb,
	'{"entryType": "S", "errorCode": "c", "errorMessage": "m", "colour": "red"}'::jsonb));
\echo :SQLSTATE
SELECT edusync.create_sync_errors('b1', jsonb_build_array(:'ok'::jsonb,
	'{"@odata.type": "#microsoft.graph.user", "entryType": "S", "errorCode": "c", "errorMessage": "m"}'::jsonb));
\echo :SQLSTATE
SELECT edusync.create_sync_errors('b1', jsonb_build_array(:'ok'::jsonb,
	'{"entryType": 7, "errorCode": "c", "errorMessage": "m"}'::jsonb));
\echo :SQLSTATE
SELECT edusync.create_sync_errors('b1', jsonb_build_array(:'ok'::jsonb, :'ok'::jsonb,
	'{"errorCode": "c", "errorMessage": "m"}'::jsonb));
\echo :SQLSTATE
SELECT edusync.create_sync_errors('b1', jsonb_build_array(:'ok'::jsonb,
	'{"entryType": "  ", "errorCode": "c", "errorMessage": "m"}'::jsonb));
\echo :SQLSTATE
SELECT edusync.create_sync_errors('b1', jsonb_build_array(:'ok'::jsonb,
	jsonb_build_object('entryType', 'S', 'errorCode', repeat('x', 1025), 'errorMessage', 'm')));
\echo :SQLSTATE
SELECT edusync.create_sync_errors('b1', jsonb_build_array(:'ok'::jsonb,
	'{"entryType": "S", "errorCode": "c", "errorMessage": "m", "recordedDateTime": "2017-07-05 00:52:45"}'::jsonb));
\echo :SQLSTATE
SELECT edusync.create_sync_errors('b1', jsonb_build_array(:'ok'::jsonb,
	'{"entryType": "S", "errorCode": "c", "errorMessage": "m", "recordedDateTime": "0000-01-01T00:00:00Z"}'::jsonb));
\echo :SQLSTATE
SELECT edusync.create_sync_errors('b1', jsonb_build_array(:'ok'::jsonb,
	'{"entryType": "S", "errorCode": "c", "errorMessage": "m", "recordedDateTime": "9999-12-31T23:59:59-01:00"}'::jsonb));
\echo :SQLSTATE
SELECT edusync.create_sync_errors('b1', jsonb_build_array(:'ok'::jsonb,
	'{"entryType": "S", "errorCode": "c", "errorMessage": "m", "id": "{00000000-0000-4000-8000-000000000009}"}'::jsonb));
\echo :SQLSTATE
-- a known id with other content: stored before, or earlier in the array
SELECT edusync.create_sync_errors('b1', jsonb_build_array(:'ok'::jsonb,
	'{"id": "00000000-0000-4000-8000-000000000001", "entryType": "Student", "errorCode": "c", "errorMessage": "changed"}'::jsonb));
\echo :SQLSTATE
SELECT edusync.create_sync_errors('b1', '[
	{"id": "00000000-0000-4000-8000-0000000000bb", "entryType": "S", "errorCode": "c", "errorMessage": "one"},
	{"id": "00000000-0000-4000-8000-0000000000bb", "entryType": "S", "errorCode": "c", "errorMessage": "two"}]');
\echo :SQLSTATE
-- all or nothing: none of the refused calls stored anything
SELECT count(*) AS stored FROM edusync.sync_errors WHERE profile_id = 'b1';
SELECT count(*) AS never FROM edusync.sync_errors
WHERE id IN ('00000000-0000-4000-8000-0000000000aa', '00000000-0000-4000-8000-0000000000bb');

-- Forwarding applies to each element; without shared_preload_libraries it
-- is refused (55000) and the whole call stores nothing.
SET edusync.forward = 'async';
SELECT edusync.create_sync_errors('b1', jsonb_build_array(:'ok'::jsonb));
\echo :SQLSTATE
SET edusync.forward = 'sync';
SELECT edusync.create_sync_errors('b1', jsonb_build_array(:'ok'::jsonb));
\echo :SQLSTATE
RESET edusync.forward;
SELECT count(*) AS never FROM edusync.sync_errors WHERE id = '00000000-0000-4000-8000-0000000000aa';

-- Privileges: nothing for PUBLIC; the README's writer GRANT includes it.
CREATE ROLE regress_bulk_nobody;
CREATE ROLE regress_bulk_writer;
GRANT USAGE ON SCHEMA edusync TO regress_bulk_nobody, regress_bulk_writer;
GRANT EXECUTE ON FUNCTION edusync.create_sync_errors(text, jsonb) TO regress_bulk_writer;
SET ROLE regress_bulk_nobody;
SELECT edusync.create_sync_errors('b1', '[]');
\echo :SQLSTATE
SET ROLE regress_bulk_writer;
SELECT count(*) AS as_writer FROM edusync.create_sync_errors('b1', '[{"entryType": "S",
	"errorCode": "c", "errorMessage": "by the writer"}]');
RESET ROLE;
DROP OWNED BY regress_bulk_nobody, regress_bulk_writer;
DROP ROLE regress_bulk_nobody, regress_bulk_writer;
