-- baseline of sync_http: the row INSERTed and POSTed with pgsql-http in one
-- statement, with the headers and body edusync sends (@URL@ and @BODY@ are
-- filled in by run-all.sh)
WITH e AS (
	INSERT INTO bench.plain_errors (profile_id, id, entry_type, error_code, error_message,
		joining_value, recorded_date_time, reportable_identifier)
	VALUES ('bench-profile', gen_random_uuid(), 'Student', 'UnsynchronizableChange',
		'Student cannot be updated because the source data changed its key.',
		'richard.2wilson@testschool.edu', '2017-07-05T00:52:45Z', 'richard.2wilson')
	RETURNING id)
SELECT (public.http(('POST', '@URL@',
	ARRAY[public.http_header('Authorization', 'Bearer bench'),
		public.http_header('client-request-id', e.id::text)],
	'application/json', '@BODY@')::public.http_request)).status
FROM e;
