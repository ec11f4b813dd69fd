-- create.sql: accepted inputs and the exact answers they get.
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

-- Graph's documented example, placeholder and all: refused, nothing stored.
SELECT edusync.create_sync_error('p1', '{
  "@odata.type": "#Microsoft.Education.DataSync.educationSynchronizationError",
  "entryType": "String",
  "errorCode": "String",
  "errorMessage": "String",
  "joiningValue": "String",
  "recordedDateTime": "String (timestamp)",
  "reportableIdentifier": "String"
}');
\echo :SQLSTATE
SELECT count(*) FROM edusync.sync_errors;

-- The example of the answer, with an id given: the whole answer, exactly.
SELECT edusync.create_sync_error('p1', '{
  "@odata.type": "#microsoft.graph.educationSynchronizationError",
  "id": "bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc",
  "entryType": "Student",
  "errorCode": "UnsynchronizableChange",
  "errorMessage": "Student cannot be updated ...",
  "joiningValue": "richard.2wilson@testschool.edu",
  "recordedDateTime": "2017-07-05T00:52:45Z",
  "reportableIdentifier": "richard.2wilson"
}');

-- Without an id: a new lowercase GUID (version 4); everything else as sent.
SELECT r - 'id' AS answer,
	   r->>'id' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS id_is_guid
FROM edusync.create_sync_error('p1', '{
  "@odata.type": "#Microsoft.Education.DataSync.educationSynchronizationError",
  "entryType": "Section", "errorCode": "Duplicate", "errorMessage": "m",
  "recordedDateTime": "2017-07-05T00:52:45Z"}') AS r;

