-- Scale-out union views (sql/install/92_scaleout.sql): errors without a postgres_fdw server,
-- the views' shape, a loopback server (the same database attached through postgres_fdw:
-- every local row appears twice, once per "server"), detach, and privileges.
CREATE EXTENSION anomstream;

-- no server attached yet
SELECT anomstream.scaleout_refresh();
SELECT anomstream.scaleout_detach('nosuch');
-- not a postgres_fdw server
SELECT anomstream.scaleout_attach('nosuch');

CREATE EXTENSION postgres_fdw;
DO $$ BEGIN
  EXECUTE format('CREATE SERVER regress_loop FOREIGN DATA WRAPPER postgres_fdw OPTIONS (port %L, dbname %L)',
                 current_setting('port'), current_database());
END $$;
CREATE USER MAPPING FOR CURRENT_USER SERVER regress_loop;
SELECT anomstream.scaleout_attach('regress_loop');
-- attaching again rebuilds its foreign tables and the views
SELECT anomstream.scaleout_attach('regress_loop');

-- the views: a column "server", then every column of the result table
SELECT a.attname FROM pg_attribute a
 WHERE a.attrelid = 'anomstream_scaleout.potential_attacks'::regclass AND a.attnum > 0
 ORDER BY a.attnum;
SELECT (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = 'anomstream_scaleout.detected_attacks'::regclass AND a.attnum > 0)
     = (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = 'anomstream.detected_attacks'::regclass AND a.attnum > 0 AND NOT a.attisdropped) + 1
       AS detected_columns_match;

INSERT INTO anomstream.potential_attacks (window_start, window_end, machine, attacks, new_attacks, closed)
VALUES ('2020-11-01 12:00+00', '2020-11-01 12:02+00', 4, 3, 1, true);
SELECT server = 'regress_loop' AS via_fdw, window_start, machine, attacks, new_attacks
  FROM anomstream_scaleout.potential_attacks ORDER BY 1;
SELECT count(*) FROM anomstream_scaleout.detected_attacks;

-- readers may read the views, not attach servers
CREATE ROLE regress_dash IN ROLE anomstream_reader;
SET ROLE regress_dash;
SELECT count(*) FROM anomstream_scaleout.potential_attacks;
SELECT anomstream.scaleout_attach('regress_loop');
RESET ROLE;
DROP ROLE regress_dash;

-- detach: the server's rows and foreign tables are gone
SELECT anomstream.scaleout_detach('nosuch');
SELECT anomstream.scaleout_detach('regress_loop');
SELECT count(*) FROM anomstream_scaleout.potential_attacks;
SELECT to_regclass('anomstream_scaleout.regress_loop_potential_attacks');

SET client_min_messages = warning;
DROP SCHEMA anomstream_scaleout CASCADE;
DROP EXTENSION postgres_fdw CASCADE;
RESET client_min_messages;
DROP EXTENSION anomstream;
