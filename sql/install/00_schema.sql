-- anomstream install script, assembled from sql/install/*.sql in name order.
-- Every object lives in schema anomstream; function bodies are schema-qualified so the
-- script and the functions behave the same under a hostile search_path.

\echo Use "CREATE EXTENSION anomstream" to load this file. \quit

-- Refuse a schema "anomstream" that existed before CREATE EXTENSION with objects in it or
-- owned by a role that is not a superuser: its owner could drop or shadow what this script
-- creates (see docs/ops.md, "Security").
DO $guard$
DECLARE
	ns oid := pg_catalog.to_regnamespace('anomstream');
BEGIN
	IF EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.relnamespace OPERATOR(pg_catalog.=) ns)
	   OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc p WHERE p.pronamespace OPERATOR(pg_catalog.=) ns)
	   OR EXISTS (SELECT 1 FROM pg_catalog.pg_operator o WHERE o.oprnamespace OPERATOR(pg_catalog.=) ns)
	   OR EXISTS (SELECT 1 FROM pg_catalog.pg_type t WHERE t.typnamespace OPERATOR(pg_catalog.=) ns)
	   OR NOT (SELECT r.rolsuper OR r.rolname OPERATOR(pg_catalog.=) CURRENT_USER
				 FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
				WHERE n.oid OPERATOR(pg_catalog.=) ns) THEN
		RAISE EXCEPTION 'schema "anomstream" already exists and is not empty or not owned by a superuser'
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Drop the schema (after checking what is in it), then run CREATE EXTENSION anomstream again.';
	END IF;
END
$guard$;

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
