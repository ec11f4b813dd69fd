/* edusync--0.1.0.sql: install script of the edusync extension. */

-- complain if the script is sourced in psql rather than run by CREATE EXTENSION
\echo Use "CREATE EXTENSION edusync" to load this file. \quit

-- Every name is qualified: the script does not depend on search_path.

-- The schema must belong to a superuser: CREATE EXTENSION uses an existing
-- schema edusync, and its owner could replace anything installed there.
DO $$
BEGIN
	IF NOT (SELECT r.rolsuper
			FROM pg_catalog.pg_namespace n
			JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
			WHERE n.nspname OPERATOR(pg_catalog.=) 'edusync') THEN
		RAISE EXCEPTION USING
			ERRCODE = 'insufficient_privilege',
			MESSAGE = 'schema "edusync" is not owned by a superuser',
			HINT = 'Drop the schema, or give it to a superuser, before CREATE EXTENSION edusync.';
	END IF;
END
$$;

CREATE TYPE edusync.education_sync_error AS (
	id						pg_catalog.uuid,
	entry_type				pg_catalog.text,
	error_code				pg_catalog.text,
	error_message			pg_catalog.text,
	joining_value			pg_catalog.text,
	recorded_date_time		pg_catalog.timestamptz,
	reportable_identifier	pg_catalog.text
);
COMMENT ON TYPE edusync.education_sync_error IS
	'The Microsoft Graph resource educationSynchronizationError, field for field';

CREATE TABLE edusync.sync_profiles (
	id				pg_catalog.text PRIMARY KEY
		CONSTRAINT sync_profiles_id_check
		CHECK (pg_catalog.length(id) OPERATOR(pg_catalog.<=) 256
			   AND id OPERATOR(pg_catalog.~) '^[^[:cntrl:]]+$'),
	display_name	pg_catalog.text NOT NULL,
	created_at		pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE edusync.sync_profiles IS
	'School Data Sync synchronization profiles that errors belong to';

CREATE TABLE edusync.sync_errors (
	profile_id				pg_catalog.text NOT NULL
		REFERENCES edusync.sync_profiles (id),
	id						pg_catalog.uuid NOT NULL,
	entry_type				pg_catalog.text NOT NULL,
	error_code				pg_catalog.text NOT NULL,
	error_message			pg_catalog.text NOT NULL,
	joining_value			pg_catalog.text,
	recorded_date_time		pg_catalog.timestamptz NOT NULL,
	reportable_identifier	pg_catalog.text,
	created_at				pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (profile_id, id)
);
COMMENT ON TABLE edusync.sync_errors IS
	'One row per synchronization error, written by edusync.create_sync_error';

CREATE TABLE edusync.deliveries (
	profile_id		pg_catalog.text NOT NULL,
	error_id		pg_catalog.uuid NOT NULL,
	status			pg_catalog.text NOT NULL DEFAULT 'pending'
		CONSTRAINT deliveries_status_check
		CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'delivered', 'failed']::pg_catalog.text[])),
	attempts		pg_catalog.int4 NOT NULL DEFAULT 0,
	next_attempt_at pg_catalog.timestamptz DEFAULT pg_catalog.now(),
	last_status		pg_catalog.int4,
	last_error		pg_catalog.text,
	remote_id		pg_catalog.text,
	delivered_at	pg_catalog.timestamptz,
	created_at		pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (profile_id, error_id),
	FOREIGN KEY (profile_id, error_id)
		REFERENCES edusync.sync_errors (profile_id, id) ON DELETE CASCADE
);
CREATE INDEX deliveries_pending_idx ON edusync.deliveries (next_attempt_at)
	WHERE status OPERATOR(pg_catalog.=) 'pending';
COMMENT ON TABLE edusync.deliveries IS
	'Forwarding state of each forwarded error: the outbox of async mode';

SELECT pg_catalog.pg_extension_config_dump('edusync.sync_profiles', '');
SELECT pg_catalog.pg_extension_config_dump('edusync.sync_errors', '');
SELECT pg_catalog.pg_extension_config_dump('edusync.deliveries', '');

CREATE FUNCTION edusync.create_sync_error(profile_id pg_catalog.text,
										  body pg_catalog.jsonb)
