-- Continuous Parquet sinks (DESIGN.md §8): the notebook's process.parquet, memory.parquet and
-- process_memory_attack.parquet as part files that roll at anomstream.sink_roll_rows or
-- anomstream.sink_roll_interval. The worker writes them (src/parquet/sink*.c); see
-- docs/parquet.md, "Continuous sinks".
--
-- Invariants:
--   - A sink is on while it has a row in anomstream.sinks; anomstream.set_sink() is the only
--     writer of that table and needs superuser or pg_write_server_files (DESIGN.md §10).
--   - sink_positions and sink_manifest change only inside the worker's micro-batch (or roll)
--     transaction; a manifest row exists iff its part file is complete and fsynced.
--   - All three are extension config tables, so pg_dump carries them (§7, §12).

CREATE TABLE anomstream.sinks (
	name			text PRIMARY KEY CHECK (name IN ('process', 'memory', 'detected')),
	directory		text NOT NULL CHECK (directory LIKE '/%'),
	set_at			timestamptz NOT NULL DEFAULT pg_catalog.now(),
	set_by			name NOT NULL
);
COMMENT ON TABLE anomstream.sinks IS
	'Parquet sinks that are on, with the server directory they write to; written only by anomstream.set_sink().';

-- Per sink and topic/partition (topic '' and kafka_partition -1: the detected sink, whose
-- positions are batch ids): rows before next_position are in committed part files; the open part covers
-- [next_position, end_position) and holds open_rows rows (recovered from Kafka into staging
-- after a crash: staging retention and staging_low never pass next_position).
CREATE TABLE anomstream.sink_positions (
	sink			text NOT NULL,
	topic			text NOT NULL,
	kafka_partition	int NOT NULL,
	next_position	bigint NOT NULL,
	end_position	bigint NOT NULL,
	open_rows		bigint NOT NULL DEFAULT 0,
	open_since		timestamptz,
	PRIMARY KEY (sink, topic, kafka_partition),
	CHECK (next_position <= end_position)
);
COMMENT ON TABLE anomstream.sink_positions IS
	'Per sink and Kafka topic/partition (topic '''' and partition -1: the detected sink, positions are batch ids): rows before next_position are in committed part files; the open part covers [next_position, end_position).';

-- One row per committed part file.
CREATE TABLE anomstream.sink_manifest (
	id				bigserial PRIMARY KEY,
	sink			text NOT NULL,
	directory		text NOT NULL,
	file			text NOT NULL,
	topic			text,
	kafka_partition	int,
	first_offset	bigint,
	last_offset		bigint,
	first_batch		bigint,
	last_batch		bigint,
	rows			bigint NOT NULL,
	bytes			bigint NOT NULL,
	checksum		text NOT NULL,
	committed_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	UNIQUE (directory, file)
);
COMMENT ON TABLE anomstream.sink_manifest IS
	'Committed Parquet part files: offsets (process, memory; last_offset inclusive) or batch ids (detected) they cover, rows, bytes and the SHA-256 of the file.';

SELECT pg_catalog.pg_extension_config_dump('anomstream.sinks', '');
SELECT pg_catalog.pg_extension_config_dump('anomstream.sink_positions', '');
SELECT pg_catalog.pg_extension_config_dump('anomstream.sink_manifest', '');
SELECT pg_catalog.pg_extension_config_dump('anomstream.sink_manifest_id_seq', '');

-- The detected sink reads detected_attacks by batch id at each roll. Batch ids grow with the
-- table, so a BRIN index serves the ranges at a fraction of a btree's cost per pair.
CREATE INDEX detected_attacks_batch_id ON anomstream.detected_attacks USING brin (batch_id)
	WITH (autosummarize = on);

CREATE FUNCTION anomstream.set_sink(name text, directory text) RETURNS void
	AS 'MODULE_PATHNAME', 'anomstream_set_sink'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION anomstream.set_sink(text, text) IS
	'Turn the Parquet sink ''process'', ''memory'' or ''detected'' on, writing part files to the existing absolute server directory, or off with NULL. Needs anomstream_admin and superuser or pg_write_server_files. A sink exports the rows the worker takes over from the next micro-batch on.';
REVOKE ALL ON FUNCTION anomstream.set_sink(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION anomstream.set_sink(text, text) TO anomstream_admin;

GRANT SELECT ON anomstream.sinks, anomstream.sink_positions, anomstream.sink_manifest
	TO anomstream_admin;
