-- keyset.sql: list_sync_errors(profile_id, top, skip, skiptoken) and the
-- $skiptoken of @odata.nextLink.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS edusync;
RESET client_min_messages;
CREATE EXTENSION edusync;
\set VERBOSITY default

INSERT INTO edusync.sync_profiles (id, display_name) VALUES
	('k1', 'Keyset School'), ('k2', 'Other School'), ('empty', 'No errors');
-- 23 errors in k1; every third shares its recordedDateTime with the next
-- (ties are ordered by id, descending)
SELECT count(edusync.create_sync_error('k1', 'Student', 'c', 'error ' || i,
	recorded_date_time => '2020-01-01T00:00:00Z'::timestamptz + (i / 3) * interval '1 minute',
	id => format('00000000-0000-4000-8000-%s', lpad(i::text, 12, '0'))::uuid)) AS created
FROM generate_series(1, 23) AS i;
SELECT count(edusync.create_sync_error('k2', 'Student', 'c', 'k2 error ' || i)) AS created
FROM generate_series(1, 3) AS i;

-- the index that serves the list's order
SELECT indexdef FROM pg_indexes WHERE indexname = 'sync_errors_list_idx';

-- The $skiptoken of a nextLink; a helper that pages through a profile
-- with it and returns the errorMessages in the order seen.
CREATE FUNCTION token_of(l jsonb) RETURNS text LANGUAGE sql AS
$$ SELECT substring(l->>'@odata.nextLink' FROM '[?&]\$skiptoken=([^&]*)$') $$;
CREATE FUNCTION page_through(p text, top int) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
	seen text[] := '{}';
	tok text;
	l jsonb;
BEGIN
	LOOP
		l := edusync.list_sync_errors(p, top, 0, tok);
		seen := seen || ARRAY(SELECT v->>'errorMessage' FROM jsonb_array_elements(l->'value') v);
		tok := token_of(l);
		EXIT WHEN tok IS NULL;
	END LOOP;
	RETURN seen;
END $$;

-- the first page: nextLink with $top and $skiptoken (no $skip)
SELECT l->>'@odata.nextLink' AS next_link,
	   jsonb_path_query_array(l, '$.value[*].errorMessage') AS page
FROM edusync.list_sync_errors('k1', 4) AS l;
-- the next page, by that token: the rows right after the first page
SELECT jsonb_path_query_array(l, '$.value[*].errorMessage') AS page2,
	   length(token_of(l)) AS token_length
FROM edusync.list_sync_errors('k1', 4, 0, token_of(edusync.list_sync_errors('k1', 4))) AS l;
-- paging through every row with skiptoken: each row once, in the list's order
SELECT page_through('k1', 4) = ARRAY(SELECT error_message FROM edusync.sync_errors
	WHERE profile_id = 'k1' ORDER BY recorded_date_time DESC, id DESC) AS each_once_in_order,
	   cardinality(page_through('k1', 4)) AS n;
SELECT page_through('k1', 1) = page_through('k1', 999) AS top_1_same,
	   page_through('k1', 23) = page_through('k1', 5) AS top_23_same;
-- the last page has no nextLink; a page that ends exactly at the end neither
SELECT l ? '@odata.nextLink' AS has_next, jsonb_array_length(l->'value') AS n
FROM edusync.list_sync_errors('k1', 3, 20) AS l;
SELECT l ? '@odata.nextLink' AS has_next, jsonb_array_length(l->'value') AS n
FROM edusync.list_sync_errors('k1', 23) AS l;
-- a token from a page reached by $skip resumes after that page
SELECT edusync.list_sync_errors('k1', 4, 0, token_of(edusync.list_sync_errors('k1', 4, 8))) =
	   edusync.list_sync_errors('k1', 4, 12) AS same_as_skip;

-- $skip keeps working, alone and after a token (it skips rows after it)
SELECT jsonb_path_query_array(edusync.list_sync_errors('k1', 4, 4), '$.value[*].errorMessage') AS skip_4;
SELECT jsonb_path_query_array(l, '$.value[*].errorMessage') AS token_then_skip_2
FROM edusync.list_sync_errors('k1', 4, 2, token_of(edusync.list_sync_errors('k1', 4))) AS l;

-- rows created after a token was given do not shift the pages that follow
SELECT token_of(edusync.list_sync_errors('k1', 4)) AS tok \gset
SELECT edusync.create_sync_error('k1', 'Student', 'c', 'newest',
	recorded_date_time => '2021-01-01T00:00:00Z') IS NOT NULL AS created;
