/*-------------------------------------------------------------------------
 *
 * join.c
 *	  The interval join of process and memory attack rows into anomstream.detected_attacks
 *	  (DESIGN.md §6).
 *
 * A pair is a process attack row p and a memory attack row m with the same machine and
 * cmd_pid and |p.event_time - m.event_time| < join_bound (strict). The buffers hold the
 * non-late attack rows still reachable; late.c added this batch's rows stamped with its
 * batch id, so each batch emits ΔP ⋈ (M_old ∪ ΔM) ∪ P_old ⋈ ΔM: every pair exactly once,
 * in the batch that brought its later row. Eviction: a buffered row r can pair only with a
 * future row x with event_time >= W (anything earlier is late), and |x - r| < join_bound,
 * so once r.event_time + join_bound <= W it is deleted (batched, over the event_time btree).
 * While a rebuild replays, only pairs whose later row is at or after its `from` are
 * written (rebuild.c): the earlier ones are still in the table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/timestamp.h"

#include "pipeline/pipeline_int.h"

#define PAIR_COLUMNS \
	"p_event_time, p_machine, p_sequence, p_pid, trun, tslpi, tslpu, poli, nice, pri, rtpr, " \
	"cpunr, status, exc, state, cpu, p_cmd, p_cmd_pid, p_prediction, " \
	"m_event_time, m_machine, m_sequence, m_pid, minflt, majflt, vstext, vsize, rsize, vgrow, " \
	"rgrow, mem, m_cmd, m_cmd_pid, m_prediction, processing_time, " \
	"p_kafka_partition, p_kafka_offset, p_row_index, m_kafka_partition, m_kafka_offset, " \
	"m_row_index, p_probability, m_probability, p_model_version, m_model_version, batch_id"

#define PAIR_VALUES \
	"p.event_time, p.machine, p.sequence, p.pid, p.trun, p.tslpi, p.tslpu, p.poli, p.nice, " \
	"p.pri, p.rtpr, p.cpunr, p.status, p.exc, p.state, p.cpu, p.cmd, p.cmd_pid, p.prediction, " \
	"m.event_time, m.machine, m.sequence, m.pid, m.minflt, m.majflt, m.vstext, m.vsize, " \
	"m.rsize, m.vgrow, m.rgrow, m.mem, m.cmd, m.cmd_pid, m.prediction, " \
	"pg_catalog.transaction_timestamp(), " \
	"p.kafka_partition, p.kafka_offset, p.row_index, m.kafka_partition, m.kafka_offset, " \
	"m.row_index, p.probability, m.probability, p.model_version, m.model_version, $1"

/*
 * The partners of a row from the other buffer, as a lateral subquery. OFFSET 0 keeps the
 * planner from flattening it into a hash join over the whole buffer: each row of the batch
 * probes the (machine, cmd_pid, event_time) index, so the work follows the batch, not the
 * buffer. (Saved plans are made again every second, util/stmt_cache.c: a plan made while a
 * buffer was empty takes its event_time index instead, and reads every row of the last
 * minute once per row of the batch.)
 */
#define PARTNERS(buffer, alias, row) \
	" CROSS JOIN LATERAL (SELECT * FROM anomstream." buffer " b" \
	" WHERE b.machine = " row ".machine AND b.cmd_pid = " row ".cmd_pid" \
	" AND b.event_time > " row ".event_time - $2 AND b.event_time < " row ".event_time + $2" \
	" OFFSET 0) " alias

/*
 * Insert this batch's pairs.
 */
void
join_emit_pairs(PipelineRun *run)
{
	Oid			types[3] = {INT8OID, INTERVALOID, TIMESTAMPTZOID};
	Datum		values[3];

	if (run->attack_rows[0] == 0 && run->attack_rows[1] == 0)
		return;
	values[0] = Int64GetDatum(run->batch_id);
	values[1] = run->s.join_bound;
	values[2] = TimestampTzGetDatum(run->gate_pairs);
	run->pairs = pl_exec("INSERT INTO anomstream.detected_attacks (" PAIR_COLUMNS ") "
						 "SELECT " PAIR_VALUES " FROM anomstream.join_process p"
						 PARTNERS("join_memory", "m", "p")
						 " WHERE p.batch_id = $1 AND GREATEST(p.event_time, m.event_time) >= $3 "
						 "UNION ALL "
						 "SELECT " PAIR_VALUES " FROM anomstream.join_memory m"
						 PARTNERS("join_process", "p", "m")
						 " WHERE m.batch_id = $1 AND p.batch_id < $1"
						 " AND GREATEST(p.event_time, m.event_time) >= $3",
						 3, types, values, NULL, SPI_OK_INSERT);
}

/*
 * Delete buffered rows the new watermark made unreachable.
 */
void
join_evict(PipelineRun *run)
{
	Oid			types[2] = {TIMESTAMPTZOID, INTERVALOID};
	Datum		values[2];

	if (TIMESTAMP_NOT_FINITE(run->watermark_new) || run->watermark_new == run->watermark_old)
		return;
	values[0] = TimestampTzGetDatum(run->watermark_new);
	values[1] = run->s.join_bound;
	run->evicted[0] = pl_exec("DELETE FROM anomstream.join_process WHERE event_time <= $1 - $2",
							  2, types, values, NULL, SPI_OK_DELETE);
	run->evicted[1] = pl_exec("DELETE FROM anomstream.join_memory WHERE event_time <= $1 - $2",
							  2, types, values, NULL, SPI_OK_DELETE);
}
