/*-------------------------------------------------------------------------
 *
 * late.c
 *	  Take over one stream's rows of the current micro-batch: classify late rows and buffer
 *	  the attack rows (DESIGN.md §5, §6).
 *
 * One statement per stream, set-based over the batch's staging rows (WHERE batch_id = $1,
 * the BRIN index), never over rows of earlier batches. Rows below the partition's durable
 * offset are refill rows that every durable consumer already took over: they are skipped
 * (while a rebuild replays, the partition's replay position takes the durable offset's
 * place, and late rows before the rebuild's horizon are not listed again: rebuild.c).
 * For the others, W_p(o) = max(stored maximum, event_time of this batch's rows of the
 * partition at offsets < o) - lateness: the per-message advance in offset order, computed
 * by a window function. A row is late with reason partition_watermark if event_time <
 * W_p(o), else behind_pipeline_watermark if event_time < W (the W before this batch).
 * Late rows go to anomstream.late_rows; non-late attack rows (prediction = 1, machine and
 * cmd_pid not NULL) go to the stream's join buffer stamped with the batch id, from where
 * join.c and windows.c take the batch's delta.
 *
 * Staging's planner statistics lag (it grows and is trimmed all the time) and a sequential
 * scan would make every batch cost as much as all of staging, so this statement runs with
 * sequential scans off (a GUC nest level, undone on return or by an abort): the batch's
 * rows come through the BRIN index on batch_id.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "ingest/decode.h"
#include "pipeline/pipeline_int.h"

/* Columns copied into the join buffers, beyond the common ones */
static const char *const process_cols =
"sequence, pid, trun, tslpi, tslpu, poli, nice, pri, rtpr, cpunr, status, exc, state, cpu, cmd";
static const char *const memory_cols =
"sequence, pid, minflt, majflt, vstext, vsize, rsize, vgrow, rgrow, mem, cmd";

/*
 * Classify and buffer the batch's rows of one stream; updates the partitions' maxima and
 * counts in run.
 */
