-- Scale-out (DESIGN.md §11): the union of several servers' results through postgres_fdw.
--
-- Each consuming server runs anomstream with its own anomstream.partitions; a reporting
-- server (one of them, or another with the extension installed and no brokers) attaches the
-- others as postgres_fdw foreign servers. scaleout_attach() creates, in the schema
-- anomstream_scaleout (outside the extension, owned by the caller), one foreign table per
-- result table and server, and the views anomstream_scaleout.potential_attacks and
-- anomstream_scaleout.detected_attacks: the local results and every attached server's, with
-- a first column "server". Machines never span servers (messages keyed by machine, equal
-- partition counts), so the union is the result of one server consuming everything.
--
-- The functions run with the caller's rights (they create objects the caller owns); the
-- caller needs CREATE on the database, USAGE on the foreign servers and a user mapping.

CREATE FUNCTION anomstream.scaleout_refresh() RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	t text;
	cols text;
	q text;
	s record;
BEGIN
	IF pg_catalog.to_regclass('anomstream_scaleout.servers') IS NULL THEN
		RAISE EXCEPTION 'no server was attached'
			USING ERRCODE = 'undefined_object',
				  HINT = 'Run SELECT anomstream.scaleout_attach(''server'') first.';
	END IF;
	FOREACH t IN ARRAY ARRAY['potential_attacks', 'detected_attacks'] LOOP
		SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum)
		  INTO cols
		  FROM pg_catalog.pg_attribute a
		 WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.format('anomstream.%I', t)::pg_catalog.regclass
		   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
		-- this server's own results (empty on a reporting server that consumes nothing)
		q := pg_catalog.format('SELECT %L::pg_catalog.text AS server, %s FROM anomstream.%I',
							   COALESCE(NULLIF(pg_catalog.current_setting('cluster_name'), ''), 'local'),
							   cols, t);
		FOR s IN SELECT v.server FROM anomstream_scaleout.servers v ORDER BY v.server LOOP
			q := q OPERATOR(pg_catalog.||) pg_catalog.format(
				' UNION ALL SELECT %L::pg_catalog.text, %s FROM anomstream_scaleout.%I',
				s.server, cols, s.server OPERATOR(pg_catalog.||) '_' OPERATOR(pg_catalog.||) t);
		END LOOP;
		EXECUTE pg_catalog.format('CREATE OR REPLACE VIEW anomstream_scaleout.%I AS %s', t, q);
		EXECUTE pg_catalog.format('COMMENT ON VIEW anomstream_scaleout.%I IS %L', t,
			pg_catalog.format('anomstream.%s of this server and of every attached server (anomstream.scaleout_attach).', t));
		EXECUTE pg_catalog.format('GRANT SELECT ON anomstream_scaleout.%I TO anomstream_reader, anomstream_admin', t);
	END LOOP;
END
$fn$;
COMMENT ON FUNCTION anomstream.scaleout_refresh() IS
	'Rebuild the views anomstream_scaleout.potential_attacks and detected_attacks over this server and the attached ones.';

