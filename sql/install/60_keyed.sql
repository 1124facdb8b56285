-- Keyed state across micro-batches (DESIGN.md §9, the updateStateByKey write-up; roles §10).
--
-- An operator reads the current micro-batch's rows of one staging table (never earlier
-- batches' rows), groups them by a key expression, and calls an updater once per key with
-- that key's new values (a jsonb array in (event_time, topic, partition, offset, row_index)
-- order) and the key's old state (jsonb, NULL for a new key); the result is the new state,
-- NULL deletes the key. The worker does this inside the micro-batch transaction
-- (src/keyed/), so state is exactly once across crashes. State lives in a logged table.
--
-- Invariants: keyed_operators.owner is the role that created the operator (a trigger sets it;
-- only a superuser may change it); updaters and the operator's expressions run as that owner;
-- only members of anomstream_admin (or superusers) can create, alter or drop operators, and
-- row-level security limits each to operators owned by a role it belongs to.

CREATE TABLE anomstream.keyed_operators (
	id				serial PRIMARY KEY,
	name			text NOT NULL UNIQUE,
	owner			oid NOT NULL,
	source			regclass NOT NULL,
	filter			text,
	key_expr		text NOT NULL,
	value_expr		text NOT NULL,
	updater			regprocedure,
	builtin			text CHECK (builtin IN ('derivative', 'capped_list')),
	builtin_arg		int CHECK (builtin_arg > 0),
	ttl				interval,
	max_keys		bigint CHECK (max_keys > 0),
	on_limit		text NOT NULL DEFAULT 'evict_oldest'
					CHECK (on_limit IN ('evict_oldest', 'skip_new')),
	enabled			bool NOT NULL DEFAULT true,
	is_default		bool NOT NULL DEFAULT false,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	altered_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	-- progress, written by the worker in the micro-batch transaction
	max_event_time	timestamptz,
	nkeys			bigint NOT NULL DEFAULT 0,
	batches			bigint NOT NULL DEFAULT 0,
	updates			bigint NOT NULL DEFAULT 0,
	evicted_ttl		bigint NOT NULL DEFAULT 0,
	evicted_limit	bigint NOT NULL DEFAULT 0,
	skipped_new		bigint NOT NULL DEFAULT 0,
	out_of_order	bigint NOT NULL DEFAULT 0,
	invalid_points	bigint NOT NULL DEFAULT 0,
	busy_ms			float8 NOT NULL DEFAULT 0,	-- all of the operator's work
	updater_ms		float8 NOT NULL DEFAULT 0,	-- of which in the updater calls
	last_batch_id	bigint,
	last_error		text,
	last_error_at	timestamptz,
	CHECK ((updater IS NULL) <> (builtin IS NULL)),
	CHECK (source IN ('anomstream.process_events'::regclass, 'anomstream.memory_events'::regclass))
);
COMMENT ON TABLE anomstream.keyed_operators IS
	'Keyed state operators (DESIGN.md §9): source staging table, key and value expressions, updater or built-in, bounds, and progress counters. Change through anomstream.keyed_create / keyed_alter / keyed_drop.';

CREATE TABLE anomstream.keyed_state_data (
	op_id			int NOT NULL REFERENCES anomstream.keyed_operators (id) ON DELETE CASCADE,
	key				text NOT NULL,
	state			jsonb NOT NULL,
	last_event_time	timestamptz NOT NULL,
	updated_at		timestamptz NOT NULL,
	updated_batch	bigint NOT NULL,
	PRIMARY KEY (op_id, key)
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02,
	   autovacuum_analyze_scale_factor = 0.05);
-- No index on last_event_time: every batch rewrites the states it touches, and with only the
-- primary key (whose columns never change) and free space on each page those updates are
-- HOT. TTL eviction scans the table once per batch (measured: 15 ms per 100k keys).
COMMENT ON TABLE anomstream.keyed_state_data IS
	'Per-key state of every keyed operator (logged; written only in micro-batch transactions). Read it through anomstream.keyed_state.';

