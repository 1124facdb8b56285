/*-------------------------------------------------------------------------
 *
 * watermark.c
 *	  Partition watermarks, idle partitions and the pipeline watermark (DESIGN.md §5).
 *
 * anomstream.pipeline_partitions holds, per topic-partition, the largest event_time of the
 * rows the pipeline took over; W_p = that minus lateness. Within a micro-batch W_p advances
 * per message in offset order (late.c computes it per row in SQL from the stored maximum).
 * The pipeline watermark W (anomstream.pipeline_state) is the minimum of W_p over the
 * assigned partitions that are not idle; a partition that never delivered data holds W at
 * -infinity until it is idle. A partition is idle when the consumer has read it up to its
 * high watermark and nothing arrived for anomstream.idle_timeout. If every partition is
 * idle, W is the minimum over those with data: every row still to come from a partition is
 * then at least partition-late or behind nothing it has not already passed itself.
 *
 * Invariants: W never moves backwards; it and the partition rows change only inside a
 * pipeline transaction (a micro-batch or a tick), so a crash leaves them consistent with
 * the durable positions. Wall-clock bookkeeping (first_seen_at, last_data_at) only decides
 * idleness, never a result, as long as no idle timeout fires (status counts those).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "pipeline/pipeline_int.h"

/*
 * Read W and the rows of the assigned partitions; insert rows for partitions seen for the
 * first time (first_seen_at = now).
 */
void
watermark_load(PipelineRun *run, PartState *parts, int nparts)
{
	bool		isnull;
	uint64		n;

	pl_exec("SELECT watermark, held_process, held_memory, held_keys FROM anomstream.pipeline_state",
			0, NULL, NULL, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("anomstream.pipeline_state must hold exactly one row"),
				 errhint("Reinstall the extension.")));
	run->watermark_old = DatumGetTimestampTz(pl_get(0, 1, &isnull));
	for (int c = 0; c < 3; c++)
		run->held[c] = DatumGetInt64(pl_get(0, c + 2, &isnull));
	run->watermark_new = run->watermark_old;

	run->pw = palloc0(sizeof(PartWatermark) * Max(nparts, 1));
	run->npw = nparts;
	for (int i = 0; i < nparts; i++)
	{
		run->pw[i].part = &parts[i];
		run->pw[i].from_offset = parts[i].durable_offset;
	}

	n = pl_exec("SELECT topic, kafka_partition, max_event_time, first_seen_at, last_data_at, idle "
				"FROM anomstream.pipeline_partitions", 0, NULL, NULL, NULL, SPI_OK_SELECT);
	for (uint64 r = 0; r < n; r++)
	{
		char	   *topic = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1);
		int32		partition = DatumGetInt32(pl_get(r, 2, &isnull));

		for (int i = 0; i < nparts; i++)
		{
			PartWatermark *w = &run->pw[i];
			Datum		d;

			if (w->part->partition != partition || strcmp(w->part->topic, topic) != 0)
				continue;
			d = pl_get(r, 3, &isnull);
			w->has_max = !isnull;
			w->max_event_time = isnull ? 0 : DatumGetTimestampTz(d);
			w->first_seen_at = DatumGetTimestampTz(pl_get(r, 4, &isnull));
			d = pl_get(r, 5, &isnull);
			w->has_last_data = !isnull;
			w->last_data_at = isnull ? 0 : DatumGetTimestampTz(d);
			w->idle = DatumGetBool(pl_get(r, 6, &isnull));
			w->was_idle = w->idle;
			w->first_seen_at = w->first_seen_at ? w->first_seen_at : 1;	/* marks "row exists" */
		}
	}

	for (int i = 0; i < nparts; i++)
	{
		PartWatermark *w = &run->pw[i];
		Oid			types[2] = {TEXTOID, INT4OID};
		Datum		values[2];

		if (w->first_seen_at != 0)
			continue;
		values[0] = CStringGetTextDatum(w->part->topic);
		values[1] = Int32GetDatum(w->part->partition);
		pl_exec("INSERT INTO anomstream.pipeline_partitions (topic, kafka_partition, first_seen_at) "
				"VALUES ($1, $2, pg_catalog.transaction_timestamp()) "
				"ON CONFLICT (topic, kafka_partition) DO NOTHING",
				2, types, values, NULL, SPI_OK_INSERT);
		w->first_seen_at = GetCurrentTransactionStartTimestamp();
	}
}

/*
 * The state of (stream, partition), NULL if it is not assigned.
 */
PartWatermark *
watermark_find(PipelineRun *run, int stream, int32 partition)
{
	for (int i = 0; i < run->npw; i++)
		if ((int) run->pw[i].part->stream == stream && run->pw[i].part->partition == partition)
			return &run->pw[i];
	return NULL;
}

/*
 * Has the consumer read the partition up to its high watermark?
 */
static bool
read_up(const PartState *p)
{
	return p->caught_up || (p->high_watermark >= 0 && p->next_offset >= p->high_watermark);
}

/*
 * Decide idleness and compute the new W. Returns true if anything must be written.
 */
