-- Keyed state: built-in updaters (test vectors of DESIGN.md §9, per point), the operator API
-- and its privilege rules. The streaming path is tested in test/t/600_keyed_state.pl.
CREATE EXTENSION anomstream;
\set VERBOSITY terse

-- Capped list: the write-up's first vector, one call per micro-batch.
WITH RECURSIVE b(i, s) AS (
	SELECT 0, anomstream.capped_append('[0]', NULL)
	UNION ALL
	SELECT i + 1, anomstream.capped_append(pg_catalog.jsonb_build_array(i + 1), s) FROM b WHERE i < 4)
SELECT i, s FROM b;
-- the cap keeps the last values; all at once equals one at a time
SELECT anomstream.capped_append('[1,2,3,4,5]', '[0]', 3);
SELECT anomstream.capped_append('[5]', anomstream.capped_append('[3,4]', anomstream.capped_append('[1,2]', '[0]', 3), 3), 3);
SELECT anomstream.capped_append('[1]', NULL, 0);

-- Derivative: the write-up's second vector, printed as the write-up prints it.
SELECT s1, s2, s3
FROM (SELECT anomstream.derivative_update('[{"x":2,"y":1}]', NULL) AS s1) a,
	 LATERAL (SELECT anomstream.derivative_update('[{"x":3,"y":2}]', s1) AS s2) b,
	 LATERAL (SELECT anomstream.derivative_update('[{"x":5,"y":3}]', s2) AS s3) c;
-- per point: the three points in one call give the same state
SELECT anomstream.derivative_update('[{"x":2,"y":1},{"x":3,"y":2},{"x":5,"y":3}]', NULL);
-- x = lv.x replaces lv; x < lv.x is skipped and counted; junk is counted as invalid
SELECT anomstream.derivative_update('[{"x":5,"y":9},{"x":4,"y":0},{"x":"a","y":1},7,{"x":6,"y":10}]',
	'{"d": [1.0, 0.5], "lv": {"x": 5, "y": 3}}');
-- history bound
SELECT anomstream.derivative_update('[{"x":1,"y":1},{"x":2,"y":3},{"x":3,"y":6},{"x":4,"y":10},{"x":8,"y":11}]', NULL, 2);
SELECT anomstream.derivative_update('[{"x":1,"y":1}]', NULL, -1);

