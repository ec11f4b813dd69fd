-- validate.sql: every refused input class, its SQLSTATE and message, and
-- that nothing is stored after a refusal.
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
-- stored errors that the 23505 cases below send again with other content
SELECT edusync.create_sync_error('p1', '{
  "id": "bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc",
  "entryType": "Student",
  "errorCode": "UnsynchronizableChange",
  "errorMessage": "Student cannot be updated ...",
  "joiningValue": "richard.2wilson@testschool.edu",
  "recordedDateTime": "2017-07-05T00:52:45Z",
  "reportableIdentifier": "richard.2wilson"
}') IS NOT NULL AS stored;
SELECT edusync.create_sync_error('p2', 'Student', 'UnsynchronizableChange',
	'Student cannot be updated ...', 'richard.2wilson@testschool.edu',
	'richard.2wilson', '2017-07-05 00:52:45+00', 'a8a1c1b2-5b6e-4e5f-9a0b-0c1d2e3f4a5b')
	IS NOT NULL AS stored;

SELECT count(*) AS before FROM edusync.sync_errors \gset
INSERT INTO edusync.sync_profiles (id, display_name)
	VALUES (repeat('x', 256), 'longest id');

-- a body that is valid but for what each case changes
-- refusal(sql), for the tables of cases below: the SQLSTATE, message,
-- DETAIL and HINT a statement is refused with ('accepted' if it is not).
CREATE FUNCTION refusal(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	d text;
	h text;
BEGIN
	EXECUTE q;
	RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
	RETURN SQLSTATE || ': ' || SQLERRM
		|| CASE WHEN d <> '' THEN ' DETAIL: ' || d ELSE '' END
		|| CASE WHEN h <> '' THEN ' HINT: ' || h ELSE '' END;
END $$;

CREATE FUNCTION good(changes jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $$
	SELECT '{"entryType": "Student", "errorCode": "c", "errorMessage": "m"}'::jsonb || changes
$$;

-- profile id: NULL 23502; empty, too long, control characters 22023;
-- unknown 23503 naming it.
SELECT edusync.create_sync_error(NULL, good());
\echo :SQLSTATE
SELECT edusync.create_sync_error(NULL, 'Student', 'c', 'm');
\echo :SQLSTATE
SELECT edusync.create_sync_error('', good());
\echo :SQLSTATE
SELECT edusync.create_sync_error('', 'Student', 'c', 'm');
\echo :SQLSTATE
SELECT edusync.create_sync_error(repeat('x', 257), good());
\echo :SQLSTATE
SELECT edusync.create_sync_error(E'p1\n', good());
\echo :SQLSTATE
SELECT edusync.create_sync_error(E'p\t1', good());
\echo :SQLSTATE
SELECT edusync.create_sync_error(E'p\x7f1', good());
\echo :SQLSTATE
SELECT edusync.create_sync_error(E'p\u00851', good());
\echo :SQLSTATE
SELECT edusync.create_sync_error('nope', good());
\echo :SQLSTATE
SELECT edusync.create_sync_error('P1', good());
\echo :SQLSTATE
SELECT edusync.create_sync_error('nope', 'Student', 'c', 'm');
\echo :SQLSTATE
-- (the longest profile id is fine)
SELECT edusync.create_sync_error(repeat('x', 256), good())->>'entryType';

-- body: NULL, or not a JSON object: 22023
SELECT edusync.create_sync_error('p1', NULL);
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', 'null');
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', '[]');
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', '[{"entryType": "Student"}]');
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', '"Student"');
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', '42');
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', 'true');
\echo :SQLSTATE

-- a property not in the resource: 22023 naming it (names are case-sensitive)
SELECT edusync.create_sync_error('p1', good('{"foo": "bar"}'));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good('{"EntryType": "Student"}'));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good('{"profileId": "p1"}'));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good('{"odata.type": "x"}'));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good(jsonb_build_object(repeat('k', 100), 1)));
\echo :SQLSTATE

-- @odata.type other than the two spellings: 22023
SELECT edusync.create_sync_error('p1', good('{"@odata.type": "#microsoft.graph.educationUser"}'));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good('{"@odata.type": "microsoft.graph.educationSynchronizationError"}'));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good('{"@odata.type": ""}'));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good('{"@odata.type": null}'));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good('{"@odata.type": 1}'));
\echo :SQLSTATE

-- a property of the wrong JSON type: 22023 naming it
SELECT edusync.create_sync_error('p1', good('{"entryType": 1}'));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good('{"errorCode": {"a": 1}}'));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good('{"errorMessage": ["m"]}'));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good('{"joiningValue": true}'));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good('{"reportableIdentifier": 1.5}'));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good('{"recordedDateTime": 1499216000}'));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good('{"id": 7}'));
\echo :SQLSTATE

-- entryType, errorCode, errorMessage missing, null or blank: 23502 naming it
SELECT edusync.create_sync_error('p1', good() - 'entryType');
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good() - 'errorCode');
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good() - 'errorMessage');
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', '{}');
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good('{"entryType": null}'));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good('{"errorCode": ""}'));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good('{"errorMessage": " \t\n\r "}'));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', NULL, 'c', 'm');
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', 'Student', NULL, 'm');
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', 'Student', 'c', '   ');
\echo :SQLSTATE

