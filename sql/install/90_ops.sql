-- Operations and security (DESIGN.md §7, §10, §11): the control row (restored-copy claim and
-- pause flag), control functions, retention, table status, and the privileges of
-- anomstream_admin and anomstream_reader over every object of the earlier files.
--
-- Privileges, decided here in one place:
--   anomstream_reader  reads results (potential_attacks, detected_attacks), the chart and
--                      Grafana views and functions, anomstream.status, table_status,
--                      active_model, the control row, and the models' metadata columns.
--                      It never reads staging (process_events, memory_events), dead_letters,
--                      late_rows, positions, batch_ranges or the models' booster bytes: raw
--                      input may be sensitive, and a model's bytes are the model itself.
--   anomstream_admin   everything the reader may, plus the control functions (pause, resume,
--                      claim, apply_retention) and the model registry (30_score.sql).
--   PUBLIC             no table of the extension; no control function.
-- Control functions are SECURITY DEFINER (owner: the role that ran CREATE EXTENSION) with a
-- fixed search_path, so an administrator needs no privileges on the tables they write.

-- One row (created by the worker's first start or the first control call; none at install,
-- so a restored dump's row is not in conflict with it).
CREATE TABLE anomstream.control (
	singleton			bool PRIMARY KEY DEFAULT true CHECK (singleton),
	system_identifier	bigint,
	claimed_at			timestamptz,
	claimed_by			name,
	paused				bool NOT NULL DEFAULT false,
	paused_at			timestamptz,
	paused_by			name
);
COMMENT ON TABLE anomstream.control IS
	'The cluster that may consume (system identifier recorded at first start or by anomstream.claim()) and the pause flag; written only through the control functions.';
SELECT pg_catalog.pg_extension_config_dump('anomstream.control', '');

CREATE FUNCTION anomstream.pause() RETURNS void
	AS 'MODULE_PATHNAME', 'anomstream_pause'
	LANGUAGE C VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION anomstream.pause() IS
	'Stop the pipeline worker from consuming (after the micro-batch it has collected) when this transaction commits; persists across restarts until anomstream.resume(). Status shows ''paused''.';

CREATE FUNCTION anomstream.resume() RETURNS void
	AS 'MODULE_PATHNAME', 'anomstream_resume'
	LANGUAGE C VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION anomstream.resume() IS
	'Let a paused pipeline worker consume again when this transaction commits.';

CREATE FUNCTION anomstream.claim() RETURNS bigint
	AS 'MODULE_PATHNAME', 'anomstream_claim'
	LANGUAGE C VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION anomstream.claim() IS
	'Let this cluster''s worker consume the configured topics after a restore from another cluster (state ''claim required''): records this cluster''s system identifier and returns it.';

CREATE FUNCTION anomstream.apply_retention(OUT relation text, OUT time_column text,
										   OUT retention_seconds int, OUT deleted bigint)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'anomstream_apply_retention'
	LANGUAGE C VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION anomstream.apply_retention() IS
	'Delete now what the worker expires every 10 s: dead letters, late rows and results older than their retention settings (retention_seconds NULL: kept forever; deleted NULL: skipped).';

REVOKE ALL ON FUNCTION anomstream.pause(), anomstream.resume(), anomstream.claim(),
	anomstream.apply_retention() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION anomstream.pause(), anomstream.resume(), anomstream.claim(),
	anomstream.apply_retention() TO anomstream_admin;

-- Size and vacuum state of every table of the extension (staging, state, results, ...).
CREATE VIEW anomstream.table_status AS
SELECT c.relname AS relation,
	   CASE c.relpersistence WHEN 'u' THEN 'unlogged' WHEN 'p' THEN 'logged'
			ELSE 'temporary' END AS persistence,
	   CASE WHEN c.reltuples OPERATOR(pg_catalog.>=) 0
			THEN c.reltuples::pg_catalog.int8 END AS rows_estimate,
	   pg_catalog.pg_total_relation_size(c.oid) AS total_bytes,
	   s.n_live_tup,
	   s.n_dead_tup,
	   s.last_vacuum,
	   s.last_autovacuum,
	   s.last_autoanalyze,
	   s.autovacuum_count
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
  LEFT JOIN pg_catalog.pg_stat_all_tables s ON s.relid OPERATOR(pg_catalog.=) c.oid
 WHERE n.nspname OPERATOR(pg_catalog.=) 'anomstream'
   AND (c.relkind OPERATOR(pg_catalog.=) 'r' OR c.relkind OPERATOR(pg_catalog.=) 'p');
COMMENT ON VIEW anomstream.table_status IS
	'Per table of the extension: logged or unlogged, estimated rows, total bytes (with indexes and TOAST), live and dead tuples, last (auto)vacuum and autoanalyze.';

-- Grants the earlier files leave out (reader: results are granted in 40_results.sql).
GRANT SELECT ON anomstream.potential_attacks, anomstream.detected_attacks,
	anomstream.table_status, anomstream.control TO anomstream_reader, anomstream_admin;
-- Models: metadata, never the booster bytes, for the reader.
GRANT SELECT (version, name, stream, format, features, encoding, threshold, num_features,
			  metrics, params, origin, created_at, created_by)
	ON anomstream.models TO anomstream_reader;
GRANT SELECT ON anomstream.active_models TO anomstream_reader;

-- Functions that expose raw input or write: not for PUBLIC.
REVOKE ALL ON FUNCTION anomstream.worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION anomstream.worker_status() TO anomstream_reader, anomstream_admin;

-- Scale-out (DESIGN.md §11): the partition-count check (C: ops_check_partition_counts, for the
-- worker's start-up), callable before adding a server or partitions.
CREATE FUNCTION anomstream.check_partition_counts(topic1 text, count1 int, topic2 text, count2 int)
	RETURNS void
	AS 'MODULE_PATHNAME', 'anomstream_check_partition_counts'
	LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION anomstream.check_partition_counts(text, int, text, int) IS
	'Raise an error unless both topics have the same number of partitions (needed when several servers split the partitions, DESIGN.md §11).';

-- Restores (DESIGN.md §7): CREATE EXTENSION inserts pipeline_state's one row, and pg_restore
-- then brings the dumped row, which must replace it instead of failing on the primary key.
CREATE FUNCTION anomstream.pipeline_state_restore() RETURNS trigger
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	DELETE FROM anomstream.pipeline_state p WHERE p.id OPERATOR(pg_catalog.=) NEW.id;
	RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION anomstream.pipeline_state_restore() IS
	'Trigger: an inserted pipeline_state row (from pg_restore) replaces the row CREATE EXTENSION made.';
CREATE TRIGGER pipeline_state_restore BEFORE INSERT ON anomstream.pipeline_state
	FOR EACH ROW EXECUTE FUNCTION anomstream.pipeline_state_restore();

-- Skipping a message (DESIGN.md §7): anomstream.skip() records the request here; the worker
-- turns the message into a dead letter (raw message, who skipped it, when) instead of
-- processing it, and marks the request applied in that micro-batch.
CREATE TABLE anomstream.skips (
	topic				text NOT NULL,
	kafka_partition		int NOT NULL,
	kafka_offset		bigint NOT NULL,
	requested_by		name NOT NULL,
	session_user_name	name NOT NULL,
	requested_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	applied_at			timestamptz,
	batch_id			bigint,
	PRIMARY KEY (topic, kafka_partition, kafka_offset)
);
COMMENT ON TABLE anomstream.skips IS
	'Messages an administrator skipped with anomstream.skip(): who (role and session user), when, and the micro-batch that turned each into a dead letter (applied_at NULL: not reached yet).';
SELECT pg_catalog.pg_extension_config_dump('anomstream.skips', '');

CREATE FUNCTION anomstream.skip(topic text, "partition" int, "offset" bigint) RETURNS bool
	AS 'MODULE_PATHNAME', 'anomstream_skip'
	LANGUAGE C VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION anomstream.skip(text, int, bigint) IS
	'Skip one Kafka message (for example a poison message that makes every micro-batch fail): the worker does not process it and stores the raw message as a dead letter naming who skipped it and when. Refuses offsets the worker already passed. Returns false if the message is already being skipped.';

-- Kafka gaps (DESIGN.md §7): ranges Kafka deleted before the worker read them, accepted by
-- an administrator with anomstream.accept_gap().
CREATE TABLE anomstream.gaps (
	id					bigserial PRIMARY KEY,
	topic				text NOT NULL,
	kafka_partition		int NOT NULL,
	from_offset			bigint NOT NULL,
	to_offset			bigint NOT NULL,
	lost_offsets		bigint GENERATED ALWAYS AS (to_offset - from_offset + 1) STORED,
	accepted_by			name NOT NULL,
	session_user_name	name NOT NULL,
	accepted_at			timestamptz NOT NULL DEFAULT pg_catalog.now(),
	CHECK (to_offset >= from_offset)
);
COMMENT ON TABLE anomstream.gaps IS
	'Offsets Kafka no longer had when the worker reached them (from_offset to to_offset, inclusive), never consumed; recorded by anomstream.accept_gap() with who accepted the loss and when.';
SELECT pg_catalog.pg_extension_config_dump('anomstream.gaps', '');
SELECT pg_catalog.pg_extension_config_dump('anomstream.gaps_id_seq', '');

CREATE FUNCTION anomstream.accept_gap(topic text, "partition" int,
									  OUT from_offset bigint, OUT to_offset bigint)
	RETURNS record
	AS 'MODULE_PATHNAME', 'anomstream_accept_gap'
	LANGUAGE C VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION anomstream.accept_gap(text, int) IS
	'Accept the loss of a partition stopped at a Kafka gap (state ''gap'' in anomstream.status): records the lost offsets in anomstream.gaps and lets the worker resume at the earliest offset Kafka still has. Returns the lost range.';

REVOKE ALL ON FUNCTION anomstream.skip(text, int, bigint), anomstream.accept_gap(text, int)
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION anomstream.skip(text, int, bigint), anomstream.accept_gap(text, int)
	TO anomstream_admin;
-- Who skipped what, and which ranges were lost: no raw input, so the reader may read them.
GRANT SELECT ON anomstream.skips, anomstream.gaps TO anomstream_reader, anomstream_admin;