-- An updater in SQL reproduces the first vector too (the same semantics as the write-up's).
CREATE FUNCTION append_updater(vs jsonb, s jsonb) RETURNS jsonb LANGUAGE sql
	AS $$ SELECT coalesce(s, '[]'::jsonb) || vs $$;
CREATE FUNCTION strict_updater(vs jsonb, s jsonb) RETURNS jsonb LANGUAGE sql STRICT
	AS $$ SELECT s || vs $$;
CREATE FUNCTION wrong_updater(vs jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT vs $$;

-- The operator API.
SELECT anomstream.keyed_create('lists', 'anomstream.process_events', key => 'cmd',
	value => 'sequence', updater => 'append_updater(jsonb,jsonb)');
SELECT anomstream.keyed_create('derivs', 'anomstream.process_events', key => 'cmd',
	value => 'pg_catalog.jsonb_build_object(''x'', pid, ''y'', sequence)', builtin => 'derivative',
	ttl => '10 minutes', max_keys => 1000, on_limit => 'skip_new');
SELECT operator, owner, source, updater, enabled, keys, max_keys, on_limit, ttl
FROM anomstream.keyed_status ORDER BY operator;
-- errors
SELECT anomstream.keyed_create('lists', 'anomstream.process_events', 'cmd', 'sequence', builtin => 'capped_list');
SELECT anomstream.keyed_create('x', 'anomstream.process_events', 'cmd', 'sequence', builtin => 'capped_list', builtin_arg => 0);
SELECT anomstream.keyed_create('x', 'anomstream.positions', 'topic', 'topic', builtin => 'capped_list');
SELECT anomstream.keyed_create('x', 'anomstream.process_events', 'cmd', 'sequence');
SELECT anomstream.keyed_create('x', 'anomstream.process_events', 'cmd', 'sequence', builtin => 'median');
SELECT anomstream.keyed_create('x', 'anomstream.process_events', 'cmd', 'sequence', updater => 'strict_updater(jsonb,jsonb)');
SELECT anomstream.keyed_create('x', 'anomstream.process_events', 'cmd', 'sequence', updater => 'wrong_updater(jsonb)');
SELECT anomstream.keyed_create('x', 'anomstream.process_events', 'no_such_column', 'sequence', builtin => 'capped_list');
SELECT anomstream.keyed_create('x', 'anomstream.process_events', 'cmd', 'sequence', builtin => 'capped_list',
	filter => 'true); DROP TABLE anomstream.positions; SELECT (1');
SELECT count(*) AS positions_still_there FROM anomstream.positions;
SELECT anomstream.keyed_alter('nope', enabled => false);
-- alter keeps state, changes settings
SELECT anomstream.keyed_alter('lists', builtin => 'capped_list', builtin_arg => 3, ttl => '1 hour');
SELECT name, updater, builtin, builtin_arg, ttl FROM anomstream.keyed_operators WHERE name = 'lists';
SELECT anomstream.keyed_alter('lists', ttl => '0');
SELECT ttl FROM anomstream.keyed_operators WHERE name = 'lists';

-- Roles: only anomstream_admin creates operators; each admin changes only its own.
CREATE ROLE keyed_admin1 LOGIN IN ROLE anomstream_admin;
CREATE ROLE keyed_admin2 LOGIN IN ROLE anomstream_admin;
CREATE ROLE keyed_nobody LOGIN;
GRANT USAGE ON SCHEMA public TO keyed_admin1, keyed_admin2, keyed_nobody;
GRANT anomstream_reader TO keyed_nobody;
SET ROLE keyed_nobody;
SELECT anomstream.keyed_create('n', 'anomstream.process_events', 'cmd', 'sequence', builtin => 'capped_list');
RESET ROLE;
SET ROLE keyed_admin1;
SELECT anomstream.keyed_create('a1', 'anomstream.process_events', 'cmd', 'sequence', builtin => 'capped_list') > 0 AS created;
-- the owner is the creator, whatever the row says
UPDATE anomstream.keyed_operators SET owner = 10 WHERE name = 'a1';
INSERT INTO anomstream.keyed_operators (name, owner, source, key_expr, value_expr, builtin)
	VALUES ('sneaky', 10, 'anomstream.process_events', 'cmd', 'sequence', 'capped_list');
SELECT operator, owner FROM anomstream.keyed_status WHERE operator IN ('a1', 'sneaky') ORDER BY 1;
SELECT anomstream.keyed_drop('lists');
RESET ROLE;
SET ROLE keyed_admin2;
SELECT anomstream.keyed_alter('a1', enabled => false);
UPDATE anomstream.keyed_operators SET enabled = false WHERE name = 'a1';
SELECT enabled FROM anomstream.keyed_operators WHERE name = 'a1';
RESET ROLE;
-- state rows (as the worker would write them): each admin clears only its own
INSERT INTO anomstream.keyed_state_data (op_id, key, state, last_event_time, updated_at, updated_batch)
SELECT id, 'k', '[1]', now(), now(), 1 FROM anomstream.keyed_operators WHERE name IN ('a1', 'sneaky');
SET ROLE keyed_admin2;
DELETE FROM anomstream.keyed_state_data;
RESET ROLE;
SELECT count(*) AS rows_left_by_admin2 FROM anomstream.keyed_state_data;
SET ROLE keyed_admin1;
SELECT anomstream.keyed_alter('a1', reset_state => true);
SELECT operator, key FROM anomstream.keyed_state ORDER BY 1;
SELECT anomstream.keyed_drop('a1');
SELECT anomstream.keyed_drop('sneaky');
RESET ROLE;
-- readers see the status, not the state
SET ROLE keyed_nobody;
SELECT count(*) >= 0 AS ok FROM anomstream.keyed_status;
SELECT count(*) FROM anomstream.keyed_state;
RESET ROLE;

-- The default install's built-in operator and its view.
SELECT name, builtin, builtin_arg, ttl, max_keys FROM anomstream.keyed_operators WHERE is_default;
SELECT * FROM anomstream.minflt_growth;

DROP EXTENSION anomstream;
DROP FUNCTION append_updater(jsonb, jsonb), strict_updater(jsonb, jsonb), wrong_updater(jsonb);
REVOKE USAGE ON SCHEMA public FROM keyed_admin1, keyed_admin2, keyed_nobody;
DROP ROLE keyed_admin1, keyed_admin2, keyed_nobody;
