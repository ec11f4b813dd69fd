/* edusync_proxy--0.1.0.sql: install script of the edusync_proxy extension.
 *
 * Installed in a proxy database (not in a database that has edusync), it
 * defines edusync's SQL interface as PL/Proxy functions on the cluster
 * 'edusync': each call runs on the shard that hashtext(profile_id) names,
 * where edusync answers it.  The partitions are the options p0, p1, ... of
 * CREATE SERVER edusync FOREIGN DATA WRAPPER plproxy (see the README).
 */

-- complain if the script is sourced in psql rather than run by CREATE EXTENSION
\echo Use "CREATE EXTENSION edusync_proxy" to load this file. \quit

-- Every name is qualified: the script does not depend on search_path.

-- The schema must belong to a superuser (as for edusync), and edusync
-- itself must not be here: the proxy defines the same functions.
DO $$
BEGIN
	IF NOT (SELECT r.rolsuper
			FROM pg_catalog.pg_namespace n
			JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
			WHERE n.nspname OPERATOR(pg_catalog.=) 'edusync') THEN
		RAISE EXCEPTION USING
			ERRCODE = 'insufficient_privilege',
			MESSAGE = 'schema "edusync" is not owned by a superuser',
			HINT = 'Drop the schema, or give it to a superuser, before CREATE EXTENSION edusync_proxy.';
	END IF;
	IF EXISTS (SELECT FROM pg_catalog.pg_extension
			   WHERE extname OPERATOR(pg_catalog.=) 'edusync') THEN
		RAISE EXCEPTION USING
			ERRCODE = 'object_not_in_prerequisite_state',
			MESSAGE = 'extension "edusync" is installed in this database',
			HINT = 'Install edusync_proxy in a database of its own; the shards run edusync.';
	END IF;
END
$$;

/*
 * Routing.  Every routed function runs on the partition
 * pg_catalog.hashtext(profile_id) & (number of partitions - 1).  A NULL
 * profile id is routed as the empty string, so that the shard refuses it
 * with its own SQLSTATE (23502) rather than PL/Proxy with its own.
 *
 * The forwarding mode is the shard session's edusync.forward: the proxy
 * connects to the shards with its own sessions, so a SET in the caller's
 * session does not reach them.  Set it on the shards, or in the partitions'
 * connection strings (options '-c edusync.forward=async').
 *
 * PL/Proxy takes only VOLATILE functions, so the read functions are too.
 */

CREATE FUNCTION edusync.create_sync_error(profile_id pg_catalog.text,
										  body pg_catalog.jsonb)
RETURNS pg_catalog.jsonb
AS $$
	CLUSTER 'edusync';
	RUN ON pg_catalog.hashtext(coalesce(profile_id, ''));
$$ LANGUAGE plproxy VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION edusync.create_sync_error(pg_catalog.text, pg_catalog.jsonb) IS
	'edusync.create_sync_error(profile_id, body) on the shard of the profile';

-- recorded_date_time defaults to NULL, not now(): a NULL is "not given" on
-- the shard, which then takes its own now(), as a direct call without it.
CREATE FUNCTION edusync.create_sync_error(profile_id pg_catalog.text,
										  entry_type pg_catalog.text,
										  error_code pg_catalog.text,
										  error_message pg_catalog.text,
										  joining_value pg_catalog.text DEFAULT NULL,
										  reportable_identifier pg_catalog.text DEFAULT NULL,
										  recorded_date_time pg_catalog.timestamptz DEFAULT NULL,
										  id pg_catalog.uuid DEFAULT NULL)
RETURNS pg_catalog.jsonb
AS $$
	CLUSTER 'edusync';
	RUN ON pg_catalog.hashtext(coalesce(profile_id, ''));
$$ LANGUAGE plproxy VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION edusync.create_sync_error(pg_catalog.text, pg_catalog.text,
	pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text,
	pg_catalog.timestamptz, pg_catalog.uuid) IS
	'edusync.create_sync_error(profile_id, entry_type, ...) on the shard of the profile';

-- Needs shards whose edusync has create_sync_errors (else 42883 from the shard).
CREATE FUNCTION edusync.create_sync_errors(profile_id pg_catalog.text,
										   bodies pg_catalog.jsonb)
RETURNS SETOF pg_catalog.jsonb
AS $$
	CLUSTER 'edusync';
	RUN ON pg_catalog.hashtext(coalesce(profile_id, ''));
$$ LANGUAGE plproxy VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION edusync.create_sync_errors(pg_catalog.text, pg_catalog.jsonb) IS
	'edusync.create_sync_errors(profile_id, bodies) on the shard of the profile';

CREATE FUNCTION edusync.get_sync_error(profile_id pg_catalog.text,
									   id pg_catalog.uuid)
RETURNS pg_catalog.jsonb
AS $$
	CLUSTER 'edusync';
	RUN ON pg_catalog.hashtext(profile_id);
