/* edusync--0.2.0.sql: install script of the edusync extension. */

-- complain if the script is sourced in psql rather than run by CREATE EXTENSION
\echo Use "CREATE EXTENSION edusync" to load this file. \quit

-- Every name is qualified: the script does not depend on search_path.

-- CREATE EXTENSION uses an existing schema edusync.  Whoever can create
-- objects in it could plant one that callers reach instead of ours (an
-- overload taking text where ours takes uuid, say).  So the schema must
-- belong to a superuser, no one else may have CREATE on it, and every
-- object already in it must belong to a superuser.
DO $$
DECLARE
	culprit pg_catalog.text;
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

	SELECT pg_catalog.string_agg(CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0::pg_catalog.oid
									 THEN 'PUBLIC'
									 ELSE pg_catalog.quote_ident(r.rolname) END, ', ')
	INTO culprit
	FROM pg_catalog.pg_namespace n,
		 pg_catalog.aclexplode(n.nspacl) a
		 LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
	WHERE n.nspname OPERATOR(pg_catalog.=) 'edusync'
	  AND a.privilege_type OPERATOR(pg_catalog.=) 'CREATE'
	  AND r.rolsuper IS NOT TRUE;
	IF culprit IS NOT NULL THEN
		RAISE EXCEPTION USING
			ERRCODE = 'insufficient_privilege',
			MESSAGE = 'schema "edusync" allows roles that are not superusers to create objects in it',
			DETAIL = 'CREATE is granted to: ' OPERATOR(pg_catalog.||) culprit OPERATOR(pg_catalog.||) '.',
			HINT = 'Revoke CREATE ON SCHEMA edusync from them, or drop the schema, before CREATE EXTENSION edusync.';
	END IF;

	SELECT pg_catalog.string_agg(o.what, ', ' ORDER BY o.what)
	INTO culprit
	FROM (SELECT 'function ' OPERATOR(pg_catalog.||) p.oid::pg_catalog.regprocedure::pg_catalog.text, p.proowner
		  FROM pg_catalog.pg_proc p
		  WHERE p.pronamespace OPERATOR(pg_catalog.=) 'edusync'::pg_catalog.regnamespace
		  UNION ALL
		  SELECT 'relation ' OPERATOR(pg_catalog.||) c.oid::pg_catalog.regclass::pg_catalog.text, c.relowner
		  FROM pg_catalog.pg_class c
		  WHERE c.relnamespace OPERATOR(pg_catalog.=) 'edusync'::pg_catalog.regnamespace
		  UNION ALL
		  SELECT 'type ' OPERATOR(pg_catalog.||) t.oid::pg_catalog.regtype::pg_catalog.text, t.typowner
		  FROM pg_catalog.pg_type t
		  WHERE t.typnamespace OPERATOR(pg_catalog.=) 'edusync'::pg_catalog.regnamespace
		  UNION ALL
		  SELECT 'operator ' OPERATOR(pg_catalog.||) o.oid::pg_catalog.regoperator::pg_catalog.text, o.oprowner
		  FROM pg_catalog.pg_operator o
		  WHERE o.oprnamespace OPERATOR(pg_catalog.=) 'edusync'::pg_catalog.regnamespace
		  UNION ALL
		  SELECT 'collation ' OPERATOR(pg_catalog.||) c.collname::pg_catalog.text, c.collowner
		  FROM pg_catalog.pg_collation c
		  WHERE c.collnamespace OPERATOR(pg_catalog.=) 'edusync'::pg_catalog.regnamespace
		  UNION ALL
		  SELECT 'conversion ' OPERATOR(pg_catalog.||) c.conname::pg_catalog.text, c.conowner
		  FROM pg_catalog.pg_conversion c
		  WHERE c.connamespace OPERATOR(pg_catalog.=) 'edusync'::pg_catalog.regnamespace
		  UNION ALL
		  SELECT 'operator class ' OPERATOR(pg_catalog.||) c.opcname::pg_catalog.text, c.opcowner
		  FROM pg_catalog.pg_opclass c
		  WHERE c.opcnamespace OPERATOR(pg_catalog.=) 'edusync'::pg_catalog.regnamespace
		  UNION ALL
		  SELECT 'operator family ' OPERATOR(pg_catalog.||) f.opfname::pg_catalog.text, f.opfowner
		  FROM pg_catalog.pg_opfamily f
		  WHERE f.opfnamespace OPERATOR(pg_catalog.=) 'edusync'::pg_catalog.regnamespace
		  UNION ALL
		  SELECT 'text search configuration ' OPERATOR(pg_catalog.||) c.cfgname::pg_catalog.text, c.cfgowner
		  FROM pg_catalog.pg_ts_config c
		  WHERE c.cfgnamespace OPERATOR(pg_catalog.=) 'edusync'::pg_catalog.regnamespace
		  UNION ALL
		  SELECT 'text search dictionary ' OPERATOR(pg_catalog.||) d.dictname::pg_catalog.text, d.dictowner
		  FROM pg_catalog.pg_ts_dict d
		  WHERE d.dictnamespace OPERATOR(pg_catalog.=) 'edusync'::pg_catalog.regnamespace
		  UNION ALL
		  SELECT 'statistics object ' OPERATOR(pg_catalog.||) s.stxname::pg_catalog.text, s.stxowner
		  FROM pg_catalog.pg_statistic_ext s
		  WHERE s.stxnamespace OPERATOR(pg_catalog.=) 'edusync'::pg_catalog.regnamespace
		 ) o(what, owner)
		 JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) o.owner
	WHERE NOT r.rolsuper;
	IF culprit IS NOT NULL THEN
		RAISE EXCEPTION USING
			ERRCODE = 'insufficient_privilege',
			MESSAGE = 'schema "edusync" holds objects not owned by a superuser',
			DETAIL = 'Found: ' OPERATOR(pg_catalog.||) culprit OPERATOR(pg_catalog.||) '.',
			HINT = 'Drop them, or the schema, before CREATE EXTENSION edusync.';
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
	-- The random uuid first: two keys of one profile differ in their first
	-- column, so that a lookup or an insert compares uuids (16 bytes each)
	-- without a text comparison of the profile first.  A profile's errors
	-- are found by sync_errors_list_idx.
	PRIMARY KEY (id, profile_id)
);
COMMENT ON TABLE edusync.sync_errors IS
	'One row per synchronization error, written by edusync.create_sync_error';
