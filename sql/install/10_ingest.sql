-- Ingestion (DESIGN.md §1-§3, §7): staging tables, positions, dead letters, decode and
-- reformat, worker status.

-- Staging: a cache of recent input (UNLOGGED: emptied by any crash and refilled from Kafka).
CREATE UNLOGGED TABLE anomstream.process_events (
	sequence		int,
	machine			int,
	pid				int,
	trun			float8,
	tslpi			float8,
	tslpu			float8,
	poli			text,
	nice			float8,
	pri				float8,
	rtpr			float8,
	cpunr			float8,
	status			text,
	exc				float8,
	state			text,
	cpu				float8,
	cmd				text,
	cmd_pid			text,
	event_time		timestamptz,
	prediction		int,
	probability		float8,
	model_version	int,
	batch_id		bigint NOT NULL,
	kafka_partition	int NOT NULL,
	kafka_offset	bigint NOT NULL,
	row_index		int NOT NULL,
	kafka_timestamp	timestamptz
);
CREATE INDEX process_events_batch_brin ON anomstream.process_events USING brin (batch_id);
COMMENT ON TABLE anomstream.process_events IS
	'Decoded process rows (UNLOGGED cache of recent input; refilled from Kafka after a crash).';

CREATE UNLOGGED TABLE anomstream.memory_events (
	sequence		int,
	machine			int,
	pid				int,
	minflt			float8,
	majflt			float8,
	vstext			float8,
	vsize			float8,
	rsize			float8,
	vgrow			float8,
	rgrow			float8,
	mem				float8,
	cmd				text,
	cmd_pid			text,
	event_time		timestamptz,
	prediction		int,
	probability		float8,
	model_version	int,
	batch_id		bigint NOT NULL,
	kafka_partition	int NOT NULL,
	kafka_offset	bigint NOT NULL,
	row_index		int NOT NULL,
	kafka_timestamp	timestamptz
);
CREATE INDEX memory_events_batch_brin ON anomstream.memory_events USING brin (batch_id);
COMMENT ON TABLE anomstream.memory_events IS
	'Decoded memory rows (UNLOGGED cache of recent input; refilled from Kafka after a crash).';

-- Positions per topic/partition. durable_offset: every durable consumer has taken over all
-- rows before it; staging_low: the oldest offset still inside staging_retention.
CREATE TABLE anomstream.positions (
	topic			text NOT NULL,
	kafka_partition	int NOT NULL,
	durable_offset	bigint NOT NULL,
	staging_low		bigint NOT NULL,
	updated_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (topic, kafka_partition)
);
COMMENT ON TABLE anomstream.positions IS
	'Durable Kafka positions: the worker resumes at durable_offset and refills staging from staging_low after a crash.';

-- Staged positions: written with the staging rows, so both vanish together in a crash.
CREATE UNLOGGED TABLE anomstream.staged_positions (
	topic			text NOT NULL,
	kafka_partition	int NOT NULL,
	staged_offset	bigint NOT NULL,
	PRIMARY KEY (topic, kafka_partition)
);
COMMENT ON TABLE anomstream.staged_positions IS
	'Next offset whose rows are not yet in staging (UNLOGGED: emptied with staging).';

