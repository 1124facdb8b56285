-- Operations control functions: anomstream.skip() and anomstream.accept_gap() (DESIGN.md §7):
-- privileges, comments, configuration tables, and the refusals a session can see without a
-- running worker (this instance has no brokers). Worker behaviour is in test/t/81x_ops_*.pl.
CREATE EXTENSION anomstream;

-- SECURITY DEFINER, fixed search_path, administrators only, commented.
SELECT p.oid::regprocedure AS function, p.prosecdef, p.proconfig,
	   has_function_privilege('anomstream_admin', p.oid, 'EXECUTE') AS admin,
	   has_function_privilege('anomstream_reader', p.oid, 'EXECUTE') AS reader,
	   has_function_privilege('public', p.oid, 'EXECUTE') AS public,
	   obj_description(p.oid, 'pg_proc') IS NOT NULL AS commented
  FROM pg_proc p
 WHERE p.pronamespace = 'anomstream'::regnamespace
   AND p.proname IN ('skip', 'accept_gap')
 ORDER BY 1;

-- gaps and skips: extension configuration tables (pg_dump carries them), readable by the
-- reader and the administrator, written only through the functions.
SELECT c.relname,
	   c.oid = ANY (e.extconfig) AS config_table,
	   has_table_privilege('anomstream_reader', c.oid, 'SELECT') AS reader_select,
	   has_table_privilege('anomstream_admin', c.oid, 'INSERT') AS admin_insert,
	   obj_description(c.oid, 'pg_class') IS NOT NULL AS commented
  FROM pg_class c, pg_extension e
 WHERE e.extname = 'anomstream' AND c.relnamespace = 'anomstream'::regnamespace
   AND c.relname IN ('gaps', 'skips')
 ORDER BY 1;

-- anomstream.status shows each partition's state and the worker's.
SELECT attname FROM pg_attribute
 WHERE attrelid = 'anomstream.status'::regclass AND attname IN ('state', 'worker_state', 'gap_earliest_offset')
 ORDER BY attnum;

-- Refusals, with their SQLSTATEs.
\set VERBOSITY sqlstate
SELECT anomstream.skip('nope', 0, 5);
SELECT anomstream.skip('process', 0, -1);
SELECT anomstream.skip(NULL, 0, 5);
SELECT anomstream.accept_gap('process', 0);
\set VERBOSITY default
SELECT anomstream.skip('nope', 0, 5);
SELECT anomstream.skip('process', 3, 5);
SELECT anomstream.accept_gap('process', 0);
-- An offset below the durable position (a position as the worker would have written it).
INSERT INTO anomstream.positions (topic, kafka_partition, durable_offset, staging_low)
	VALUES ('process', 0, 100, 0);
SELECT anomstream.skip('process', 0, 99);
SELECT anomstream.skip('process', 0, 100);
SELECT anomstream.skip('process', 0, 100);
SELECT topic, kafka_partition, kafka_offset, requested_by = current_user AS by_me,
	   applied_at IS NULL AS pending
  FROM anomstream.skips;

DROP EXTENSION anomstream;
