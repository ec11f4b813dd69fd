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
