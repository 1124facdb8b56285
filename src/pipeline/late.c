/*-------------------------------------------------------------------------
 *
 * late.c
 *	  Take over one stream's rows of the current micro-batch: classify late rows and buffer
 *	  the attack rows (DESIGN.md §5, §6).
 *
 * The batch's rows are read from memory (the scored slots staging_insert() left in the
 * worker's per-batch context), never from staging, so the cost is that of the batch alone.
 * Rows below the partition's durable offset are refill rows that every durable consumer
 * already took over: they are skipped (while a rebuild replays, the partition's replay
 * position takes the durable offset's place, and late rows before the rebuild's horizon
 * are not listed again: rebuild.c). For the others, in offset order per partition,
 * W_p(o) = max(stored maximum, event_time of this batch's rows of the partition at offsets
 * < o) - lateness: rows of one message never make each other late. A row is late with
 * reason partition_watermark if event_time < W_p(o), else behind_pipeline_watermark if
 * event_time < W (the W before this batch). Late rows go to anomstream.late_rows (one
 * statement over arrays: they are few); non-late attack rows (prediction = 1, machine and
 * cmd_pid not NULL) go to the stream's join buffer through bulk_insert.c, stamped with the
 * batch id, and to the worker's copy of the state (state_cache.c), and are kept in
 * run->delta, from where join.c and windows.c take the batch's delta.
 *
 * Invariants: the per-partition figures (rows, late counts, newest event_time) cover every
 * non-refill row of the batch exactly once; memory is the caller's (SPI procedure)
 * context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "ingest/bulk_insert.h"
#include "ingest/decode.h"
#include "pipeline/pipeline_int.h"

/* What a row of the batch is */
typedef enum RowClass
{
	ROW_ON_TIME,
	ROW_LATE_PARTITION,
	ROW_LATE_PIPELINE
} RowClass;

/* Per partition of the stream, while walking the batch */
typedef struct PartWalk
{
	PartWatermark *w;
	int64		durable;		/* rows below: refill only */
	bool		has_before;
	TimestampTz max_before;		/* over stored max and rows at earlier offsets */
	int64		cur_offset;
	bool		has_cur;
	TimestampTz max_cur;		/* over rows at cur_offset */
	bool		has_batch_max;
	TimestampTz batch_max;		/* over all rows taken over (late ones too) */
	int64		rows;
	int64		late_partition;
	int64		late_pipeline;
} PartWalk;

/* The late rows of the batch, as arrays for one INSERT */
typedef struct LateRows
{
	int			n;
	int			cap;
	Datum	   *partition;
	Datum	   *offset;
	Datum	   *row_index;
	Datum	   *event_time;
	Datum	   *watermark;
	Datum	   *reason;
	Datum	   *machine;
	bool	   *machine_null;
	Datum	   *cmd_pid;
	bool	   *cmd_pid_null;
	Datum	   *prediction;
	bool	   *prediction_null;
} LateRows;

/* Attribute numbers (0-based) of the staging columns this file reads */
typedef struct StagingCols
{
	int			event_time;
	int			machine;
	int			cmd_pid;
	int			prediction;
	int			partition;
	int			offset;
	int			row_index;
} StagingCols;

static void
late_add(LateRows *l, const TupleTableSlot *slot, const StagingCols *c, TimestampTz wm,
		 RowClass cls)
{
	if (l->n == l->cap)
	{
		l->cap = l->cap ? l->cap * 2 : 64;
#define GROW(f) l->f = l->f ? repalloc(l->f, sizeof(*l->f) * l->cap) : palloc(sizeof(*l->f) * l->cap)
		GROW(partition);
		GROW(offset);
		GROW(row_index);
		GROW(event_time);
		GROW(watermark);
		GROW(reason);
		GROW(machine);
		GROW(machine_null);
		GROW(cmd_pid);
		GROW(cmd_pid_null);
		GROW(prediction);
		GROW(prediction_null);
#undef GROW
	}
	l->partition[l->n] = slot->tts_values[c->partition];
	l->offset[l->n] = slot->tts_values[c->offset];
	l->row_index[l->n] = slot->tts_values[c->row_index];
	l->event_time[l->n] = slot->tts_values[c->event_time];
	l->watermark[l->n] = TimestampTzGetDatum(wm);
	l->reason[l->n] = CStringGetTextDatum(cls == ROW_LATE_PARTITION
										  ? "partition_watermark"
										  : "behind_pipeline_watermark");
	l->machine[l->n] = slot->tts_values[c->machine];
	l->machine_null[l->n] = slot->tts_isnull[c->machine];
	l->cmd_pid[l->n] = slot->tts_values[c->cmd_pid];
	l->cmd_pid_null[l->n] = slot->tts_isnull[c->cmd_pid];
	l->prediction[l->n] = slot->tts_values[c->prediction];
	l->prediction_null[l->n] = slot->tts_isnull[c->prediction];
	l->n++;
}

