-- Continuous pipeline (DESIGN.md §5-§7, §13): watermarks, late rows, operator state of the
-- windows and the interval join, the stored semantic settings, and pipeline status.
--
-- Every table here except the results is internal operator state, written only by the
-- worker's micro-batch transaction (src/pipeline/), so a crash at any point leaves it
-- consistent with the durable positions. State tables are bounded by the watermark: rows
-- are evicted by batched DELETEs over an event-time btree (§13).

-- Semantic settings, stored at first start. A later difference means "config pending": the
-- pipeline refuses to process rows until anomstream.rebuild() (§7).
CREATE TABLE anomstream.pipeline_config (
	id					int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
	window_ms			int NOT NULL,
	lateness_ms			int NOT NULL,
	join_bound_ms		int NOT NULL,
	new_attack_retention_s int NOT NULL,
	stored_at			timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE anomstream.pipeline_config IS
	'Semantic settings (window, lateness, join_bound, new_attack_retention) the results were computed with; stored at first start.';

-- Per topic/partition event-time progress. W_p = max_event_time - lateness.
CREATE TABLE anomstream.pipeline_partitions (
	topic				text NOT NULL,
	kafka_partition		int NOT NULL,
	max_event_time		timestamptz,			-- largest event_time of rows taken over; NULL: none yet
	first_seen_at		timestamptz NOT NULL,	-- wall clock: when the pipeline first saw the partition
	last_data_at		timestamptz,			-- wall clock: last micro-batch with rows of it
	idle				bool NOT NULL DEFAULT false,
	idle_timeouts		bigint NOT NULL DEFAULT 0,	-- times it became idle
	rows				bigint NOT NULL DEFAULT 0,	-- rows taken over by the pipeline
	late_partition		bigint NOT NULL DEFAULT 0,	-- late rows, reason partition_watermark
	late_pipeline		bigint NOT NULL DEFAULT 0,	-- late rows, reason behind_pipeline_watermark
	PRIMARY KEY (topic, kafka_partition)
) WITH (fillfactor = 50);
COMMENT ON TABLE anomstream.pipeline_partitions IS
	'Per topic/partition: largest event time taken over (W_p = it minus lateness), idleness and late-row counts.';

-- The pipeline as a whole: one row.
CREATE TABLE anomstream.pipeline_state (
	id					int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
	watermark			timestamptz NOT NULL DEFAULT '-infinity',	-- W; only moves forward
	batches				bigint NOT NULL DEFAULT 0,
	last_batch_id		bigint,
	last_batch_at		timestamptz,
	last_batch_rows		bigint,
	last_pipeline_ms	float8,					-- time spent in the pipeline step of the last batch
	last_event_lag_ms	float8,					-- end of the last batch minus its newest event_time
	held_process		bigint NOT NULL DEFAULT 0,	-- rows in join_process
	held_memory			bigint NOT NULL DEFAULT 0,	-- rows in join_memory
	held_keys			bigint NOT NULL DEFAULT 0,	-- rows in window_keys
	pairs				bigint NOT NULL DEFAULT 0,
	windows_closed		bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 50);
INSERT INTO anomstream.pipeline_state DEFAULT VALUES;
COMMENT ON TABLE anomstream.pipeline_state IS
	'Pipeline watermark W, figures of the last micro-batch and rows held in operator state.';

-- One row per micro-batch the pipeline ran (kept for one day), for status and audits.
CREATE TABLE anomstream.pipeline_batches (
	batch_id			bigint PRIMARY KEY,
	processed_at		timestamptz NOT NULL DEFAULT pg_catalog.transaction_timestamp(),
	rows				bigint NOT NULL,		-- rows taken over (refill rows excluded)
	late_rows			bigint NOT NULL,
	attack_rows			bigint NOT NULL,
	pairs				bigint NOT NULL,
	new_keys			bigint NOT NULL,
	windows_changed		bigint NOT NULL,
	windows_closed		bigint NOT NULL,
	watermark			timestamptz NOT NULL,
	pipeline_ms			float8 NOT NULL,
	held_process		bigint NOT NULL,		-- state rows after the batch
	held_memory			bigint NOT NULL,
	held_keys			bigint NOT NULL
);
CREATE INDEX pipeline_batches_processed_at ON anomstream.pipeline_batches (processed_at);
COMMENT ON TABLE anomstream.pipeline_batches IS
	'What each micro-batch did in the pipeline (rows, late rows, pairs, window rows changed and closed, W and state rows after it); kept one day.';

-- Late rows (§5): listed with their reason, excluded from windows and joins.
CREATE TABLE anomstream.late_rows (
	topic				text NOT NULL,
	kafka_partition		int NOT NULL,
	kafka_offset		bigint NOT NULL,
	row_index			int NOT NULL,
	event_time			timestamptz,
	watermark			timestamptz NOT NULL,	-- the watermark the row was behind
	reason				text NOT NULL CHECK (reason IN ('partition_watermark', 'behind_pipeline_watermark')),
	machine				int,
	cmd_pid				text,
	prediction			int,
	batch_id			bigint NOT NULL,
	recorded_at			timestamptz NOT NULL DEFAULT pg_catalog.transaction_timestamp(),
	PRIMARY KEY (topic, kafka_partition, kafka_offset, row_index)
);
CREATE INDEX late_rows_recorded_at ON anomstream.late_rows (recorded_at);
COMMENT ON TABLE anomstream.late_rows IS
	'Rows behind the partition watermark or the pipeline watermark when processed; they take part in no window or join. Kept anomstream.late_rows_retention.';

-- Join buffers: non-late attack rows of each stream, evicted once event_time + join_bound <= W.
CREATE TABLE anomstream.join_process (
	event_time			timestamptz NOT NULL,
	machine				int NOT NULL,
	cmd_pid				text NOT NULL,
	sequence			int,
	pid					int,
	trun				float8,
	tslpi				float8,
	tslpu				float8,
	poli				text,
	nice				float8,
	pri					float8,
	rtpr				float8,
	cpunr				float8,
	status				text,
	exc					float8,
	state				text,
	cpu					float8,
	cmd					text,
	prediction			int NOT NULL,
	probability			float8,
	model_version		int,
	kafka_partition		int NOT NULL,
	kafka_offset		bigint NOT NULL,
	row_index			int NOT NULL,
	batch_id			bigint NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02);
COMMENT ON TABLE anomstream.join_process IS
	'Join buffer (operator state): non-late process attack rows still within join_bound of the watermark.';

CREATE TABLE anomstream.join_memory (
	event_time			timestamptz NOT NULL,
	machine				int NOT NULL,
	cmd_pid				text NOT NULL,
	sequence			int,
	pid					int,
	minflt				float8,
	majflt				float8,
	vstext				float8,
	vsize				float8,
	rsize				float8,
	vgrow				float8,
	rgrow				float8,
	mem					float8,
	cmd					text,
	prediction			int NOT NULL,
	probability			float8,
	model_version		int,
	kafka_partition		int NOT NULL,
	kafka_offset		bigint NOT NULL,
	row_index			int NOT NULL,
	batch_id			bigint NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02);
COMMENT ON TABLE anomstream.join_memory IS
	'Join buffer (operator state): non-late memory attack rows still within join_bound of the watermark.';

-- Window keys: distinct (machine, cmd_pid) per window, for attacks and new_attacks; kept while
-- a window that can still change may look back at them (window_start >= date_bin(W) - retention).
CREATE TABLE anomstream.window_keys (
	machine				int NOT NULL,
	cmd_pid				text NOT NULL,
	window_start		timestamptz NOT NULL,
	PRIMARY KEY (machine, cmd_pid, window_start)
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02);
COMMENT ON TABLE anomstream.window_keys IS
	'Window state (operator state): distinct attacking (machine, cmd_pid) per window within new_attack_retention of the oldest open window.';

SELECT pg_catalog.pg_extension_config_dump('anomstream.pipeline_config', '');
SELECT pg_catalog.pg_extension_config_dump('anomstream.pipeline_partitions', '');
SELECT pg_catalog.pg_extension_config_dump('anomstream.pipeline_state', '');
SELECT pg_catalog.pg_extension_config_dump('anomstream.late_rows', '');
SELECT pg_catalog.pg_extension_config_dump('anomstream.join_process', '');
SELECT pg_catalog.pg_extension_config_dump('anomstream.join_memory', '');
SELECT pg_catalog.pg_extension_config_dump('anomstream.window_keys', '');

-- A duration setting in milliseconds (NULL if the setting is unknown in this session).
CREATE FUNCTION anomstream.setting_ms(name text) RETURNS bigint
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
	RETURN (pg_catalog.date_part('epoch', pg_catalog.current_setting(name, true)::interval)
			OPERATOR(pg_catalog.*) 1000)::bigint;
COMMENT ON FUNCTION anomstream.setting_ms(text) IS
	'The value of a duration setting in milliseconds, NULL if it is not defined in this session.';

-- Status (§10): one row per topic/partition the pipeline has seen, with the pipeline-wide
-- figures repeated on each row.
CREATE VIEW anomstream.pipeline_status AS
SELECT pp.topic,
	   pp.kafka_partition,
	   pp.max_event_time,
	   pp.max_event_time OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => c.lateness_ms OPERATOR(pg_catalog./) 1000.0) AS partition_watermark,
	   pp.idle,
	   pp.idle_timeouts,
	   pp.last_data_at,
	   pp.rows,
	   pp.late_partition AS late_partition_watermark,
	   pp.late_pipeline AS late_behind_pipeline_watermark,
	   s.watermark,
	   CASE WHEN pg_catalog.isfinite(s.watermark) THEN pg_catalog.now() OPERATOR(pg_catalog.-) s.watermark END AS watermark_delay,
	   s.batches,
	   s.last_batch_id,
	   s.last_batch_at,
	   s.last_batch_rows,
	   s.last_pipeline_ms,
	   (SELECT w.last_batch_ms FROM anomstream.worker_status() w LIMIT 1) AS last_batch_ms,
	   s.last_event_lag_ms AS end_to_end_lag_ms,
	   s.held_process,
	   s.held_memory,
	   s.held_keys,
	   s.pairs,
	   s.windows_closed,
	   COALESCE(c.window_ms OPERATOR(pg_catalog.<>) anomstream.setting_ms('anomstream.window')
			OR c.lateness_ms OPERATOR(pg_catalog.<>) anomstream.setting_ms('anomstream.lateness')
			OR c.join_bound_ms OPERATOR(pg_catalog.<>) anomstream.setting_ms('anomstream.join_bound')
			OR (c.new_attack_retention_s::bigint OPERATOR(pg_catalog.*) 1000) OPERATOR(pg_catalog.<>)
			   anomstream.setting_ms('anomstream.new_attack_retention'), false) AS config_pending
FROM anomstream.pipeline_state s
LEFT JOIN anomstream.pipeline_config c ON true
LEFT JOIN anomstream.pipeline_partitions pp ON true;
COMMENT ON VIEW anomstream.pipeline_status IS
	'Pipeline progress per topic/partition: max event time, partition watermark, idleness, late rows; and pipeline-wide: watermark W, last micro-batch, end-to-end lag, rows held in operator state, config pending.';

GRANT SELECT ON anomstream.pipeline_status, anomstream.pipeline_state,
	anomstream.pipeline_partitions TO anomstream_reader, anomstream_admin;