RETURNS pg_catalog.jsonb
AS 'MODULE_PATHNAME', 'create_sync_error_body'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION edusync.create_sync_error(pg_catalog.text, pg_catalog.jsonb) IS
	'Validate a Graph request body, store the error, answer the Graph 201 body';

CREATE FUNCTION edusync.create_sync_error(profile_id pg_catalog.text,
										  entry_type pg_catalog.text,
										  error_code pg_catalog.text,
										  error_message pg_catalog.text,
										  joining_value pg_catalog.text DEFAULT NULL,
										  reportable_identifier pg_catalog.text DEFAULT NULL,
										  recorded_date_time pg_catalog.timestamptz DEFAULT pg_catalog.now(),
										  id pg_catalog.uuid DEFAULT NULL)
RETURNS pg_catalog.jsonb
AS 'MODULE_PATHNAME', 'create_sync_error_args'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION edusync.create_sync_error(pg_catalog.text, pg_catalog.text,
	pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text,
	pg_catalog.timestamptz, pg_catalog.uuid) IS
	'Validate typed error fields, store the error, answer the Graph 201 body';

CREATE FUNCTION edusync.get_sync_error(profile_id pg_catalog.text,
									   id pg_catalog.uuid)
RETURNS pg_catalog.jsonb
AS 'MODULE_PATHNAME', 'get_sync_error'
LANGUAGE C STABLE STRICT PARALLEL SAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION edusync.get_sync_error(pg_catalog.text, pg_catalog.uuid) IS
	'One stored error as its Graph body, or NULL';

CREATE FUNCTION edusync.list_sync_errors(profile_id pg_catalog.text,
										 top pg_catalog.int4 DEFAULT 100,
										 skip pg_catalog.int4 DEFAULT 0)
RETURNS pg_catalog.jsonb
AS 'MODULE_PATHNAME', 'list_sync_errors'
LANGUAGE C STABLE STRICT PARALLEL SAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION edusync.list_sync_errors(pg_catalog.text, pg_catalog.int4, pg_catalog.int4) IS
	'A page of a profile''s errors, newest first, as a Graph collection';

CREATE FUNCTION edusync.retry_failed(profile_id pg_catalog.text DEFAULT NULL)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'retry_failed'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION edusync.retry_failed(pg_catalog.text) IS
	'Queue failed deliveries (of one profile, or all) again; returns how many';

-- A profile through a function: what edusync_proxy routes to the profile's
-- shard (PL/Proxy calls functions); a plain INSERT, so the table's
-- constraints answer (23505 for an existing id, 23502, 23514).
CREATE FUNCTION edusync.create_sync_profile(id pg_catalog.text,
											display_name pg_catalog.text)
RETURNS pg_catalog.text
AS $$
	INSERT INTO edusync.sync_profiles (id, display_name)
	VALUES (create_sync_profile.id, create_sync_profile.display_name)
	RETURNING sync_profiles.id
$$ LANGUAGE sql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION edusync.create_sync_profile(pg_catalog.text, pg_catalog.text) IS
	'Insert a synchronization profile; returns its id';

CREATE VIEW edusync.delivery_queue AS
	SELECT pg_catalog.count(*) FILTER (WHERE d.status OPERATOR(pg_catalog.=) 'pending') AS pending,
		   pg_catalog.count(*) FILTER (WHERE d.status OPERATOR(pg_catalog.=) 'failed') AS failed,
		   pg_catalog.count(*) FILTER (WHERE d.status OPERATOR(pg_catalog.=) 'delivered'
				AND d.delivered_at OPERATOR(pg_catalog.>) (pg_catalog.now() OPERATOR(pg_catalog.-) '1 hour'::pg_catalog.interval)) AS delivered_last_hour,
		   pg_catalog.now() OPERATOR(pg_catalog.-) (pg_catalog.min(d.created_at) FILTER (WHERE d.status OPERATOR(pg_catalog.=) 'pending')) AS oldest_pending_age
	FROM edusync.deliveries d;
COMMENT ON VIEW edusync.delivery_queue IS
	'The forwarding queue at a glance, for monitoring';

-- Nothing is usable by PUBLIC; the README shows the GRANTs for writers and readers.
REVOKE ALL ON SCHEMA edusync FROM PUBLIC;
REVOKE ALL ON TYPE edusync.education_sync_error FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA edusync FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA edusync FROM PUBLIC;
