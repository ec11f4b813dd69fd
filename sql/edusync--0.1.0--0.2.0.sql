/* edusync--0.1.0--0.2.0.sql: upgrade script from 0.1.0 to 0.2.0. */

-- complain if the script is sourced in psql rather than run by ALTER EXTENSION
\echo Use "ALTER EXTENSION edusync UPDATE TO '0.2.0'" to load this file. \quit

-- Every name is qualified: the script does not depend on search_path.