-- list_sync_errors' order: a page, first or after a $skiptoken, is one
-- index range scan.
CREATE INDEX sync_errors_list_idx ON edusync.sync_errors
	(profile_id, recorded_date_time DESC, id DESC);

-- A delivery's status.  A domain, not a CHECK on the table: PostgreSQL 15
-- reads and plans a table's CHECK constraints again for every statement
-- that writes the table (a third of the cost of a one-row INSERT), where a
-- domain's constraint is kept ready in the type cache.
CREATE DOMAIN edusync.delivery_status AS pg_catalog.text
	CONSTRAINT delivery_status_check
	CHECK (VALUE OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'delivered', 'failed']::pg_catalog.text[]));
COMMENT ON DOMAIN edusync.delivery_status IS
	'The status of a delivery: pending, delivered or failed';

CREATE TABLE edusync.deliveries (
	profile_id		pg_catalog.text NOT NULL,
	error_id		pg_catalog.uuid NOT NULL,
	status			edusync.delivery_status NOT NULL DEFAULT 'pending',
	attempts		pg_catalog.int4 NOT NULL DEFAULT 0,
	next_attempt_at pg_catalog.timestamptz DEFAULT pg_catalog.now(),
	last_status		pg_catalog.int4,
	last_error		pg_catalog.text,
	remote_id		pg_catalog.text,
	delivered_at	pg_catalog.timestamptz,
	created_at		pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),
	last_attempt_at pg_catalog.timestamptz,
	-- (the uuid first, as in sync_errors)
	PRIMARY KEY (error_id, profile_id),
	FOREIGN KEY (profile_id, error_id)
		REFERENCES edusync.sync_errors (profile_id, id) ON DELETE CASCADE
);
CREATE INDEX deliveries_pending_idx ON edusync.deliveries (next_attempt_at)
	WHERE status OPERATOR(pg_catalog.=) 'pending';
-- What edusync.delivery_queue counts, each from an index of its own rows:
-- the age of the oldest pending delivery, failed ones (also what
-- retry_failed looks for), and recent deliveries.
CREATE INDEX deliveries_pending_age_idx ON edusync.deliveries (created_at)
	WHERE status OPERATOR(pg_catalog.=) 'pending';
CREATE INDEX deliveries_failed_idx ON edusync.deliveries (profile_id)
	WHERE status OPERATOR(pg_catalog.=) 'failed';
CREATE INDEX deliveries_delivered_idx ON edusync.deliveries (delivered_at)
	WHERE status OPERATOR(pg_catalog.=) 'delivered';
