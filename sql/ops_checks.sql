-- Operations: install-time guard against a pre-existing anomstream schema, scale-out check,
-- control function privileges and comments. (Worker behaviour is in test/t/80x_ops_*.pl.)

-- A schema "anomstream" that already holds objects (here a look-alike now()) is refused.
-- (DROP EXTENSION in earlier test files leaves an empty schema behind.)
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS anomstream;
RESET client_min_messages;
CREATE SCHEMA anomstream;
CREATE FUNCTION anomstream.now() RETURNS timestamptz LANGUAGE sql AS $$SELECT '1999-01-01'::timestamptz$$;
CREATE EXTENSION anomstream;
DROP SCHEMA anomstream CASCADE;
-- An empty schema owned by a non-superuser is refused too: its owner could drop our objects.
CREATE ROLE regress_ops_owner;
CREATE SCHEMA anomstream AUTHORIZATION regress_ops_owner;
CREATE EXTENSION anomstream;
DROP SCHEMA anomstream;
DROP ROLE regress_ops_owner;

CREATE EXTENSION anomstream;

SELECT anomstream.check_partition_counts('process', 4, 'memory', 4);
SELECT anomstream.check_partition_counts('process', 4, 'memory', 8);

-- Control functions: SECURITY DEFINER, fixed search_path, admin only.
SELECT p.proname, p.prosecdef, p.proconfig,
	   has_function_privilege('anomstream_admin', p.oid, 'EXECUTE') AS admin,
	   has_function_privilege('anomstream_reader', p.oid, 'EXECUTE') AS reader,
	   has_function_privilege('public', p.oid, 'EXECUTE') AS public
  FROM pg_proc p
 WHERE p.pronamespace = 'anomstream'::regnamespace
   AND p.proname IN ('pause', 'resume', 'claim', 'apply_retention')
 ORDER BY 1;

-- Every function and view of the extension has a comment.
SELECT p.oid::regprocedure AS uncommented_function
  FROM pg_proc p
 WHERE p.pronamespace = 'anomstream'::regnamespace
   AND obj_description(p.oid, 'pg_proc') IS NULL;
SELECT c.relname AS uncommented_view
  FROM pg_class c
 WHERE c.relnamespace = 'anomstream'::regnamespace AND c.relkind = 'v'
   AND obj_description(c.oid, 'pg_class') IS NULL;

-- Every SQL or plpgsql function pins its search_path.
SELECT p.oid::regprocedure AS unpinned_function
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'anomstream'::regnamespace
   AND l.lanname IN ('sql', 'plpgsql')
   AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%');

-- The reader's table privileges.
SELECT c.relname,
	   has_table_privilege('anomstream_reader', c.oid, 'SELECT') AS reader_select
  FROM pg_class c
 WHERE c.relnamespace = 'anomstream'::regnamespace
   AND c.relname IN ('process_events', 'memory_events', 'dead_letters', 'positions',
					 'batch_ranges', 'staged_positions', 'staging_marker', 'models',
					 'potential_attacks', 'detected_attacks', 'status', 'table_status',
					 'attacks_per_window', 'latest_detected_attacks', 'grafana_status',
					 'active_model', 'control')
 ORDER BY 1;
SELECT has_column_privilege('anomstream_reader', 'anomstream.models', 'booster', 'SELECT') AS reader_booster,
	   has_column_privilege('anomstream_reader', 'anomstream.models', 'threshold', 'SELECT') AS reader_threshold;

-- apply_retention with the defaults: dead letters and late rows 7 days, results forever.
-- (late_rows is left out: whether it exists depends on the pipeline being installed)
SELECT relation, time_column, retention_seconds, deleted FROM anomstream.apply_retention()
 WHERE relation <> 'anomstream.late_rows' ORDER BY 1;

DROP EXTENSION anomstream;
