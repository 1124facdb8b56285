/*-------------------------------------------------------------------------
 *
 * staging.c
 *	  Insert one micro-batch of decoded rows into a staging table, COPY's way.
 *
 * Each stream's rows are scored first, all in one call (score/batch.c fills prediction,
 * probability and model_version). Rows go through table_multi_insert with a BulkInsertState in groups of
 * STAGING_INSERT_GROUP, and index entries (BRIN only) through ExecInsertIndexTuples: no SPI,
 * no per-row planning. Slots are created once per batch in the caller's per-batch memory
 * context, which the caller resets after the transaction, so nothing survives the batch.
 * Columns are matched by name, so the table's column order is free and added columns stay
 * NULL. Must run inside the micro-batch transaction that also moves the staged positions:
 * staging rows and staged positions are written, and vanish in a crash, together.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/heapam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "utils/rel.h"

#include "ingest/decode_pg.h"
#include "ingest/staging.h"
#include "score/score.h"

#define STAGING_INSERT_GROUP 1000	/* rows per table_multi_insert call, as COPY */

/*
 * Name of a stream's staging table (in schema anomstream).
 */
const char *
staging_table_name(DecodeStream stream)
{
	return stream == STREAM_PROCESS ? "process_events" : "memory_events";
}

/*
 * Insert nrows valid rows of one stream, stamped with batch_id.
 */
void
staging_insert(DecodeStream stream, const StagedRow *rows, int nrows, int64 batch_id)
{
	Relation	rel;
	TupleDesc	tupdesc;
	TupleDesc	slotdesc;
	DecodeColumnMap map;
	TupleTableSlot **slots;
	BulkInsertState bistate;
	EState	   *estate;
	ResultRelInfo *rri;
	CommandId	cid;

	if (nrows == 0)
		return;

	rel = table_openrv(makeRangeVar("anomstream", (char *) staging_table_name(stream), -1),
					   RowExclusiveLock);
	tupdesc = RelationGetDescr(rel);
	decode_map_columns(tupdesc, stream, &map);
	if (map.batch_id == 0 || map.kafka_partition == 0 || map.kafka_offset == 0 ||
		map.row_index == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("staging table \"anomstream.%s\" lacks its position columns",
						staging_table_name(stream))));

	/*
	 * Fill one virtual slot per row. The slots share an unpinned copy of the descriptor:
	 * slots on the relation's own (reference-counted) descriptor would each register with
	 * the resource owner, which costs quadratic time over a large batch.
	 */
	slotdesc = CreateTupleDescCopy(tupdesc);
	slots = palloc(sizeof(TupleTableSlot *) * nrows);
	for (int i = 0; i < nrows; i++)
	{
		TupleTableSlot *slot = MakeTupleTableSlot(slotdesc, &TTSOpsVirtual);
		const StagedRow *sr = &rows[i];

		ExecClearTuple(slot);
		memset(slot->tts_isnull, true, sizeof(bool) * tupdesc->natts);
		decode_fill_row(&map, stream, sr->row, sr->event_time,
						slot->tts_values, slot->tts_isnull);
		slot->tts_values[map.batch_id - 1] = Int64GetDatum(batch_id);
		slot->tts_isnull[map.batch_id - 1] = false;
		slot->tts_values[map.kafka_partition - 1] = Int32GetDatum(sr->partition);
		slot->tts_isnull[map.kafka_partition - 1] = false;
		slot->tts_values[map.kafka_offset - 1] = Int64GetDatum(sr->offset);
		slot->tts_isnull[map.kafka_offset - 1] = false;
		ExecStoreVirtualTuple(slot);
		slots[i] = slot;
	}

	/* Score the whole batch of this stream in one XGBoost call (DESIGN.md §4). */
	anomstream_score_slots(rel, slots, nrows);

	/* Insert in groups, then the index entries of each group. */
	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	bistate = GetBulkInsertState();
	cid = GetCurrentCommandId(true);
	for (int start = 0; start < nrows; start += STAGING_INSERT_GROUP)
	{
		int			n = Min(STAGING_INSERT_GROUP, nrows - start);

		table_multi_insert(rel, &slots[start], n, cid, 0, bistate);
		for (int i = start; i < start + n; i++)
		{
			if (rri->ri_NumIndices > 0)
			{
				List	   *recheck;

				recheck = ExecInsertIndexTuples(rri, slots[i], estate, false, false,
												NULL, NIL);
				list_free(recheck);
			}
			ExecDropSingleTupleTableSlot(slots[i]);
		}
		ResetPerTupleExprContext(estate);
	}
	FreeBulkInsertState(bistate);
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
}