-- Many ids: every one a version 4 GUID, none repeated.
SELECT count(DISTINCT r->>'id') AS distinct_ids,
	   bool_and(r->>'id' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$') AS all_guids
FROM generate_series(1, 100) g,
	 edusync.create_sync_error('p1', 'Student', 'Pool', 'id ' || g) AS r;

-- @odata.type in either spelling, any case, or absent; other annotations ignored.
SELECT r->'@odata.type', r->>'entryType'
FROM (VALUES
	('{"@odata.type": "#MICROSOFT.GRAPH.EDUCATIONSYNCHRONIZATIONERROR"}'::jsonb),
	('{"@odata.type": "#microsoft.education.datasync.educationsynchronizationerror"}'),
	('{}'),
	('{"@odata.etag": "W/\"1\"", "@custom.note": {"any": ["thing"]}}')) AS v(extra),
	LATERAL edusync.create_sync_error('p1', extra ||
		'{"entryType": "Teacher", "errorCode": "c", "errorMessage": "m"}') AS r;

-- recordedDateTime: fractions of up to 7 digits, offsets, T and Z in either
-- case; the answer is UTC with Z, a fraction only when not zero.
SELECT v AS sent, r->>'recordedDateTime' AS answered
FROM (VALUES
	('2017-07-05T00:52:45Z'),
	('2017-07-05T00:52Z'),
	('2017-07-05T00:52:45.1Z'),
	('2017-07-05T00:52:45.123456Z'),
	('2017-07-05T00:52:45.1234567Z'),
	('2017-07-05T00:52:45.1234565Z'),
	('2017-07-05T00:52:45.9999996Z'),
	('2017-07-05T00:52:45.0000000Z'),
	('2017-07-05T00:52:45.5000000Z'),
	('2017-07-05t00:52:45z'),
	('2017-07-05T02:52:45+02:00'),
	('2017-07-04T19:22:45-05:30'),
	('2017-07-05T14:52:45+14:00'),
	('2017-07-04T10:52:45-14:00'),
	('2016-02-29T23:59:59-00:30'),
	('0001-01-01T00:00:00Z'),
	('9999-12-31T23:59:59.9999999Z')) AS t(v),
	LATERAL edusync.create_sync_error('p1', jsonb_build_object(
		'entryType', 'Student', 'errorCode', 'c', 'errorMessage', 'm',
		'recordedDateTime', v)) AS r;

-- The answer is UTC whatever the session's TimeZone and DateStyle.
SET TimeZone = 'America/New_York';
SET DateStyle = 'SQL, DMY';
SELECT r->>'recordedDateTime'
FROM edusync.create_sync_error('p1', '{"entryType": "Student", "errorCode": "c",
	"errorMessage": "m", "recordedDateTime": "2017-07-05T00:52:45.25+09:00"}') AS r;
SELECT r->>'recordedDateTime'
FROM edusync.create_sync_error('p1', 'Student', 'c', 'm',
	recorded_date_time => '2017-07-04 20:52:45-04') AS r;
RESET TimeZone;
RESET DateStyle;

-- Absent optional properties and explicit nulls answer null.
SELECT r - 'id' - 'recordedDateTime'
FROM edusync.create_sync_error('p2', '{"entryType": "School", "errorCode": "c",
	"errorMessage": "m", "joiningValue": null, "id": null, "recordedDateTime": null}') AS r;

-- Absent recordedDateTime: the time of the call (now()).
BEGIN;
SELECT (r->>'recordedDateTime')::timestamptz = now()
FROM edusync.create_sync_error('p2', '{"entryType": "School", "errorCode": "c",
	"errorMessage": "m"}') AS r;
COMMIT;

-- Unicode, quotes, backslashes, new lines and tabs come back as sent.
SELECT r->'errorMessage', r->'joiningValue', r->'reportableIdentifier',
	   r->>'errorMessage' = E'line one\nline "two"\t\\ and \u00e9\u4e2d\U0001F600'
FROM edusync.create_sync_error('p2', $${"entryType": "Student", "errorCode": "c",
	"errorMessage": "line one\nline \"two\"\t\\ and \u00e9\u4e2d\ud83d\ude00",
	"joiningValue": "o'brien@school.edu", "reportableIdentifier": "Zoë 🎓"}$$) AS r;

-- The typed overload, positional and named; its answer has the same shape.
SELECT edusync.create_sync_error('p2', 'Student', 'UnsynchronizableChange',
	'Student cannot be updated ...', 'richard.2wilson@testschool.edu',
	'richard.2wilson', '2017-07-05 00:52:45+00', 'a8a1c1b2-5b6e-4e5f-9a0b-0c1d2e3f4a5b');
SELECT r - 'id' - 'recordedDateTime'
FROM edusync.create_sync_error(profile_id => 'p2', entry_type => 'Teacher',
	error_code => 'c', error_message => 'm', reportable_identifier => 'rid') AS r;

-- An id in capitals is stored and answered in lowercase.
SELECT r->>'id'
FROM edusync.create_sync_error('p2', '{"id": "B7E2E5D1-3C4A-4F5B-8D6E-7F8091A2B3C4",
	"entryType": "Student", "errorCode": "c", "errorMessage": "m",
	"recordedDateTime": "2020-01-01T00:00:00Z"}') AS r;

-- Bounds are inclusive, in characters (not bytes).
SELECT length(r->>'errorMessage'), length(r->>'entryType'), length(r->>'joiningValue')
FROM edusync.create_sync_error('p2', jsonb_build_object(
	'entryType', repeat('é', 1024), 'errorCode', repeat('c', 1024),
	'errorMessage', repeat('m', 8192), 'joiningValue', repeat('字', 1024),
	'reportableIdentifier', repeat('r', 1024))) AS r;

-- A known id with the same content is an idempotent retry: the stored
-- answer again, nothing new stored.
SELECT count(*) AS before FROM edusync.sync_errors \gset
SELECT edusync.create_sync_error('p1', '{
  "id": "bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc",
  "entryType": "Student",
  "errorCode": "UnsynchronizableChange",
  "errorMessage": "Student cannot be updated ...",
  "joiningValue": "richard.2wilson@testschool.edu",
  "recordedDateTime": "2017-07-05T02:52:45+02:00",
  "reportableIdentifier": "richard.2wilson"
}') = edusync.get_sync_error('p1', 'bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc') AS same;
-- without recordedDateTime (it meant "now" at the first call)
SELECT edusync.create_sync_error('p1', '{
  "id": "bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc", "entryType": "Student",
  "errorCode": "UnsynchronizableChange", "errorMessage": "Student cannot be updated ...",
  "joiningValue": "richard.2wilson@testschool.edu",
  "reportableIdentifier": "richard.2wilson"}')->>'recordedDateTime';
-- through the typed overload, with the default recorded_date_time
SELECT edusync.create_sync_error('p2', 'Student', 'UnsynchronizableChange',
	'Student cannot be updated ...', 'richard.2wilson@testschool.edu',
	'richard.2wilson', id => 'a8a1c1b2-5b6e-4e5f-9a0b-0c1d2e3f4a5b')->>'recordedDateTime';
-- the same id in another profile is another error
SELECT edusync.create_sync_error('p2', '{"id": "bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc",
	"entryType": "Section", "errorCode": "c", "errorMessage": "m",
	"recordedDateTime": "2018-01-01T00:00:00Z"}')->>'entryType';
SELECT count(*) - :before AS new_rows FROM edusync.sync_errors;

-- What is stored is the typed row, field for field.
SELECT e.profile_id, (e.id, e.entry_type, e.error_code, e.error_message,
	e.joining_value, e.recorded_date_time, e.reportable_identifier)::edusync.education_sync_error
FROM edusync.sync_errors e
WHERE e.id = 'bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc' ORDER BY 1;

-- The answer is built as jsonb in jsonb's own key order: every key is found
-- by lookup, and it equals the same document read back from its text.
SELECT j = (j::text)::jsonb AS same_as_parsed,
	(SELECT bool_and(j ? k) FROM jsonb_object_keys((j::text)::jsonb) k) AS every_key_found,
	(SELECT count(*) FROM jsonb_object_keys(j)) AS keys
FROM (SELECT edusync.create_sync_error(id, 'Student', 'c', 'm', NULL, 'r') AS j
	  FROM edusync.sync_profiles ORDER BY id LIMIT 1) s;

-- recordedDateTime: UTC, seconds always, a fraction only when not zero and
-- without its trailing zeros; 2,000 instants over four centuries, each as
-- to_char writes it (rolled back: later files count p1's errors).
BEGIN;
SELECT count(*) AS instants,
	count(*) FILTER (WHERE a->>'recordedDateTime' <> regexp_replace(
		to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), '\.?0*$', '') || 'Z')
		AS formatted_otherwise
FROM (SELECT t, edusync.create_sync_error('p1', 'Student', 'c', 'instant',
		recorded_date_time => t) AS a
	  FROM (SELECT timestamptz '1801-01-01 00:00:00+00' + g * interval '73 days 1 hour 1 minute 1.000123 seconds'
				- (g % 7) * interval '0.000123 seconds' AS t
			FROM generate_series(1, 2000) g) i) s;
ROLLBACK;
