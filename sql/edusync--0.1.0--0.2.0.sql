/* edusync--0.1.0--0.2.0.sql: upgrade script from 0.1.0 to 0.2.0. */

-- complain if the script is sourced in psql rather than run by ALTER EXTENSION
\echo Use "ALTER EXTENSION edusync UPDATE TO '0.2.0'" to load this file. \quit

-- Every name is qualified: the script does not depend on search_path.

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

REVOKE ALL ON FUNCTION edusync.create_sync_profile(pg_catalog.text, pg_catalog.text) FROM PUBLIC;

-- recorded_date_time DEFAULT NULL: "not given" is NULL, not a value equal
-- to now() (the library no longer compares with now()).  The one place an
-- upgrade script must replace a function, keeping its grants.
CREATE OR REPLACE FUNCTION edusync.create_sync_error(profile_id pg_catalog.text,
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

-- The C functions pin the search path themselves, for each call (api.c's
-- DefinerCall), at less cost than a SET clause: the ones kept from 0.1.0
-- drop theirs (the ones created above and below have none).
ALTER FUNCTION edusync.create_sync_error(pg_catalog.text, pg_catalog.jsonb) RESET search_path;
ALTER FUNCTION edusync.get_sync_error(pg_catalog.text, pg_catalog.uuid) RESET search_path;
ALTER FUNCTION edusync.retry_failed(pg_catalog.text) RESET search_path;

-- list_sync_errors' order: a page, first or after a $skiptoken, is one
-- index range scan.
CREATE INDEX sync_errors_list_idx ON edusync.sync_errors
	(profile_id, recorded_date_time DESC, id DESC);

CREATE FUNCTION edusync.create_sync_errors(profile_id pg_catalog.text,
										   bodies pg_catalog.jsonb)
RETURNS SETOF pg_catalog.jsonb
AS 'MODULE_PATHNAME', 'create_sync_errors'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER;
COMMENT ON FUNCTION edusync.create_sync_errors(pg_catalog.text, pg_catalog.jsonb) IS
	'Validate a JSON array of Graph request bodies, store all or none, answer a Graph 201 body each';

-- list_sync_errors takes a skiptoken.  A fourth argument with a default
-- beside the three-argument function would make list_sync_errors('p')
-- ambiguous, so the function is replaced: GRANTs on the old signature are
-- dropped with it and must be given again on the new one (README).
DROP FUNCTION edusync.list_sync_errors(pg_catalog.text, pg_catalog.int4, pg_catalog.int4);
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

REVOKE ALL ON FUNCTION edusync.queue_errors(pg_catalog.text, pg_catalog.uuid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION edusync.retry_delivery(pg_catalog.text, pg_catalog.uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION edusync.cancel_delivery(pg_catalog.text, pg_catalog.uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION edusync.create_sync_errors(pg_catalog.text, pg_catalog.jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION edusync.list_sync_errors(pg_catalog.text, pg_catalog.int4, pg_catalog.int4, pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION edusync.version() FROM PUBLIC;
REVOKE ALL ON FUNCTION edusync.worker_status() FROM PUBLIC;

-- A delivery's status.  A domain, not a CHECK on the table: PostgreSQL 15
-- reads and plans a table's CHECK constraints again for every statement
-- that writes the table (a third of the cost of a one-row INSERT), where a
-- domain's constraint is kept ready in the type cache.
CREATE DOMAIN edusync.delivery_status AS pg_catalog.text
	CONSTRAINT delivery_status_check
	CHECK (VALUE OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'delivered', 'failed']::pg_catalog.text[]));
COMMENT ON DOMAIN edusync.delivery_status IS
	'The status of a delivery: pending, delivered or failed';

-- The column changes type (its partial index is rebuilt); the view that
-- reads it is set aside for the change, keeping its grants.
CREATE OR REPLACE VIEW edusync.delivery_queue AS
	SELECT NULL::pg_catalog.int8 AS pending, NULL::pg_catalog.int8 AS failed,
		   NULL::pg_catalog.int8 AS delivered_last_hour,
		   NULL::pg_catalog.interval AS oldest_pending_age;
ALTER TABLE edusync.deliveries DROP CONSTRAINT deliveries_status_check,
	ALTER COLUMN status TYPE edusync.delivery_status;
REVOKE ALL ON DOMAIN edusync.delivery_status FROM PUBLIC;

-- What edusync.delivery_queue counts, each from an index of its own rows:
-- the age of the oldest pending delivery, failed ones (also what
-- retry_failed looks for), and recent deliveries.
CREATE INDEX deliveries_pending_age_idx ON edusync.deliveries (created_at)
	WHERE status OPERATOR(pg_catalog.=) 'pending';
CREATE INDEX deliveries_failed_idx ON edusync.deliveries (profile_id)
	WHERE status OPERATOR(pg_catalog.=) 'failed';
CREATE INDEX deliveries_delivered_idx ON edusync.deliveries (delivered_at)
	WHERE status OPERATOR(pg_catalog.=) 'delivered';

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

REVOKE ALL ON FUNCTION edusync.delivered_last_hour() FROM PUBLIC;
REVOKE ALL ON FUNCTION edusync.deliveries_removed() FROM PUBLIC;

-- delivery_queue reads those indexes and that ring (same columns, same
-- meaning); the view keeps its grants, but its readers now also need
-- EXECUTE on edusync.delivered_last_hour() (README).
CREATE OR REPLACE VIEW edusync.delivery_queue AS
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

-- when each delivery was last sent (NULL: never)
ALTER TABLE edusync.deliveries ADD COLUMN last_attempt_at pg_catalog.timestamptz;

-- Both primary keys lead with the uuid (see edusync--0.2.0.sql): the same
-- keys, their indexes built again (a table's size of work, under an
-- ACCESS EXCLUSIVE lock until the update commits).
ALTER TABLE edusync.deliveries DROP CONSTRAINT deliveries_profile_id_error_id_fkey;
ALTER TABLE edusync.deliveries DROP CONSTRAINT deliveries_pkey;
ALTER TABLE edusync.sync_errors DROP CONSTRAINT sync_errors_pkey;
ALTER TABLE edusync.sync_errors ADD PRIMARY KEY (id, profile_id);
ALTER TABLE edusync.deliveries ADD PRIMARY KEY (error_id, profile_id);
ALTER TABLE edusync.deliveries ADD FOREIGN KEY (profile_id, error_id)
	REFERENCES edusync.sync_errors (profile_id, id) ON DELETE CASCADE;