CREATE FUNCTION anomstream.scaleout_attach(server name) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	t text;
	cols text;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_foreign_server s
					 JOIN pg_catalog.pg_foreign_data_wrapper w
					   ON w.oid OPERATOR(pg_catalog.=) s.srvfdw
					WHERE s.srvname OPERATOR(pg_catalog.=) server
					  AND w.fdwname OPERATOR(pg_catalog.=) 'postgres_fdw') THEN
		RAISE EXCEPTION 'foreign server "%" does not exist or does not use postgres_fdw', server
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create it first: CREATE EXTENSION postgres_fdw; CREATE SERVER ... FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host ''...'', port ''...'', dbname ''...''); CREATE USER MAPPING FOR ... SERVER ... OPTIONS (user ''...'', password ''...'');';
	END IF;
	IF pg_catalog.to_regnamespace('anomstream_scaleout') IS NULL THEN
		EXECUTE 'CREATE SCHEMA anomstream_scaleout';
		EXECUTE 'GRANT USAGE ON SCHEMA anomstream_scaleout TO anomstream_reader, anomstream_admin';
	END IF;
	IF pg_catalog.to_regclass('anomstream_scaleout.servers') IS NULL THEN
		EXECUTE 'CREATE TABLE anomstream_scaleout.servers (server name PRIMARY KEY, '
				'attached_at timestamptz NOT NULL DEFAULT pg_catalog.now())';
	END IF;
	-- attached again (e.g. after an extension update added columns): take the server out
	-- of the views first, so its foreign tables can be replaced without touching the views
	EXECUTE pg_catalog.format('DELETE FROM anomstream_scaleout.servers v '
							  'WHERE v.server OPERATOR(pg_catalog.=) %L', server);
	PERFORM anomstream.scaleout_refresh();
	FOREACH t IN ARRAY ARRAY['potential_attacks', 'detected_attacks'] LOOP
		-- the remote table has this server's columns: every server runs the same version
		SELECT pg_catalog.string_agg(pg_catalog.format('%I %s', a.attname,
										 pg_catalog.format_type(a.atttypid, a.atttypmod)),
									 ', ' ORDER BY a.attnum)
		  INTO cols
		  FROM pg_catalog.pg_attribute a
		 WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.format('anomstream.%I', t)::pg_catalog.regclass
		   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
		IF pg_catalog.to_regclass(pg_catalog.format('anomstream_scaleout.%I',
				server OPERATOR(pg_catalog.||) '_' OPERATOR(pg_catalog.||) t)) IS NOT NULL THEN
			EXECUTE pg_catalog.format('DROP FOREIGN TABLE anomstream_scaleout.%I',
									  server OPERATOR(pg_catalog.||) '_' OPERATOR(pg_catalog.||) t);
		END IF;
		EXECUTE pg_catalog.format(
			'CREATE FOREIGN TABLE anomstream_scaleout.%I (%s) SERVER %I '
			'OPTIONS (schema_name %L, table_name %L)',
			server OPERATOR(pg_catalog.||) '_' OPERATOR(pg_catalog.||) t, cols, server,
			'anomstream', t);
	END LOOP;
	EXECUTE pg_catalog.format('INSERT INTO anomstream_scaleout.servers (server) VALUES (%L) '
							  'ON CONFLICT (server) DO NOTHING', server);
	PERFORM anomstream.scaleout_refresh();
END
$fn$;
COMMENT ON FUNCTION anomstream.scaleout_attach(name) IS
	'Add a postgres_fdw foreign server running anomstream to the union views anomstream_scaleout.potential_attacks and detected_attacks.';

CREATE FUNCTION anomstream.scaleout_detach(server name) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	t text;
	n bigint;
BEGIN
	IF pg_catalog.to_regclass('anomstream_scaleout.servers') IS NULL THEN
		RAISE EXCEPTION 'server "%" is not attached', server USING ERRCODE = 'undefined_object';
	END IF;
	EXECUTE pg_catalog.format('DELETE FROM anomstream_scaleout.servers v WHERE v.server OPERATOR(pg_catalog.=) %L', server);
	GET DIAGNOSTICS n = ROW_COUNT;
	IF n OPERATOR(pg_catalog.=) 0 THEN
		RAISE EXCEPTION 'server "%" is not attached', server USING ERRCODE = 'undefined_object';
	END IF;
	PERFORM anomstream.scaleout_refresh();
	FOREACH t IN ARRAY ARRAY['potential_attacks', 'detected_attacks'] LOOP
		EXECUTE pg_catalog.format('DROP FOREIGN TABLE IF EXISTS anomstream_scaleout.%I',
								  server OPERATOR(pg_catalog.||) '_' OPERATOR(pg_catalog.||) t);
	END LOOP;
END
$fn$;
COMMENT ON FUNCTION anomstream.scaleout_detach(name) IS
	'Remove a server from the union views of anomstream_scaleout and drop its foreign tables.';

REVOKE ALL ON FUNCTION anomstream.scaleout_refresh() FROM PUBLIC;
REVOKE ALL ON FUNCTION anomstream.scaleout_attach(name) FROM PUBLIC;
REVOKE ALL ON FUNCTION anomstream.scaleout_detach(name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION anomstream.scaleout_refresh(), anomstream.scaleout_attach(name),
	anomstream.scaleout_detach(name) TO anomstream_admin;