SELECT jsonb_path_query_array(edusync.list_sync_errors('k1', 4, 0, :'tok'), '$.value[*].errorMessage') AS page2_still;

-- the token is opaque but stable: the same key of the same profile gives
-- the same token
SELECT token_of(edusync.list_sync_errors('k1', 5)) = token_of(edusync.list_sync_errors('k1', 1, 4)) AS stable;

-- NULL skiptoken: the first page; NULL profile, top or skip: NULL
SELECT edusync.list_sync_errors('k1', 4, 0, NULL) = edusync.list_sync_errors('k1', 4) AS null_token_first_page;
SELECT edusync.list_sync_errors(NULL) IS NULL AS null_profile,
	   edusync.list_sync_errors('k1', NULL) IS NULL AS null_top,
	   edusync.list_sync_errors('k1', 4, NULL) IS NULL AS null_skip,
	   edusync.list_sync_errors(NULL, 4, 0, :'tok') IS NULL AS null_profile_with_token;
-- links: an errors_path with a query of its own puts the paging after &
SET edusync.graph_url = 'https://graph.contoso.test/beta/';
SET edusync.errors_path = '/education/synchronizationProfiles/{profile_id}/errors?code=abc';
SELECT regexp_replace(edusync.list_sync_errors('k1', 2)->>'@odata.nextLink',
	'skiptoken=[A-Za-z0-9_-]+$', 'skiptoken=...') AS next_link;
RESET edusync.errors_path;
RESET edusync.graph_url;
-- a profile without errors: no nextLink
SELECT edusync.list_sync_errors('empty', 4, 0, NULL);

-- Refused: malformed tokens, a token of another profile (22023)
SELECT edusync.list_sync_errors('k1', 4, 0, '');
\echo :SQLSTATE
SELECT edusync.list_sync_errors('k1', 4, 0, 'abc');
\echo :SQLSTATE
SELECT edusync.list_sync_errors('k1', 4, 0, :'tok' || 'A');
\echo :SQLSTATE
-- right length, a character outside base64url
SELECT edusync.list_sync_errors('k1', 4, 0, overlay(:'tok' PLACING '+' FROM 5 FOR 1));
\echo :SQLSTATE
-- right length and alphabet, another format byte
SELECT edusync.list_sync_errors('k1', 4, 0, overlay(:'tok' PLACING 'B' FROM 2 FOR 1));
\echo :SQLSTATE
-- bits set past the last byte
SELECT edusync.list_sync_errors('k1', 4, 0, overlay(:'tok' PLACING
	chr(ascii(right(:'tok', 1)) + 1) FROM 39 FOR 1));
\echo :SQLSTATE
-- one character of the key changed: the check refuses it
SELECT edusync.list_sync_errors('k1', 4, 0, overlay(:'tok' PLACING
	CASE WHEN substr(:'tok', 20, 1) = 'A' THEN 'B' ELSE 'A' END FROM 20 FOR 1));
\echo :SQLSTATE
-- a token of k1 given to k2
SELECT edusync.list_sync_errors('k2', 4, 0, :'tok');
\echo :SQLSTATE
-- and to a profile that does not exist: the token is checked first
SELECT edusync.list_sync_errors('nope', 4, 0, :'tok');
\echo :SQLSTATE
-- the other refusals are as before
SELECT edusync.list_sync_errors('nope', 4, 0, NULL);
\echo :SQLSTATE
SELECT edusync.list_sync_errors('k1', 0, 0, :'tok');
\echo :SQLSTATE
SELECT edusync.list_sync_errors('k1', 4, -1, :'tok');
\echo :SQLSTATE

-- The upgrade from 0.1.0 replaces the three-argument function (its GRANTs
-- go with it) and adds the index and create_sync_errors.
DROP EXTENSION edusync;
CREATE EXTENSION edusync VERSION '0.1.0';
ALTER EXTENSION edusync UPDATE TO '0.2.0';
SELECT p.oid::regprocedure AS function, p.proisstrict AS strict
FROM pg_proc p WHERE p.pronamespace = 'edusync'::regnamespace
  AND p.proname IN ('list_sync_errors', 'create_sync_errors') ORDER BY 1::text;
SELECT indexdef FROM pg_indexes WHERE indexname = 'sync_errors_list_idx';
SELECT has_function_privilege('public', 'edusync.list_sync_errors(text, int, int, text)', 'EXECUTE') AS public_list,
	   has_function_privilege('public', 'edusync.create_sync_errors(text, jsonb)', 'EXECUTE') AS public_bulk;