bool
watermark_advance(PipelineRun *run)
{
	int64		lateness_us = (int64) run->s.lateness_ms * 1000;
	int64		timeout_us = (int64) anomstream_idle_timeout * 1000;
	bool		changed = false;
	bool		any_active = false;
	TimestampTz cand = DT_NOEND;
	TimestampTz cand_all = DT_NOEND;
	bool		any_data = false;

	for (int i = 0; i < run->npw; i++)
	{
		PartWatermark *w = &run->pw[i];
		TimestampTz activity = Max(w->first_seen_at, w->part->last_message_at);
		TimestampTz wp;

		if (w->has_last_data)
			activity = Max(activity, w->last_data_at);
		w->idle = read_up(w->part) && run->now - activity >= timeout_us;
		if (w->idle != w->was_idle)
		{
			w->dirty = true;
			changed = true;
			if (w->idle)
			{
				w->became_idle = true;
				ereport(LOG,
						(errmsg("anomstream: partition %s/%d is idle; it no longer holds the pipeline watermark",
								w->part->topic, w->part->partition),
						 errdetail("It was read up to its end and nothing arrived for %d ms.",
								   anomstream_idle_timeout)));
			}
		}
		wp = w->has_max ? w->max_event_time - lateness_us : DT_NOBEGIN;
		if (w->has_max)
		{
			any_data = true;
			cand_all = Min(cand_all, wp);
		}
		if (!w->idle)
		{
			any_active = true;
			cand = Min(cand, wp);
		}
	}
	if (!any_active)
		cand = any_data ? cand_all : DT_NOBEGIN;
	if (run->npw > 0 && cand > run->watermark_old && cand != DT_NOEND)
	{
		run->watermark_new = cand;
		changed = true;
	}
	return changed;
}

/*
 * Write the partition rows that changed and W.
 */
void
watermark_save(PipelineRun *run)
{
	int			n = 0;
	char	  **topics = palloc(sizeof(char *) * Max(run->npw, 1));
	int32	   *partitions = palloc(sizeof(int32) * Max(run->npw, 1));
	TimestampTz *maxes = palloc(sizeof(TimestampTz) * Max(run->npw, 1));
	bool	   *maxnull = palloc(sizeof(bool) * Max(run->npw, 1));
	TimestampTz *lastdata = palloc(sizeof(TimestampTz) * Max(run->npw, 1));
	bool	   *lastnull = palloc(sizeof(bool) * Max(run->npw, 1));
	int64	   *counts = palloc(sizeof(int64) * Max(run->npw, 1) * 4);
	int32	   *idle = palloc(sizeof(int32) * Max(run->npw, 1));

	for (int i = 0; i < run->npw; i++)
	{
		PartWatermark *w = &run->pw[i];

		if (!w->dirty)
			continue;
		topics[n] = w->part->topic;
		partitions[n] = w->part->partition;
		maxes[n] = w->max_event_time;
		maxnull[n] = !w->has_max;
		lastdata[n] = w->last_data_at;
		lastnull[n] = !w->has_last_data;
		idle[n] = (w->idle ? 1 : 0) | (w->became_idle ? 2 : 0);
		counts[n] = w->rows;
		counts[run->npw + n] = w->late_partition;
		counts[2 * run->npw + n] = w->late_pipeline;
		n++;
	}
	if (n > 0)
	{
		Oid			types[8] = {TEXTARRAYOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID,
		TIMESTAMPTZARRAYOID, INT4ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
		Datum		values[8];
		Datum	   *tdat = palloc(sizeof(Datum) * n);

		for (int i = 0; i < n; i++)
			tdat[i] = CStringGetTextDatum(topics[i]);
		values[0] = pl_array(tdat, NULL, n, TEXTOID);
		values[1] = pl_int4_array(partitions, n);
		values[2] = pl_timestamptz_array(maxes, maxnull, n);
		values[3] = pl_timestamptz_array(lastdata, lastnull, n);
		values[4] = pl_int4_array(idle, n);
		values[5] = pl_int8_array(counts, n);
		values[6] = pl_int8_array(counts + run->npw, n);
		values[7] = pl_int8_array(counts + 2 * run->npw, n);
		pl_exec("UPDATE anomstream.pipeline_partitions p SET "
				"max_event_time = u.max_event_time, last_data_at = u.last_data_at, "
				"idle = (u.idle & 1) = 1, idle_timeouts = p.idle_timeouts + (u.idle >> 1), "
				"rows = p.rows + u.nrows, late_partition = p.late_partition + u.lp, "
				"late_pipeline = p.late_pipeline + u.lw "
				"FROM unnest($1, $2, $3, $4, $5, $6, $7, $8) "
				"AS u(topic, kafka_partition, max_event_time, last_data_at, idle, nrows, lp, lw) "
				"WHERE p.topic = u.topic AND p.kafka_partition = u.kafka_partition",
				8, types, values, NULL, SPI_OK_UPDATE);
	}
	if (run->watermark_new != run->watermark_old)
	{
		Oid			types[1] = {TIMESTAMPTZOID};
		Datum		values[1] = {TimestampTzGetDatum(run->watermark_new)};

		pl_exec("UPDATE anomstream.pipeline_state SET watermark = $1", 1, types, values, NULL,
				SPI_OK_UPDATE);
	}
}
