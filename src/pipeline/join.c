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
 * so once r.event_time + join_bound <= W it is deleted (by the TIDs the worker's copy of
 * the state holds, state_cache.c; the buffers have no index).
 * While a rebuild replays, only pairs whose later row is at or after its `from` are
 * written (rebuild.c): the earlier ones are still in the table.
 *
 * The batch's side comes from memory (run->delta, late.c); the other side from the
 * worker's copy of the buffers by (machine, cmd_pid) (state_cache.c), so the work follows
 * the batch and the rows of its keys, not the buffer; pairs of two rows of this batch are
 * found from the process side only (a memory row's partners of this batch are skipped). Pairs are written
 * through bulk_insert.c, like COPY: no per-row executor, one WAL record per page; row
 * triggers on detected_attacks do not fire (LISTEN anomstream_detected or a sink follows
 * the pairs instead).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "ingest/bulk_insert.h"
#include "pipeline/pipeline_int.h"

/* Where a column of detected_attacks comes from */
typedef enum PairSource
{
	FROM_PROCESS,
	FROM_MEMORY,
	FROM_PROCESSING_TIME,
	FROM_BATCH_ID,
	FROM_NOTHING				/* a dropped column */
} PairSource;

typedef struct PairColumn
{
	PairSource	source;
	int			attno;			/* 0-based, in the buffer of the source */
} PairColumn;

/*
 * Map each column of detected_attacks to its source: "p_x" is column x (else p_x) of the
 * process buffer, "m_x" of the memory buffer, an unprefixed name the buffer that has it.
 */
static PairColumn *
pair_columns(TupleDesc ddesc, TupleDesc pdesc, TupleDesc mdesc)
{
	PairColumn *map = palloc(sizeof(PairColumn) * ddesc->natts);

	for (int a = 0; a < ddesc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(ddesc, a);
		const char *name = NameStr(att->attname);
		TupleDesc	src = NULL;

		map[a].attno = -1;
		if (att->attisdropped)
			map[a].source = FROM_NOTHING;
		else if (strcmp(name, "processing_time") == 0)
			map[a].source = FROM_PROCESSING_TIME;
		else if (strcmp(name, "batch_id") == 0)
			map[a].source = FROM_BATCH_ID;
		else if (strncmp(name, "p_", 2) == 0 &&
				 ((map[a].attno = pl_column(pdesc, name + 2)) >= 0 ||
				  (map[a].attno = pl_column(pdesc, name)) >= 0))
			map[a].source = FROM_PROCESS, src = pdesc;
		else if (strncmp(name, "m_", 2) == 0 &&
				 ((map[a].attno = pl_column(mdesc, name + 2)) >= 0 ||
				  (map[a].attno = pl_column(mdesc, name)) >= 0))
			map[a].source = FROM_MEMORY, src = mdesc;
		else if ((map[a].attno = pl_column(pdesc, name)) >= 0)
			map[a].source = FROM_PROCESS, src = pdesc;
		else if ((map[a].attno = pl_column(mdesc, name)) >= 0)
			map[a].source = FROM_MEMORY, src = mdesc;
		else
			elog(ERROR, "anomstream: column \"%s\" of detected_attacks has no join buffer column",
				 name);
		if (src != NULL && TupleDescAttr(src, map[a].attno)->atttypid != att->atttypid)
			elog(ERROR, "anomstream: column \"%s\" of detected_attacks differs in type from its join buffer column",
				 name);
	}
	return map;
}

/*
 * Insert this batch's pairs.
 */
void
join_emit_pairs(PipelineRun *run)
{
	int64		bound_us = (int64) run->s.join_bound_ms * 1000;
	Oid			nsp = get_namespace_oid("anomstream", false);
	Relation	bufs[2];
	TupleDesc	descs[2];
	Relation	drel;
	PairColumn *map;
	BulkInserter *bi;
	int			natts;
	Datum	   *values;
	bool	   *nulls;
	Datum	   *ov[2];
	bool	   *on[2];
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	if (run->delta[STREAM_PROCESS].n == 0 && run->delta[STREAM_MEMORY].n == 0)
		return;
	bufs[STREAM_PROCESS] = table_open(get_relname_relid("join_process", nsp), AccessShareLock);
	bufs[STREAM_MEMORY] = table_open(get_relname_relid("join_memory", nsp), AccessShareLock);
	drel = table_open(get_relname_relid("detected_attacks", nsp), RowExclusiveLock);
	natts = RelationGetDescr(drel)->natts;
	for (int s = 0; s < 2; s++)
	{
		descs[s] = RelationGetDescr(bufs[s]);
		ov[s] = palloc(sizeof(Datum) * descs[s]->natts);
		on[s] = palloc(sizeof(bool) * descs[s]->natts);
	}
	map = pair_columns(RelationGetDescr(drel), descs[STREAM_PROCESS], descs[STREAM_MEMORY]);
	values = palloc(sizeof(Datum) * natts);	/* the inserter copies them per row */
	nulls = palloc(sizeof(bool) * natts);
	bi = bulk_insert_begin(drel);

	/* the process rows of the batch against all memory rows, then the reverse */
	for (int side = STREAM_PROCESS; side <= STREAM_MEMORY; side++)
	{
		DeltaRows  *d = &run->delta[side];
		int			other = side == STREAM_PROCESS ? STREAM_MEMORY : STREAM_PROCESS;

		for (int r = 0; r < d->n; r++)
		{
			Datum	   *v = d->values[r];
			TimestampTz et = DatumGetTimestampTz(v[d->att_event_time]);
			StateRows  *partners = &d->entries[r]->rows[other];

			if (TIMESTAMP_NOT_FINITE(et))
				continue;		/* (et - bound, et + bound) holds no time */
			for (int i = 0; i < partners->n; i++)
			{
				StateRow   *o = &partners->rows[i];
				Datum	   *pv,
						   *mv;
				bool	   *pn,
						   *mn;

				if (o->event_time <= et - bound_us || o->event_time >= et + bound_us)
					continue;
				if (side == STREAM_MEMORY && o->batch_id == run->batch_id)
					continue;	/* found from the process side */
				if (Max(et, o->event_time) < run->gate_pairs)
					continue;	/* a rebuild keeps this pair */
				/* pointers into the copy's tuple: it outlives the insert */
				heap_deform_tuple(o->tuple, descs[other], ov[other], on[other]);
				if (side == STREAM_PROCESS)
					pv = v, pn = d->nulls[r], mv = ov[other], mn = on[other];
				else
					pv = ov[other], pn = on[other], mv = v, mn = d->nulls[r];
				for (int a = 0; a < natts; a++)
				{
					switch (map[a].source)
					{
						case FROM_PROCESS:
							values[a] = pv[map[a].attno];
							nulls[a] = pn[map[a].attno];
							break;
						case FROM_MEMORY:
							values[a] = mv[map[a].attno];
							nulls[a] = mn[map[a].attno];
							break;
						case FROM_PROCESSING_TIME:
							values[a] = TimestampTzGetDatum(now);
							nulls[a] = false;
							break;
						case FROM_BATCH_ID:
							values[a] = Int64GetDatum(run->batch_id);
							nulls[a] = false;
							break;
						case FROM_NOTHING:
							values[a] = (Datum) 0;
							nulls[a] = true;
							break;
					}
				}
				bulk_insert_row(bi, values, nulls);
			}
		}
	}
	run->pairs = (int64) bulk_insert_end(bi);
	table_close(drel, NoLock);
	table_close(bufs[STREAM_PROCESS], NoLock);
	table_close(bufs[STREAM_MEMORY], NoLock);
}

/*
 * Delete buffered rows the new watermark made unreachable.
 */
void
join_evict(PipelineRun *run)
{
	Oid			types[1] = {TIMESTAMPTZOID};
	Datum		values[1];
	TimestampTz limit;

	if (TIMESTAMP_NOT_FINITE(run->watermark_new) || run->watermark_new == run->watermark_old)
		return;
	limit = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
													TimestampTzGetDatum(run->watermark_new),
													run->s.join_bound));
	if (!state_cache_check())
	{
		/* no copy (a tick after an error or a rebuild): by a scan */
		values[0] = TimestampTzGetDatum(limit);
		run->evicted[0] = pl_exec("DELETE FROM anomstream.join_process WHERE event_time <= $1",
								  1, types, values, NULL, SPI_OK_DELETE);
		run->evicted[1] = pl_exec("DELETE FROM anomstream.join_memory WHERE event_time <= $1",
								  1, types, values, NULL, SPI_OK_DELETE);
		return;
	}
	run->evicted[0] = state_cache_delete_evicted(STATE_JOIN_PROCESS, limit);
	run->evicted[1] = state_cache_delete_evicted(STATE_JOIN_MEMORY, limit);
}
