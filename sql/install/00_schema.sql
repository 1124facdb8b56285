-- anomstream install script, assembled from sql/install/*.sql in name order.
-- Every object lives in schema anomstream; function bodies are schema-qualified so the
-- script and the functions behave the same under a hostile search_path.

\echo Use "CREATE EXTENSION anomstream" to load this file. \quit

-- Roles (DESIGN.md §10). Created once per cluster; kept if the extension is dropped.
DO $roles$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'anomstream_admin') THEN
		CREATE ROLE anomstream_admin NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'anomstream_reader') THEN
		CREATE ROLE anomstream_reader NOLOGIN;
	END IF;
END
$roles$;

GRANT USAGE ON SCHEMA anomstream TO anomstream_admin, anomstream_reader;