static void
late_insert(const LateRows *l, const char *topic, int64 batch_id)
{
	Oid			types[12] = {TEXTOID, INT4ARRAYOID, INT8ARRAYOID, INT4ARRAYOID,
		TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID,
	INT4ARRAYOID, INT8OID};
	Datum		values[11];

	if (l->n == 0)
		return;
	values[0] = CStringGetTextDatum(topic);
	values[1] = pl_array(l->partition, NULL, l->n, INT4OID);
	values[2] = pl_array(l->offset, NULL, l->n, INT8OID);
	values[3] = pl_array(l->row_index, NULL, l->n, INT4OID);
	values[4] = pl_array(l->event_time, NULL, l->n, TIMESTAMPTZOID);
	values[5] = pl_array(l->watermark, NULL, l->n, TIMESTAMPTZOID);
	values[6] = pl_array(l->reason, NULL, l->n, TEXTOID);
	values[7] = pl_array(l->machine, l->machine_null, l->n, INT4OID);
	values[8] = pl_array(l->cmd_pid, l->cmd_pid_null, l->n, TEXTOID);
	values[9] = pl_array(l->prediction, l->prediction_null, l->n, INT4OID);
	values[10] = Int64GetDatum(batch_id);
	pl_exec("INSERT INTO anomstream.late_rows (topic, kafka_partition, kafka_offset, row_index,"
			" event_time, watermark, reason, machine, cmd_pid, prediction, batch_id)"
			" SELECT $1, u.*, $11 FROM unnest($2, $3, $4, $5, $6, $7, $8, $9, $10) AS u",
			11, types, values, NULL, SPI_OK_INSERT);
}

/*
 * For each column of the join buffer, the staging column of the same name (-1: batch_id,
 * which is this batch's id).
 */
static int *
join_column_map(TupleDesc jdesc, TupleDesc sdesc, const char *jname)
{
	int		   *map = palloc(sizeof(int) * jdesc->natts);

	for (int a = 0; a < jdesc->natts; a++)
	{
		const char *name = NameStr(TupleDescAttr(jdesc, a)->attname);

		if (TupleDescAttr(jdesc, a)->attisdropped)
			map[a] = -2;
		else if (strcmp(name, "batch_id") == 0)
			map[a] = -1;
		else if ((map[a] = pl_column(sdesc, name)) < 0)
			elog(ERROR, "anomstream: join buffer column \"%s\" of %s has no staging column",
				 name, jname);
	}
	return map;
}

/*
 * An empty delta for the join buffer of descriptor jdesc.
 */
static void
delta_init(DeltaRows *d, TupleDesc jdesc, const char *jname)
{
	memset(d, 0, sizeof(*d));
	d->natts = jdesc->natts;
	d->att_event_time = pl_column(jdesc, "event_time");
	d->att_machine = pl_column(jdesc, "machine");
	d->att_cmd_pid = pl_column(jdesc, "cmd_pid");
	if (d->att_event_time < 0 || d->att_machine < 0 || d->att_cmd_pid < 0 ||
		TupleDescAttr(jdesc, d->att_event_time)->atttypid != TIMESTAMPTZOID ||
		TupleDescAttr(jdesc, d->att_machine)->atttypid != INT4OID ||
		TupleDescAttr(jdesc, d->att_cmd_pid)->atttypid != TEXTOID)
		elog(ERROR, "anomstream: join buffer %s lacks event_time, machine or cmd_pid of the expected types",
			 jname);
}

/*
 * Append a row (its arrays to be filled by the caller).
 */
