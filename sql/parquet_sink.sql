-- Continuous Parquet sinks: anomstream.set_sink's checks and SQLSTATEs, privileges, the
-- config tables. (Streaming, crashes and the files themselves: test/t/510, 511.)
CREATE EXTENSION anomstream;
\set VERBOSITY sqlstate

-- Unknown sink, relative or missing directory, a file instead of a directory.
SELECT anomstream.set_sink('attacks', '/tmp');
SELECT anomstream.set_sink(NULL, '/tmp');
SELECT anomstream.set_sink('process', 'relative/dir');
SELECT anomstream.set_sink('process', '/nonexistent/anomstream/sink');
SELECT anomstream.set_sink('process', '/dev/null');
SELECT count(*) AS sinks FROM anomstream.sinks;

-- A superuser may; the path is canonicalized; setting again replaces the directory.
SELECT anomstream.set_sink('process', '/');
SELECT anomstream.set_sink('process', '/tmp//');
SELECT name, directory, set_by = current_user AS by_me FROM anomstream.sinks;

-- Privileges: anomstream_admin alone may not choose where the server writes files, nor may
-- a pg_write_server_files member that is not anomstream_admin call the function; both
-- together may.
CREATE ROLE regress_sink_admin IN ROLE anomstream_admin;
CREATE ROLE regress_sink_files IN ROLE pg_write_server_files;
CREATE ROLE regress_sink_both IN ROLE anomstream_admin, pg_write_server_files;
SET ROLE regress_sink_admin;
SELECT anomstream.set_sink('memory', '/tmp');
SELECT anomstream.set_sink('process', NULL);
SET ROLE regress_sink_files;
SELECT anomstream.set_sink('memory', '/tmp');
SET ROLE regress_sink_both;
SELECT anomstream.set_sink('memory', '/tmp');
RESET ROLE;
SELECT name, directory, CASE WHEN set_by = current_user THEN 'me' ELSE set_by::text END AS set_by
  FROM anomstream.sinks ORDER BY name;

-- The function's privileges, and the tables pg_dump carries.
SELECT has_function_privilege('public', 'anomstream.set_sink(text, text)', 'EXECUTE') AS public,
	   has_function_privilege('anomstream_admin', 'anomstream.set_sink(text, text)', 'EXECUTE') AS admin,
	   has_function_privilege('anomstream_reader', 'anomstream.set_sink(text, text)', 'EXECUTE') AS reader;
SELECT c.relname
  FROM pg_extension e, unnest(e.extconfig) AS t(oid) JOIN pg_class c ON c.oid = t.oid
 WHERE e.extname = 'anomstream' AND c.relname LIKE 'sink%'
 ORDER BY 1;

-- Off: the row goes (and with it the sink's positions).
INSERT INTO anomstream.sink_positions (sink, kafka_partition, topic, next_position, end_position)
VALUES ('memory', 0, 'memory', 10, 20);
SELECT anomstream.set_sink('memory', NULL);
SELECT anomstream.set_sink('process', NULL);
SELECT (SELECT count(*) FROM anomstream.sinks) AS sinks,
	   (SELECT count(*) FROM anomstream.sink_positions) AS positions;

DROP ROLE regress_sink_admin, regress_sink_files, regress_sink_both;
DROP EXTENSION anomstream;