COMMENT ON TABLE edusync.deliveries IS
	'Forwarding state of each forwarded error: the outbox of async mode';

SELECT pg_catalog.pg_extension_config_dump('edusync.sync_profiles', '');
SELECT pg_catalog.pg_extension_config_dump('edusync.sync_errors', '');
SELECT pg_catalog.pg_extension_config_dump('edusync.deliveries', '');

-- The C functions below run as the extension's owner (SECURITY DEFINER)
-- and pin the search path themselves for the whole of each call (to
-- pg_catalog; api.c's DefinerCall): the same protection as a
-- "SET search_path" clause at a fraction of its cost on PostgreSQL 15
-- and 16.  Every name in the statements they run is qualified as well.
CREATE FUNCTION edusync.create_sync_error(profile_id pg_catalog.text,
										  body pg_catalog.jsonb)
RETURNS pg_catalog.jsonb
AS 'MODULE_PATHNAME', 'create_sync_error_body'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER;
COMMENT ON FUNCTION edusync.create_sync_error(pg_catalog.text, pg_catalog.jsonb) IS
	'Validate a Graph request body, store the error, answer the Graph 201 body';

CREATE FUNCTION edusync.create_sync_error(profile_id pg_catalog.text,
										  entry_type pg_catalog.text,
										  error_code pg_catalog.text,
										  error_message pg_catalog.text,
										  joining_value pg_catalog.text DEFAULT NULL,
										  reportable_identifier pg_catalog.text DEFAULT NULL,
										  recorded_date_time pg_catalog.timestamptz DEFAULT NULL,
										  id pg_catalog.uuid DEFAULT NULL)
RETURNS pg_catalog.jsonb
AS 'MODULE_PATHNAME', 'create_sync_error_args'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER;
COMMENT ON FUNCTION edusync.create_sync_error(pg_catalog.text, pg_catalog.text,
	pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text,
	pg_catalog.timestamptz, pg_catalog.uuid) IS
	'Validate typed error fields, store the error, answer the Graph 201 body';

CREATE FUNCTION edusync.create_sync_errors(profile_id pg_catalog.text,
										   bodies pg_catalog.jsonb)
RETURNS SETOF pg_catalog.jsonb
AS 'MODULE_PATHNAME', 'create_sync_errors'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER;
COMMENT ON FUNCTION edusync.create_sync_errors(pg_catalog.text, pg_catalog.jsonb) IS
	'Validate a JSON array of Graph request bodies, store all or none, answer a Graph 201 body each';

CREATE FUNCTION edusync.get_sync_error(profile_id pg_catalog.text,
									   id pg_catalog.uuid)
RETURNS pg_catalog.jsonb
AS 'MODULE_PATHNAME', 'get_sync_error'
LANGUAGE C STABLE STRICT PARALLEL SAFE
SECURITY DEFINER;
COMMENT ON FUNCTION edusync.get_sync_error(pg_catalog.text, pg_catalog.uuid) IS
	'One stored error as its Graph body, or NULL';

CREATE FUNCTION edusync.list_sync_errors(profile_id pg_catalog.text,
										 top pg_catalog.int4 DEFAULT 100,
										 skip pg_catalog.int4 DEFAULT 0,
										 skiptoken pg_catalog.text DEFAULT NULL)
RETURNS pg_catalog.jsonb
AS 'MODULE_PATHNAME', 'list_sync_errors'
LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL SAFE
SECURITY DEFINER;
COMMENT ON FUNCTION edusync.list_sync_errors(pg_catalog.text, pg_catalog.int4, pg_catalog.int4, pg_catalog.text) IS
	'A page of a profile''s errors, newest first, as a Graph collection; skiptoken (from @odata.nextLink) resumes after a page';

CREATE FUNCTION edusync.retry_failed(profile_id pg_catalog.text DEFAULT NULL)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'retry_failed'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER;
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

CREATE FUNCTION edusync.queue_errors(profile_id pg_catalog.text,
									 ids pg_catalog.uuid[] DEFAULT NULL)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'queue_errors'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER;
COMMENT ON FUNCTION edusync.queue_errors(pg_catalog.text, pg_catalog.uuid[]) IS
	'Queue for the delivery worker the errors of a profile (all, or those given) never forwarded';

CREATE FUNCTION edusync.retry_delivery(profile_id pg_catalog.text,
									   error_id pg_catalog.uuid)
RETURNS pg_catalog.bool
AS 'MODULE_PATHNAME', 'retry_delivery'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER;
COMMENT ON FUNCTION edusync.retry_delivery(pg_catalog.text, pg_catalog.uuid) IS
	'Queue one failed delivery again; true if it was failed';

CREATE FUNCTION edusync.cancel_delivery(profile_id pg_catalog.text,
										error_id pg_catalog.uuid)
RETURNS pg_catalog.bool
AS 'MODULE_PATHNAME', 'cancel_delivery'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER;
COMMENT ON FUNCTION edusync.cancel_delivery(pg_catalog.text, pg_catalog.uuid) IS
	'Give up one pending delivery (failed, cancelled by the session user); true if it was pending';

CREATE FUNCTION edusync.version()
RETURNS pg_catalog.text
AS 'MODULE_PATHNAME', 'edusync_version'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION edusync.version() IS
	'The version of the edusync library';

CREATE FUNCTION edusync.worker_status(
	OUT datname pg_catalog.text,
	OUT state pg_catalog.text,
	OUT pid pg_catalog.int4,
	OUT since pg_catalog.timestamptz,
	OUT activity pg_catalog.text,
	OUT detail pg_catalog.text,
	OUT last_success pg_catalog.timestamptz,
	OUT sent pg_catalog.int8,
	OUT delivered pg_catalog.int8,
	OUT retried pg_catalog.int8,
	OUT failed pg_catalog.int8,
	OUT throttled pg_catalog.int8,
	OUT batches pg_catalog.int8)
RETURNS SETOF pg_catalog.record
AS 'MODULE_PATHNAME', 'worker_status'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE
SECURITY DEFINER;
COMMENT ON FUNCTION edusync.worker_status() IS
	'Per database, its delivery worker: state, activity, why, counters since start';

-- delivery_queue's delivered_last_hour without counting an hour of index
-- entries: a ring of per-minute counts in shared memory, bumped at commit
-- by whoever records a delivery, seeded from the table once after a server
-- start; counted from the table when it cannot answer (not preloaded, a
-- standby, in doubt).  Readers of the view need EXECUTE on it.
CREATE FUNCTION edusync.delivered_last_hour()
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'delivered_last_hour'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
SECURITY DEFINER;
COMMENT ON FUNCTION edusync.delivered_last_hour() IS
	'Deliveries with delivered_at in the last hour: from a ring of per-minute counts in shared memory, or from the table when the ring cannot answer';

-- Deleting or truncating delivery rows puts that ring in doubt (at commit):
-- the next reader seeds it again from the table.
CREATE FUNCTION edusync.deliveries_removed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'deliveries_removed'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION edusync.deliveries_removed() IS
	'Trigger: delivery rows were deleted, so delivered_last_hour counts from the table until it is seeded again';
CREATE TRIGGER deliveries_removed AFTER DELETE OR TRUNCATE ON edusync.deliveries
	FOR EACH STATEMENT EXECUTE FUNCTION edusync.deliveries_removed();

-- pending, failed and oldest_pending_age each read one partial index (see
-- the deliveries table), never the whole table; delivered_last_hour reads
-- the ring above.
CREATE VIEW edusync.delivery_queue AS
	SELECT (SELECT pg_catalog.count(*) FROM edusync.deliveries d
			WHERE d.status OPERATOR(pg_catalog.=) 'pending') AS pending,
		   (SELECT pg_catalog.count(*) FROM edusync.deliveries d
			WHERE d.status OPERATOR(pg_catalog.=) 'failed') AS failed,
		   edusync.delivered_last_hour() AS delivered_last_hour,
		   pg_catalog.now() OPERATOR(pg_catalog.-)
		   (SELECT pg_catalog.min(d.created_at) FROM edusync.deliveries d
			WHERE d.status OPERATOR(pg_catalog.=) 'pending') AS oldest_pending_age;
COMMENT ON VIEW edusync.delivery_queue IS
	'The forwarding queue at a glance, for monitoring; pending, failed and oldest_pending_age from partial indexes, delivered_last_hour from edusync.delivered_last_hour() (a ring of per-minute counts in shared memory, seeded from the table once per server start)';

-- Nothing is usable by PUBLIC; the README shows the GRANTs for writers and readers.
REVOKE ALL ON SCHEMA edusync FROM PUBLIC;
REVOKE ALL ON TYPE edusync.education_sync_error FROM PUBLIC;
REVOKE ALL ON DOMAIN edusync.delivery_status FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA edusync FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA edusync FROM PUBLIC;