void
late_classify(PipelineRun *run, int stream)
{
	const char *name = stream == STREAM_PROCESS ? "process" : "memory";
	const char *cols = stream == STREAM_PROCESS ? process_cols : memory_cols;
	const char *topic = NULL;
	StringInfoData sql;
	int			n = 0;
	int32	   *partitions = palloc(sizeof(int32) * Max(run->npw, 1));
	int64	   *durable = palloc(sizeof(int64) * Max(run->npw, 1));
	TimestampTz *prev = palloc(sizeof(TimestampTz) * Max(run->npw, 1));
	bool	   *prevnull = palloc(sizeof(bool) * Max(run->npw, 1));
	Oid			types[8] = {INT8OID, INT4ARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID,
	INTERVALOID, TIMESTAMPTZOID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[8];
	uint64		nres;
	int			nestlevel;

	for (int i = 0; i < run->npw; i++)
	{
		PartWatermark *w = &run->pw[i];

		if ((int) w->part->stream != stream || !w->part->in_batch)
			continue;
		topic = w->part->topic;
		partitions[n] = w->part->partition;
		durable[n] = w->from_offset;
		prev[n] = w->max_event_time;
		prevnull[n] = !w->has_max;
		n++;
	}
	if (n == 0)
		return;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "WITH b AS ("
					 " SELECT e.*, GREATEST(d.prev_max, max(e.event_time) OVER ("
					 "   PARTITION BY e.kafka_partition ORDER BY e.kafka_offset"
					 "   RANGE BETWEEN UNBOUNDED PRECEDING AND CAST(1 AS bigint) PRECEDING)) - $5 AS wp"
					 " FROM anomstream.%s_events e"
					 " JOIN unnest($2, $3, $4) AS d(part, durable, prev_max) ON d.part = e.kafka_partition"
					 " WHERE e.batch_id = $1 AND e.kafka_offset >= d.durable"
					 "), c AS ("
					 " SELECT b.*, CASE WHEN b.event_time < b.wp THEN 'partition_watermark'"
					 "                  WHEN b.event_time < $6 THEN 'behind_pipeline_watermark' END AS late"
					 " FROM b"
					 "), l AS ("
					 " INSERT INTO anomstream.late_rows (topic, kafka_partition, kafka_offset, row_index,"
					 "   event_time, watermark, reason, machine, cmd_pid, prediction, batch_id)"
					 " SELECT $7, kafka_partition, kafka_offset, row_index, event_time,"
					 "   CASE WHEN late = 'partition_watermark' THEN wp ELSE $6 END, late, machine,"
					 "   cmd_pid, prediction, $1"
					 " FROM c WHERE late IS NOT NULL AND event_time >= $8 RETURNING 1"
					 "), j AS ("
					 " INSERT INTO anomstream.join_%s (event_time, machine, cmd_pid, %s, prediction,"
					 "   probability, model_version, kafka_partition, kafka_offset, row_index, batch_id)"
					 " SELECT event_time, machine, cmd_pid, %s, prediction, probability, model_version,"
					 "   kafka_partition, kafka_offset, row_index, $1"
					 " FROM c WHERE late IS NULL AND prediction = 1 AND machine IS NOT NULL"
					 "   AND cmd_pid IS NOT NULL AND event_time IS NOT NULL RETURNING 1"
					 ")"
					 " SELECT kafka_partition, max(event_time), count(*),"
					 "   count(*) FILTER (WHERE late = 'partition_watermark'),"
					 "   count(*) FILTER (WHERE late = 'behind_pipeline_watermark'),"
					 "   (SELECT count(*) FROM j), (SELECT count(*) FROM l)"
					 " FROM c GROUP BY kafka_partition",
					 name, name, cols, cols);

	values[0] = Int64GetDatum(run->batch_id);
	values[1] = pl_int4_array(partitions, n);
	values[2] = pl_int8_array(durable, n);
	values[3] = pl_timestamptz_array(prev, prevnull, n);
	values[4] = run->s.lateness;
	values[5] = TimestampTzGetDatum(run->watermark_old);
	values[6] = CStringGetTextDatum(topic);
	values[7] = TimestampTzGetDatum(run->gate_late);
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	nres = pl_exec(sql.data, 8, types, values, NULL, SPI_OK_SELECT);
	AtEOXact_GUC(true, nestlevel);

	for (uint64 r = 0; r < nres; r++)
	{
		bool		isnull;
		int32		partition = DatumGetInt32(pl_get(r, 1, &isnull));
		Datum		maxd = pl_get(r, 2, &isnull);
		bool		maxnull = isnull;
		PartWatermark *w = watermark_find(run, stream, partition);

		if (w == NULL)
			elog(ERROR, "anomstream: staged rows of unassigned partition %s/%d", name, partition);
		if (!maxnull)
		{
			TimestampTz m = DatumGetTimestampTz(maxd);

			if (!w->has_max || m > w->max_event_time)
			{
				w->max_event_time = m;
				w->has_max = true;
			}
			if (!run->has_event_time || m > run->max_event_time_seen)
				run->max_event_time_seen = m;
			run->has_event_time = true;
		}
		w->rows += DatumGetInt64(pl_get(r, 3, &isnull));
		w->late_partition += DatumGetInt64(pl_get(r, 4, &isnull));
		w->late_pipeline += DatumGetInt64(pl_get(r, 5, &isnull));
		w->has_last_data = true;
		w->last_data_at = run->now;
		w->dirty = true;
		run->rows += DatumGetInt64(pl_get(r, 3, &isnull));
		run->late_rows += DatumGetInt64(pl_get(r, 4, &isnull)) + DatumGetInt64(pl_get(r, 5, &isnull));
		run->attack_rows[stream] = DatumGetInt64(pl_get(r, 6, &isnull));
	}
}