-- a string longer than its bound: 22001
SELECT edusync.create_sync_error('p1', good(jsonb_build_object('errorMessage', repeat('m', 8193))));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good(jsonb_build_object('entryType', repeat('é', 1025))));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good(jsonb_build_object('errorCode', repeat('c', 1025))));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good(jsonb_build_object('joiningValue', repeat('j', 1025))));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good(jsonb_build_object('reportableIdentifier', repeat('r', 100000))));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', 'Student', 'c', repeat('m', 8193));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', 'Student', 'c', 'm', joining_value => repeat('j', 1025));
\echo :SQLSTATE

-- recordedDateTime not ISO 8601 with an offset, or impossible: 22007
SELECT v, refusal(format($$SELECT edusync.create_sync_error('p1', good(%L))$$,
	jsonb_build_object('recordedDateTime', v)))
FROM (VALUES
	('String (timestamp)'), (''), ('now'), ('today'), ('epoch'), ('infinity'),
	('-infinity'), ('2017-07-05'), ('2017-07-05T00:52:45'), ('2017-07-05 00:52:45Z'),
	('2017-07-05T00:52:45 Z'), ('2017-7-5T00:52:45Z'), ('17-07-05T00:52:45Z'),
	('2017-07-05T00:52:45.Z'), ('2017-07-05T00:52:45.12345678Z'),
	('2017-07-05T00:52:45+0200'), ('2017-07-05T00:52:45+02'), ('2017-07-05T00:52:45+14:01'),
	('2017-07-05T00:52:45-15:00'), ('2017-07-05T00:52:45+02:60'), ('2017-07-05T00:52:45ZZ'),
	('2017-02-29T00:00:00Z'), ('2016-02-30T00:00:00Z'), ('2017-13-01T00:00:00Z'),
	('2017-00-10T00:00:00Z'), ('2017-04-31T00:00:00Z'), ('2017-07-05T24:00:00Z'),
	('2017-07-05T23:60:00Z'), ('2017-07-05T23:59:60Z'), ('0000-01-01T00:00:00Z'),
	('July 5, 2017'), ('1499216000'), ('２０１７-07-05T00:52:45Z')) AS t(v);
-- ... and out of range once in UTC: 22008
SELECT edusync.create_sync_error('p1', good('{"recordedDateTime": "9999-12-31T23:59:59-01:00"}'));
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', good('{"recordedDateTime": "0001-01-01T00:00:00+01:00"}'));
\echo :SQLSTATE
-- the typed overload: infinite 22007, out of Graph's range 22008
SELECT edusync.create_sync_error('p1', 'Student', 'c', 'm', recorded_date_time => 'infinity');
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', 'Student', 'c', 'm', recorded_date_time => '-infinity');
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', 'Student', 'c', 'm', recorded_date_time => '10000-01-01 00:00:00+00');
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', 'Student', 'c', 'm', recorded_date_time => '0044-03-15 00:00:00+00 BC');
\echo :SQLSTATE

-- id not a GUID: 22P02
SELECT v, refusal(format($$SELECT edusync.create_sync_error('p1', good(%L))$$,
	jsonb_build_object('id', v)))
FROM (VALUES
	('not-a-guid'), (''), ('bcc5f51bf51bbcc51bf5c5bc1bf5c5bc'),
	('{bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc}'), ('bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5b'),
	('bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bcd'), ('gcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc'),
	(' bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc'), ('bcc5f51b-f51bbcc5-1bf5-c5bc1bf5c5bc-')) AS t(v);

-- a known id with other content: 23505 (any field differs, the time included)
SELECT edusync.create_sync_error('p1', '{"id": "bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc",
	"entryType": "Student", "errorCode": "UnsynchronizableChange",
	"errorMessage": "Student cannot be updated ...", "joiningValue": "richard.2wilson@testschool.edu",
	"recordedDateTime": "2017-07-05T00:52:46Z", "reportableIdentifier": "richard.2wilson"}');
\echo :SQLSTATE
SELECT edusync.create_sync_error('p1', '{"id": "bcc5f51b-f51b-bcc5-1bf5-c5bc1bf5c5bc",
	"entryType": "Student", "errorCode": "UnsynchronizableChange",
	"errorMessage": "Student cannot be updated ...", "joiningValue": "richard.2wilson@testschool.edu"}');
\echo :SQLSTATE
SELECT edusync.create_sync_error('p2', 'Student', 'UnsynchronizableChange',
	'Student cannot be updated ...', 'richard.2wilson@testschool.edu', NULL,
	id => 'a8a1c1b2-5b6e-4e5f-9a0b-0c1d2e3f4a5b');
\echo :SQLSTATE

-- When several things are wrong, the first check that fails answers.
SELECT edusync.create_sync_error(NULL, NULL);
\echo :SQLSTATE
SELECT edusync.create_sync_error('nope', '{"entryType": 1}');
\echo :SQLSTATE
SELECT edusync.create_sync_error('nope', '{}');
\echo :SQLSTATE

-- Nothing was stored by any refusal (one row was accepted above).
SELECT count(*) - :before AS new_rows FROM edusync.sync_errors;

DROP FUNCTION refusal(text), good(jsonb);