-- A row here means staging is intact; its absence after a restart means a crash emptied it.
CREATE UNLOGGED TABLE anomstream.staging_marker (
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE anomstream.staging_marker IS
	'Present while staging is intact; a crash empties it, which tells the worker to refill staging.';

-- Which offsets each micro-batch staged (logged), for staging retention and refills.
CREATE TABLE anomstream.batch_ranges (
	batch_id		bigint NOT NULL,
	topic			text NOT NULL,
	kafka_partition	int NOT NULL,
	first_offset	bigint NOT NULL,
	last_offset		bigint NOT NULL,
	committed_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (batch_id, topic, kafka_partition)
);
COMMENT ON TABLE anomstream.batch_ranges IS
	'Offset ranges staged by each micro-batch; expired with staging_retention.';

CREATE SEQUENCE anomstream.batch_id_seq;

CREATE TABLE anomstream.dead_letters (
	id				bigserial PRIMARY KEY,
	topic			text NOT NULL,
	kafka_partition	int,
	kafka_offset	bigint,
	row_index		int,
	key				bytea,
	value			bytea,
	error			text NOT NULL,
	received_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX dead_letters_received_at ON anomstream.dead_letters (received_at);
COMMENT ON TABLE anomstream.dead_letters IS
	'Input that could not be decoded: a whole message (row_index NULL, value = message) or one row (value = that row).';

SELECT pg_catalog.pg_extension_config_dump('anomstream.positions', '');
SELECT pg_catalog.pg_extension_config_dump('anomstream.batch_ranges', '');
SELECT pg_catalog.pg_extension_config_dump('anomstream.dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('anomstream.dead_letters_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('anomstream.batch_id_seq', '');

-- The row type anomstream.decode() returns: the columns of both staging tables, the
-- message's position of the row, and the reason it would be a dead letter (NULL if valid).
CREATE TYPE anomstream.decoded_row AS (
	row_index		int,
	error			text,
	sequence		int,
	machine			int,
	pid				int,
	trun			float8,
	tslpi			float8,
	tslpu			float8,
	poli			text,
	nice			float8,
	pri				float8,
	rtpr			float8,
	cpunr			float8,
	status			text,
	exc				float8,
	state			text,
	cpu				float8,
	minflt			float8,
	majflt			float8,
	vstext			float8,
	vsize			float8,
	rsize			float8,
	vgrow			float8,
	rgrow			float8,
	mem				float8,
	cmd				text,
	cmd_pid			text,
	event_time		timestamptz
);

CREATE FUNCTION anomstream.reformat(value text) RETURNS float8
	AS 'MODULE_PATHNAME', 'anomstream_reformat'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION anomstream.reformat(text) IS
	'Convert an atop value such as ''224.2M'' or ''132 K'' to a number (K=1e3 ... P=1e15); raises 22P02 on anything else.';

CREATE FUNCTION anomstream.try_reformat(value text) RETURNS float8
	AS 'MODULE_PATHNAME', 'anomstream_try_reformat'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION anomstream.try_reformat(text) IS
	'Like anomstream.reformat, but returns NULL for a value it cannot convert.';

CREATE FUNCTION anomstream.decode(topic text, message text,
								  kafka_timestamp timestamptz DEFAULT NULL)
	RETURNS SETOF anomstream.decoded_row
	AS 'MODULE_PATHNAME', 'anomstream_decode'
	LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION anomstream.decode(text, text, timestamptz) IS
	'Decode one Kafka message of topic ''process'' or ''memory'' exactly as the worker does: one row per data element; error is the dead-letter reason of an invalid row. A message the worker would dead-letter as a whole raises an error. With kafka_timestamp, a ts more than anomstream.max_future after it is rejected.';

-- Live status of the worker, joined with the durable positions.
CREATE FUNCTION anomstream.worker_status(
	OUT topic text, OUT kafka_partition int, OUT next_offset bigint,
	OUT high_watermark bigint, OUT messages bigint, OUT rows bigint,
	OUT dead_letters bigint, OUT caught_up bool, OUT last_message_at timestamptz,
	OUT worker_state text, OUT worker_state_since timestamptz, OUT worker_pid int,
	OUT brokers text, OUT embedded bool, OUT batches bigint, OUT last_batch_ms float8,
	OUT rows_per_sec float8, OUT last_error text, OUT last_error_at timestamptz,
	OUT gap bool, OUT gap_earliest_offset bigint)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'anomstream_worker_status'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION anomstream.worker_status() IS
	'Live figures the pipeline worker publishes in shared memory: one row per topic/partition (or one row with NULL partition while none is assigned).';

CREATE VIEW anomstream.status AS
-- state: the partition's ('gap' when it is stopped at a Kafka gap, see docs/ops.md); the
-- worker's own state is worker_state ('gap' while any partition is stopped at one).
SELECT CASE WHEN w.gap THEN 'gap'
			WHEN w.worker_state OPERATOR(pg_catalog.=) 'gap' THEN 'running'
			ELSE w.worker_state END AS state,
	   w.topic,
	   w.kafka_partition,
	   p.durable_offset,
	   p.staging_low,
	   w.next_offset,
	   w.high_watermark,
	   CASE WHEN w.high_watermark OPERATOR(pg_catalog.>=) 0 AND w.next_offset OPERATOR(pg_catalog.>=) 0
			THEN GREATEST(w.high_watermark OPERATOR(pg_catalog.-) w.next_offset, 0) END AS lag,
	   w.messages,
	   w.rows,
	   w.dead_letters,
	   w.caught_up,
	   w.last_message_at,
	   w.worker_state_since AS state_since,
	   w.worker_pid,
	   CASE WHEN w.embedded THEN w.brokers OPERATOR(pg_catalog.||) ' (embedded in-memory mock cluster, for demos and tests only)'
			ELSE w.brokers END AS brokers,
	   w.batches,
	   w.last_batch_ms,
	   w.rows_per_sec,
	   w.last_error,
	   w.last_error_at,
	   w.worker_state,
	   w.gap_earliest_offset
FROM anomstream.worker_status() w
LEFT JOIN anomstream.positions p
	ON p.topic OPERATOR(pg_catalog.=) w.topic
   AND p.kafka_partition OPERATOR(pg_catalog.=) w.kafka_partition;
COMMENT ON VIEW anomstream.status IS
	'Per topic/partition: positions, high watermark, lag, counts and the worker state.';

GRANT SELECT ON anomstream.status TO anomstream_reader, anomstream_admin;
