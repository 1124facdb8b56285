-- Results (DESIGN.md §6, §12): windowed counts of potential attacks and the joined
-- process/memory attack pairs. Both are logged tables written by the pipeline's micro-batch
-- transaction; anomstream_reader may read them (§10).

-- One row per (window, machine) with at least one attack row; windows without attacks have no
-- row. Rows are rewritten while the window is open: fillfactor 50 and no index on the changing
-- columns keep those updates HOT (§13).
CREATE TABLE anomstream.potential_attacks (
	window_start	timestamptz NOT NULL,
	window_end		timestamptz NOT NULL,
	machine			int NOT NULL,
	attacks			bigint NOT NULL,
	new_attacks		bigint NOT NULL,
	closed			bool NOT NULL DEFAULT false,
	PRIMARY KEY (window_start, machine)
) WITH (fillfactor = 50);
COMMENT ON TABLE anomstream.potential_attacks IS
	'Per window and machine: distinct (machine, cmd_pid) among attack rows of both streams (attacks) and those not seen in the retention before the window (new_attacks).';

-- One row per pair of a process attack row and a memory attack row of the same machine and
-- cmd_pid within join_bound; the pair's Kafka positions are its identity.
CREATE TABLE anomstream.detected_attacks (
	p_event_time		timestamptz,
	p_machine			int,
	p_sequence			int,
	p_pid				int,
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
	p_cmd				text,
	p_cmd_pid			text,
	p_prediction		int,
	m_event_time		timestamptz,
	m_machine			int,
	m_sequence			int,
	m_pid				int,
	minflt				float8,
	majflt				float8,
	vstext				float8,
	vsize				float8,
	rsize				float8,
	vgrow				float8,
	rgrow				float8,
	mem					float8,
	m_cmd				text,
	m_cmd_pid			text,
	m_prediction		int,
	processing_time		timestamptz NOT NULL DEFAULT pg_catalog.transaction_timestamp(),
	p_kafka_partition	int NOT NULL,
	p_kafka_offset		bigint NOT NULL,
	p_row_index			int NOT NULL,
	m_kafka_partition	int NOT NULL,
	m_kafka_offset		bigint NOT NULL,
	m_row_index			int NOT NULL,
	p_probability		float8,
	m_probability		float8,
	p_model_version		int,
	m_model_version		int,
	batch_id			bigint,
	UNIQUE (p_kafka_partition, p_kafka_offset, p_row_index,
			m_kafka_partition, m_kafka_offset, m_row_index)
);
COMMENT ON TABLE anomstream.detected_attacks IS
	'Pairs of a process attack row and a memory attack row with the same machine and cmd_pid less than join_bound apart; unique by both rows'' Kafka positions.';

GRANT SELECT ON anomstream.potential_attacks, anomstream.detected_attacks TO anomstream_reader;