static void
delta_add(DeltaRows *d)
{
	if (d->n == d->cap)
	{
		d->cap = d->cap ? d->cap * 2 : 256;
		d->values = d->values ? repalloc(d->values, sizeof(Datum *) * d->cap)
			: palloc(sizeof(Datum *) * d->cap);
		d->nulls = d->nulls ? repalloc(d->nulls, sizeof(bool *) * d->cap)
			: palloc(sizeof(bool *) * d->cap);
		d->entries = d->entries ? repalloc(d->entries, sizeof(StateEntry *) * d->cap)
			: palloc(sizeof(StateEntry *) * d->cap);
		d->rowidx = d->rowidx ? repalloc(d->rowidx, sizeof(int) * d->cap)
			: palloc(sizeof(int) * d->cap);
	}
	d->values[d->n] = palloc(sizeof(Datum) * d->natts);
	d->nulls[d->n] = palloc(sizeof(bool) * d->natts);
	d->n++;
}

/*
 * Classify and take over one stream's rows of this micro-batch.
 */
void
late_classify(PipelineRun *run, int stream, const StagedSlots *staged)
{
	const char *jname = stream == STREAM_PROCESS ? "join_process" : "join_memory";
	const char *topic = NULL;
	PartWalk   *walk;
	int			nwalk = 0;
	int32		maxpart = -1;
	int		   *bypart;
	StagingCols c;
	LateRows	late;
	Relation	jrel;
	int		   *jmap;
	BulkInserter *bi;
	DeltaRows  *delta = &run->delta[stream];
	ItemPointerData *tids;
	int64		lateness_us = (int64) run->s.lateness_ms * 1000;

	if (staged == NULL || staged->nrows == 0)
		return;

	/* the stream's partitions in this batch */
	walk = palloc0(sizeof(PartWalk) * Max(run->npw, 1));
	for (int i = 0; i < run->npw; i++)
	{
		PartWatermark *w = &run->pw[i];

		if ((int) w->part->stream != stream || !w->part->in_batch)
			continue;
		topic = w->part->topic;
		walk[nwalk].w = w;
		walk[nwalk].durable = w->from_offset;	/* durable, or a rebuild's replay position */
		walk[nwalk].has_before = w->has_max;
		walk[nwalk].max_before = w->max_event_time;
		walk[nwalk].cur_offset = -1;
		maxpart = Max(maxpart, w->part->partition);
		nwalk++;
	}
	if (nwalk == 0)
		return;
	bypart = palloc(sizeof(int) * (maxpart + 1));
	for (int p = 0; p <= maxpart; p++)
		bypart[p] = -1;
	for (int i = 0; i < nwalk; i++)
		bypart[walk[i].w->part->partition] = i;

	c.event_time = pl_column(staged->desc, "event_time");
	c.machine = pl_column(staged->desc, "machine");
	c.cmd_pid = pl_column(staged->desc, "cmd_pid");
	c.prediction = pl_column(staged->desc, "prediction");
	c.partition = pl_column(staged->desc, "kafka_partition");
	c.offset = pl_column(staged->desc, "kafka_offset");
	c.row_index = pl_column(staged->desc, "row_index");
	if (c.event_time < 0 || c.machine < 0 || c.cmd_pid < 0 || c.prediction < 0 ||
		c.partition < 0 || c.offset < 0 || c.row_index < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("staging table of stream \"%s\" lacks a column the pipeline reads",
						stream == STREAM_PROCESS ? "process" : "memory")));

	jrel = table_openrv(makeRangeVar("anomstream", (char *) jname, -1), RowExclusiveLock);
	jmap = join_column_map(RelationGetDescr(jrel), staged->desc, jname);
	delta_init(delta, RelationGetDescr(jrel), jname);
	tids = palloc(sizeof(ItemPointerData) * staged->nrows);
	bi = bulk_insert_begin(jrel);
	bulk_insert_capture_tids(bi, tids);
	memset(&late, 0, sizeof(late));

	for (int r = 0; r < staged->nrows; r++)
	{
		TupleTableSlot *slot = staged->slots[r];
		int32		partition = DatumGetInt32(slot->tts_values[c.partition]);
		int64		offset = DatumGetInt64(slot->tts_values[c.offset]);
		TimestampTz et;
		PartWalk   *pw;
		RowClass	cls = ROW_ON_TIME;
		TimestampTz wm = 0;
		Datum	   *jvalues;
		bool	   *jnulls;
		HeapTuple	tuple;
		StateEntry *e;

		if (partition < 0 || partition > maxpart || bypart[partition] < 0)
			elog(ERROR, "anomstream: staged rows of unassigned partition %s/%d",
				 stream == STREAM_PROCESS ? "process" : "memory", partition);
		pw = &walk[bypart[partition]];
		if (offset < pw->durable)
			continue;			/* refill: every consumer has it */
		if (offset != pw->cur_offset)
		{
			if (offset < pw->cur_offset)
				elog(ERROR, "anomstream: batch rows of partition %d out of offset order", partition);
			if (pw->has_cur && (!pw->has_before || pw->max_cur > pw->max_before))
			{
				pw->max_before = pw->max_cur;
				pw->has_before = true;
			}
			pw->cur_offset = offset;
			pw->has_cur = false;
		}
		pw->rows++;
		if (slot->tts_isnull[c.event_time])
			continue;			/* not late, takes part in nothing timed */
		et = DatumGetTimestampTz(slot->tts_values[c.event_time]);
		if (!pw->has_cur || et > pw->max_cur)
		{
			pw->max_cur = et;
			pw->has_cur = true;
		}
		if (!pw->has_batch_max || et > pw->batch_max)
		{
			pw->batch_max = et;
			pw->has_batch_max = true;
		}

		if (pw->has_before && et < pw->max_before - lateness_us)
		{
			cls = ROW_LATE_PARTITION;
			wm = pw->max_before - lateness_us;
			pw->late_partition++;
		}
		else if (et < run->watermark_old)
		{
			cls = ROW_LATE_PIPELINE;
			wm = run->watermark_old;
			pw->late_pipeline++;
		}
		if (cls != ROW_ON_TIME)
		{
			if (et >= run->gate_late)	/* a rebuild lists no late row before its horizon */
				late_add(&late, slot, &c, wm, cls);
			continue;
		}
		if (slot->tts_isnull[c.prediction] || DatumGetInt32(slot->tts_values[c.prediction]) != 1 ||
			slot->tts_isnull[c.machine] || slot->tts_isnull[c.cmd_pid])
			continue;
		delta_add(delta);
		jvalues = delta->values[delta->n - 1];
		jnulls = delta->nulls[delta->n - 1];
		for (int a = 0; a < delta->natts; a++)
		{
			if (jmap[a] == -1)
			{
				jvalues[a] = Int64GetDatum(run->batch_id);
				jnulls[a] = false;
			}
			else if (jmap[a] == -2)
			{
				jvalues[a] = (Datum) 0;
				jnulls[a] = true;
			}
			else
			{
				jvalues[a] = slot->tts_values[jmap[a]];
				jnulls[a] = slot->tts_isnull[jmap[a]];
			}
		}
		tuple = bulk_insert_row(bi, jvalues, jnulls);
		e = state_cache_entry(DatumGetInt32(jvalues[delta->att_machine]),
							  jvalues[delta->att_cmd_pid], true);
		delta->entries[delta->n - 1] = e;
		delta->rowidx[delta->n - 1] = state_cache_add_row(stream, e, tuple, et, run->batch_id);
	}
	run->attack_rows[stream] = (int64) bulk_insert_end(bi);
	for (int r = 0; r < delta->n; r++)	/* the n-th row inserted is the n-th of the delta */
		delta->entries[r]->rows[stream].rows[delta->rowidx[r]].tid = tids[r];
	table_close(jrel, NoLock);
	late_insert(&late, topic, run->batch_id);

	for (int i = 0; i < nwalk; i++)
	{
		PartWalk   *pw = &walk[i];
		PartWatermark *w = pw->w;

		if (pw->rows == 0)
			continue;			/* refill rows only */
		if (pw->has_batch_max)
		{
			if (!w->has_max || pw->batch_max > w->max_event_time)
			{
				w->max_event_time = pw->batch_max;
				w->has_max = true;
			}
			if (!run->has_event_time || pw->batch_max > run->max_event_time_seen)
				run->max_event_time_seen = pw->batch_max;
			run->has_event_time = true;
		}
		w->rows += pw->rows;
		w->late_partition += pw->late_partition;
		w->late_pipeline += pw->late_pipeline;
		w->has_last_data = true;
		w->last_data_at = run->now;
		w->dirty = true;
		run->rows += pw->rows;
		run->late_rows += pw->late_partition + pw->late_pipeline;
	}
}