SELECT pg_catalog.pg_extension_config_dump('anomstream.keyed_operators', 'WHERE NOT is_default');
SELECT pg_catalog.pg_extension_config_dump('anomstream.keyed_operators_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('anomstream.keyed_state_data', '');

-- The owner of an operator is the role that created it; only a superuser may change it.
CREATE FUNCTION anomstream.keyed_operators_owner() RETURNS trigger
	LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
	su bool := (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user);
BEGIN
	IF TG_OP = 'INSERT' THEN
		IF NOT su OR NEW.owner IS NULL OR NEW.owner = 0 THEN
			NEW.owner := (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user);
		END IF;
	ELSIF NEW.owner IS DISTINCT FROM OLD.owner AND NOT su THEN
		RAISE EXCEPTION 'only a superuser can change the owner of a keyed operator'
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION anomstream.keyed_operators_owner() IS
	'Trigger: a keyed operator is owned by the role that created it; only a superuser changes owners.';
CREATE TRIGGER keyed_operators_owner BEFORE INSERT OR UPDATE ON anomstream.keyed_operators
	FOR EACH ROW EXECUTE FUNCTION anomstream.keyed_operators_owner();

ALTER TABLE anomstream.keyed_operators ENABLE ROW LEVEL SECURITY;
CREATE POLICY keyed_operators_read ON anomstream.keyed_operators FOR SELECT USING (true);
CREATE POLICY keyed_operators_own ON anomstream.keyed_operators FOR ALL
	USING (pg_catalog.pg_has_role(current_user, owner, 'MEMBER'))
	WITH CHECK (pg_catalog.pg_has_role(current_user, owner, 'MEMBER'));

CREATE FUNCTION anomstream.keyed_single_statement(sql text) RETURNS bool
	AS 'MODULE_PATHNAME', 'anomstream_keyed_single_statement'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION anomstream.keyed_single_statement(text) IS
	'Internal: true if sql parses as exactly one statement (nothing is looked up or run).';

-- Caller checks shared by create and alter: role, updater signature and privilege, and that
-- the expressions compile over the source table as the caller.
CREATE FUNCTION anomstream.keyed_check(source regclass, filter text, key_expr text,
									   value_expr text, updater regprocedure, builtin text)
	RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
	p record;
	q text;
BEGIN
	IF NOT pg_catalog.pg_has_role(current_user, 'anomstream_admin', 'MEMBER')
	   AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
		RAISE EXCEPTION 'permission denied to manage keyed operators'
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Grant role anomstream_admin to the role that creates the operator.';
	END IF;
	IF source NOT IN ('anomstream.process_events'::regclass, 'anomstream.memory_events'::regclass) THEN
		RAISE EXCEPTION 'source of a keyed operator must be anomstream.process_events or anomstream.memory_events'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = pg_catalog.format('%s is not a staging table.', source),
				  HINT = 'Select rows with the filter, key and value expressions instead.';
	END IF;
	IF (updater IS NULL) = (builtin IS NULL) THEN
		RAISE EXCEPTION 'a keyed operator needs exactly one of updater and builtin'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF updater IS NOT NULL THEN
		SELECT pr.prorettype = 'jsonb'::regtype AND pr.pronargs = 2 AND NOT pr.proretset
			   AND pr.proargtypes[0] = 'jsonb'::regtype AND pr.proargtypes[1] = 'jsonb'::regtype AS ok,
			   pr.proisstrict
		INTO p FROM pg_catalog.pg_proc pr WHERE pr.oid = updater;
		IF NOT p.ok THEN
			RAISE EXCEPTION 'updater % has the wrong signature', updater
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'An updater takes (new_values jsonb, old_state jsonb) and returns jsonb.';
		END IF;
		IF p.proisstrict THEN
			RAISE EXCEPTION 'updater % is STRICT', updater
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'A new key has a NULL old state, so a STRICT updater would never create state.',
					  HINT = 'Declare the function CALLED ON NULL INPUT.';
		END IF;
		IF NOT pg_catalog.has_function_privilege(updater, 'EXECUTE') THEN
			RAISE EXCEPTION 'permission denied for function %', updater
				USING ERRCODE = 'insufficient_privilege';
		END IF;
	ELSIF builtin NOT IN ('derivative', 'capped_list') THEN
		RAISE EXCEPTION 'unknown built-in keyed operator "%"', builtin
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Built-ins are derivative and capped_list.';
	END IF;
	-- Compile (and run on no rows) the expressions as the caller, who becomes the owner;
	-- first make sure they are expressions, not a way to run more statements.
	q := pg_catalog.format('SELECT (%s)::text, pg_catalog.to_jsonb(%s) FROM %s WHERE false AND (%s)',
						   key_expr, value_expr, source, coalesce(filter, 'true'));
	IF NOT anomstream.keyed_single_statement(q) THEN
		RAISE EXCEPTION 'key, value and filter of a keyed operator must be single expressions'
			USING ERRCODE = 'syntax_error',
				  DETAIL = 'Together they make more than one SQL statement.';
	END IF;
	EXECUTE q;
END
$$;
COMMENT ON FUNCTION anomstream.keyed_check(regclass, text, text, text, regprocedure, text) IS
	'Internal: validates a keyed operator definition as the calling role.';

-- The operator called name, locked, if the current role may change it.
CREATE FUNCTION anomstream.keyed_owned(name text) RETURNS anomstream.keyed_operators
	LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
	o anomstream.keyed_operators;
BEGIN
	SELECT * INTO o FROM anomstream.keyed_operators k WHERE k.name = keyed_owned.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'keyed operator "%" does not exist', keyed_owned.name
			USING ERRCODE = 'undefined_object';
	END IF;
	IF NOT pg_catalog.pg_has_role(current_user, o.owner, 'MEMBER') THEN
		RAISE EXCEPTION 'must be owner of keyed operator "%"', keyed_owned.name
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	RETURN o;
END
$$;
COMMENT ON FUNCTION anomstream.keyed_owned(text) IS
	'Internal: the keyed operator called name, locked for update, if the current role is a member of its owner.';

CREATE FUNCTION anomstream.keyed_create(name text, source regclass, key text, value text,
		updater regprocedure DEFAULT NULL, builtin text DEFAULT NULL,
		builtin_arg int DEFAULT NULL, filter text DEFAULT NULL, ttl interval DEFAULT NULL,
		max_keys bigint DEFAULT NULL, on_limit text DEFAULT 'evict_oldest')
	RETURNS int LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
	new_id int;
BEGIN
	PERFORM anomstream.keyed_check(source, filter, key, value, updater, builtin);
	INSERT INTO anomstream.keyed_operators
		(name, owner, source, filter, key_expr, value_expr, updater, builtin, builtin_arg,
		 ttl, max_keys, on_limit)
	VALUES (keyed_create.name, 0, keyed_create.source, keyed_create.filter, keyed_create.key,
			keyed_create.value, keyed_create.updater, keyed_create.builtin,
			keyed_create.builtin_arg, keyed_create.ttl, keyed_create.max_keys,
			keyed_create.on_limit)
	RETURNING id INTO new_id;
	RETURN new_id;
END
$$;
COMMENT ON FUNCTION anomstream.keyed_create(text, regclass, text, text, regprocedure, text, int, text, interval, bigint, text) IS
	'Create a keyed state operator over anomstream.process_events or memory_events: key and value are SQL expressions over a staging row (value becomes jsonb), filter an optional condition; either updater (a function (new_values jsonb, old_state jsonb) -> jsonb, NULL deletes the key) or builtin (''derivative'' with history builtin_arg, default 10, or ''capped_list'' with cap builtin_arg, default 100). ttl evicts keys whose last event_time is older than the pipeline watermark minus ttl; max_keys bounds the key count (on_limit ''evict_oldest'' or ''skip_new''). Takes effect at the next micro-batch. Needs role anomstream_admin; the operator runs as its creator.';

CREATE FUNCTION anomstream.keyed_alter(name text, key text DEFAULT NULL, value text DEFAULT NULL,
		updater regprocedure DEFAULT NULL, builtin text DEFAULT NULL,
		builtin_arg int DEFAULT NULL, filter text DEFAULT NULL, ttl interval DEFAULT NULL,
		max_keys bigint DEFAULT NULL, on_limit text DEFAULT NULL, enabled bool DEFAULT NULL,
		reset_state bool DEFAULT false)
	RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
	o anomstream.keyed_operators;
BEGIN
	o := anomstream.keyed_owned(keyed_alter.name);
	IF updater IS NOT NULL THEN o.updater := updater; o.builtin := NULL; o.builtin_arg := NULL; END IF;
	IF builtin IS NOT NULL THEN o.builtin := builtin; o.updater := NULL; END IF;
	o.key_expr := coalesce(key, o.key_expr);
	o.value_expr := coalesce(value, o.value_expr);
	o.builtin_arg := coalesce(builtin_arg, o.builtin_arg);
	IF filter IS NOT NULL THEN o.filter := NULLIF(filter, ''); END IF;
	IF ttl IS NOT NULL THEN o.ttl := CASE WHEN ttl > interval '0' THEN ttl END; END IF;
	IF max_keys IS NOT NULL THEN o.max_keys := CASE WHEN max_keys > 0 THEN max_keys END; END IF;
	o.on_limit := coalesce(on_limit, o.on_limit);
	PERFORM anomstream.keyed_check(o.source, o.filter, o.key_expr, o.value_expr, o.updater, o.builtin);
	UPDATE anomstream.keyed_operators k
	SET key_expr = o.key_expr, value_expr = o.value_expr, updater = o.updater,
		builtin = o.builtin, builtin_arg = o.builtin_arg, filter = o.filter, ttl = o.ttl,
		max_keys = o.max_keys, on_limit = o.on_limit,
		enabled = coalesce(keyed_alter.enabled, k.enabled),
		last_error = CASE WHEN keyed_alter.enabled THEN NULL ELSE k.last_error END,
		altered_at = pg_catalog.now(),
		nkeys = CASE WHEN reset_state THEN 0 ELSE k.nkeys END,
		max_event_time = CASE WHEN reset_state THEN NULL ELSE k.max_event_time END
	WHERE k.id = o.id;
	IF reset_state THEN
		DELETE FROM anomstream.keyed_state_data s WHERE s.op_id = o.id;
	END IF;
END
$$;
COMMENT ON FUNCTION anomstream.keyed_alter(text, text, text, regprocedure, text, int, text, interval, bigint, text, bool, bool) IS
	'Change a keyed operator; NULL arguments keep the current setting (filter '''' removes the filter, ttl <= 0 and max_keys <= 0 remove the bound). enabled => true re-enables an operator stopped by an error. State is kept unless reset_state. Takes effect at the next micro-batch.';

CREATE FUNCTION anomstream.keyed_drop(name text) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
	o anomstream.keyed_operators;
BEGIN
	o := anomstream.keyed_owned(keyed_drop.name);
	DELETE FROM anomstream.keyed_operators k WHERE k.id = o.id;
END
$$;
COMMENT ON FUNCTION anomstream.keyed_drop(text) IS
	'Drop a keyed operator and its state (waits for a micro-batch that is using it).';

-- The built-ins as SQL functions (the same C code the worker runs), usable in any query.
CREATE FUNCTION anomstream.derivative_update(new_values jsonb, old_state jsonb, history int DEFAULT 10)
	RETURNS jsonb AS 'MODULE_PATHNAME', 'anomstream_derivative_update'
	LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION anomstream.derivative_update(jsonb, jsonb, int) IS
	'Built-in derivative updater: new_values is an array of {"x": number, "y": number}; state {"d": [last history dy/dx], "lv": last point}. A point with x = lv.x replaces lv; x < lv.x is skipped and counted in "out_of_order"; points without numeric x and y are counted in "invalid".';

CREATE FUNCTION anomstream.capped_append(new_values jsonb, old_state jsonb, cap int DEFAULT 100)
	RETURNS jsonb AS 'MODULE_PATHNAME', 'anomstream_capped_append'
	LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION anomstream.capped_append(jsonb, jsonb, int) IS
	'Built-in capped list updater: appends the elements of new_values to the state array and keeps the last cap of them.';

CREATE VIEW anomstream.keyed_state AS
SELECT o.name AS operator, s.key, s.state, s.updated_at, s.last_event_time
FROM anomstream.keyed_state_data s
JOIN anomstream.keyed_operators o ON o.id OPERATOR(pg_catalog.=) s.op_id;
COMMENT ON VIEW anomstream.keyed_state IS
	'State of every keyed operator: (operator, key, state, updated_at, last_event_time).';

CREATE VIEW anomstream.keyed_status AS
SELECT o.name AS operator,
	   o.owner::pg_catalog.regrole AS owner,
	   o.source,
	   coalesce(o.builtin, o.updater::pg_catalog.text) AS updater,
	   o.enabled,
	   o.nkeys AS keys,
	   o.max_keys,
	   o.on_limit,
	   o.ttl,
	   o.max_event_time,
	   (SELECT w.watermark FROM anomstream.pipeline_state w) AS watermark,
	   (SELECT w.watermark FROM anomstream.pipeline_state w) OPERATOR(pg_catalog.-) o.ttl AS ttl_cutoff,
	   o.batches,
	   o.updates,
	   o.evicted_ttl,
	   o.evicted_limit,
	   o.skipped_new,
	   o.out_of_order,
	   o.invalid_points,
	   o.busy_ms,
	   o.updater_ms,
	   (o.updates OPERATOR(pg_catalog./) NULLIF(o.busy_ms, 0) OPERATOR(pg_catalog.*) 1000)::bigint AS updates_per_sec,
	   (SELECT pg_catalog.sum(pg_catalog.pg_column_size(s.state))
		FROM anomstream.keyed_state_data s WHERE s.op_id OPERATOR(pg_catalog.=) o.id)::bigint AS state_bytes,
	   o.last_batch_id,
	   o.last_error,
	   o.last_error_at
FROM anomstream.keyed_operators o;
COMMENT ON VIEW anomstream.keyed_status IS
	'Per keyed operator: keys held and bounds, the pipeline watermark W its TTL is measured against and the cutoff (keys whose last event_time is older go), counters and state size.';

REVOKE ALL ON FUNCTION anomstream.keyed_create(text, regclass, text, text, regprocedure, text, int, text, interval, bigint, text),
	anomstream.keyed_alter(text, text, text, regprocedure, text, int, text, interval, bigint, text, bool, bool),
	anomstream.keyed_drop(text),
	anomstream.keyed_owned(text),
	anomstream.keyed_check(regclass, text, text, text, regprocedure, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION anomstream.keyed_create(text, regclass, text, text, regprocedure, text, int, text, interval, bigint, text),
	anomstream.keyed_alter(text, text, text, regprocedure, text, int, text, interval, bigint, text, bool, bool),
	anomstream.keyed_drop(text),
	anomstream.keyed_owned(text),
	anomstream.keyed_check(regclass, text, text, text, regprocedure, text) TO anomstream_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON anomstream.keyed_operators TO anomstream_admin;
GRANT USAGE ON SEQUENCE anomstream.keyed_operators_id_seq TO anomstream_admin;
-- Admins may clear the state of their own operators (keyed_alter reset_state), no other.
GRANT SELECT, DELETE ON anomstream.keyed_state_data TO anomstream_admin;
ALTER TABLE anomstream.keyed_state_data ENABLE ROW LEVEL SECURITY;
CREATE POLICY keyed_state_data_own ON anomstream.keyed_state_data FOR ALL
	USING (EXISTS (SELECT 1 FROM anomstream.keyed_operators o
				   WHERE o.id OPERATOR(pg_catalog.=) op_id
					 AND pg_catalog.pg_has_role(current_user, o.owner, 'MEMBER')));
GRANT SELECT ON anomstream.keyed_state, anomstream.keyed_status TO anomstream_admin;
GRANT SELECT ON anomstream.keyed_status TO anomstream_reader;
-- Operator owners read the staging table their operator reads (the worker runs its
-- expressions as the owner); readers still may not (DESIGN.md §10).
GRANT SELECT ON anomstream.process_events, anomstream.memory_events TO anomstream_admin;

-- A built-in operator of the default install: per process, the growth of minor page faults
-- per second (dMINFLT/dt), from memory_events. Read it in anomstream.minflt_growth.
INSERT INTO anomstream.keyed_operators
	(name, owner, source, filter, key_expr, value_expr, builtin, builtin_arg, ttl, max_keys,
	 is_default)
VALUES ('minflt_growth', 0, 'anomstream.memory_events',
		'machine IS NOT NULL AND cmd_pid IS NOT NULL AND minflt IS NOT NULL',
		'machine::text OPERATOR(pg_catalog.||) '' '' OPERATOR(pg_catalog.||) cmd_pid',
		'pg_catalog.jsonb_build_object(''x'', pg_catalog.date_part(''epoch'', event_time), ''y'', minflt)',
		'derivative', 10, interval '15 minutes', 100000, true);

CREATE VIEW anomstream.minflt_growth AS
SELECT pg_catalog.split_part(s.key, ' ', 1)::int AS machine,
	   pg_catalog.substr(s.key, pg_catalog.strpos(s.key, ' ') OPERATOR(pg_catalog.+) 1) AS cmd_pid,
	   (s.state OPERATOR(pg_catalog.->) 'd' OPERATOR(pg_catalog.->) -1)::pg_catalog.float8 AS minflt_per_sec,
	   (s.state OPERATOR(pg_catalog.->) 'lv' OPERATOR(pg_catalog.->) 'y')::pg_catalog.float8 AS last_minflt,
	   s.last_event_time,
	   s.state OPERATOR(pg_catalog.->) 'd' AS recent_rates
FROM anomstream.keyed_state_data s
JOIN anomstream.keyed_operators o ON o.id OPERATOR(pg_catalog.=) s.op_id
WHERE o.name OPERATOR(pg_catalog.=) 'minflt_growth';
COMMENT ON VIEW anomstream.minflt_growth IS
	'Per machine and process: growth of MINFLT per second between its last two memory rows (minflt_per_sec, NULL until two rows were seen) and the last 10 rates, from the built-in keyed operator minflt_growth.';
GRANT SELECT ON anomstream.minflt_growth TO anomstream_admin, anomstream_reader;