$$ LANGUAGE plproxy VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION edusync.get_sync_error(pg_catalog.text, pg_catalog.uuid) IS
	'edusync.get_sync_error(profile_id, id) on the shard of the profile';

CREATE FUNCTION edusync.list_sync_errors(profile_id pg_catalog.text,
										 top pg_catalog.int4 DEFAULT 100,
										 skip pg_catalog.int4 DEFAULT 0)
RETURNS pg_catalog.jsonb
AS $$
	CLUSTER 'edusync';
	RUN ON pg_catalog.hashtext(profile_id);
$$ LANGUAGE plproxy VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION edusync.list_sync_errors(pg_catalog.text, pg_catalog.int4, pg_catalog.int4) IS
	'edusync.list_sync_errors(profile_id, top, skip) on the shard of the profile';

CREATE FUNCTION edusync.create_sync_profile(id pg_catalog.text,
											display_name pg_catalog.text)
RETURNS pg_catalog.text
AS $$
	CLUSTER 'edusync';
	RUN ON pg_catalog.hashtext(coalesce(id, ''));
$$ LANGUAGE plproxy VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION edusync.create_sync_profile(pg_catalog.text, pg_catalog.text) IS
	'edusync.create_sync_profile(id, display_name) on the shard the profile belongs to';

/*
 * retry_failed: one profile's shard, or (profile_id NULL) every shard,
 * adding up how many each queued again.
 */
CREATE FUNCTION edusync.retry_failed_on_shard(profile_id pg_catalog.text)
RETURNS pg_catalog.int8
AS $$
	CLUSTER 'edusync';
	RUN ON pg_catalog.hashtext(profile_id);
	SELECT edusync.retry_failed(profile_id);
$$ LANGUAGE plproxy VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION edusync.retry_failed_on_shard(pg_catalog.text) IS
	'edusync.retry_failed(profile_id) on the shard of the profile (used by retry_failed)';

CREATE FUNCTION edusync.retry_failed_on_all_shards()
RETURNS SETOF pg_catalog.int8
AS $$
	CLUSTER 'edusync';
	RUN ON ALL;
	SELECT edusync.retry_failed(NULL::pg_catalog.text);
$$ LANGUAGE plproxy VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION edusync.retry_failed_on_all_shards() IS
	'edusync.retry_failed() on every shard, one count per shard (used by retry_failed)';

CREATE FUNCTION edusync.retry_failed(profile_id pg_catalog.text DEFAULT NULL)
RETURNS pg_catalog.int8
AS $$
	SELECT CASE WHEN profile_id IS NULL
		THEN (SELECT coalesce(pg_catalog.sum(n), 0)::pg_catalog.int8
			  FROM edusync.retry_failed_on_all_shards() AS n)
		ELSE edusync.retry_failed_on_shard(profile_id)
	END
$$ LANGUAGE sql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION edusync.retry_failed(pg_catalog.text) IS
	'Queue failed deliveries (of one profile, or all on every shard) again; returns how many';

/*
 * The delivery queue, cluster-wide: each shard's edusync.delivery_queue
 * (RUN ON ALL), and their sum under the shard's name for it.
 */
CREATE FUNCTION edusync.shard_delivery_queues(OUT shard pg_catalog.text,
											  OUT pending pg_catalog.int8,
											  OUT failed pg_catalog.int8,
											  OUT delivered_last_hour pg_catalog.int8,
											  OUT oldest_pending_age pg_catalog.interval)
RETURNS SETOF record
AS $$
	CLUSTER 'edusync';
	RUN ON ALL;
	SELECT pg_catalog.format('%s:%s/%s',
				coalesce(pg_catalog.host(pg_catalog.inet_server_addr()), 'local'),
				pg_catalog.current_setting('port'), pg_catalog.current_database()) AS shard,
		   q.pending, q.failed, q.delivered_last_hour, q.oldest_pending_age
	FROM edusync.delivery_queue AS q;
$$ LANGUAGE plproxy VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION edusync.shard_delivery_queues() IS
	'Each shard''s edusync.delivery_queue, named by the address it answers on';

CREATE VIEW edusync.delivery_queue AS
	SELECT coalesce(pg_catalog.sum(s.pending), 0)::pg_catalog.int8 AS pending,
		   coalesce(pg_catalog.sum(s.failed), 0)::pg_catalog.int8 AS failed,
		   coalesce(pg_catalog.sum(s.delivered_last_hour), 0)::pg_catalog.int8 AS delivered_last_hour,
		   pg_catalog.max(s.oldest_pending_age) AS oldest_pending_age
	FROM edusync.shard_delivery_queues() AS s;
COMMENT ON VIEW edusync.delivery_queue IS
	'The forwarding queue of every shard at a glance, for monitoring';

-- Nothing is usable by PUBLIC; the README shows the GRANTs.
REVOKE ALL ON SCHEMA edusync FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA edusync FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA edusync FROM PUBLIC;
