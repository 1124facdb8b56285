/*-------------------------------------------------------------------------
 *
 * staging.c
 *	  Insert one micro-batch of decoded rows into a staging table, COPY's way.
 *
 * Each stream's rows are scored first, all in one call (score/batch.c fills prediction,
 * probability and model_version). Rows go through bulk_insert.c (table_multi_insert in
 * groups, index entries, constraints checked as COPY does): no SPI, no per-row planning. Slots are created once per batch in the caller's per-batch memory
 * context, which the caller resets after the transaction, so nothing survives the batch.
 * Columns are matched by name, so the table's column order is free and added columns stay
 * NULL. Must run inside the micro-batch transaction that also moves the staged positions:
 * staging rows and staged positions are written, and vanish in a crash, together.
 *
 * The BRIN index on batch_id is summarized on demand: only a step that reads staging by
 * batch_id (a keyed operator, a sink) pays for it, once per batch, so ingestion with
 * neither on never reads back what it wrote.
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
#include "storage/lmgr.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "ingest/bulk_insert.h"
#include "ingest/decode_pg.h"
#include "ingest/staging.h"
#include "score/score.h"

/*
 * Name of a stream's staging table (in schema anomstream).
 */
const char *
staging_table_name(DecodeStream stream)
{
	return stream == STREAM_PROCESS ? "process_events" : "memory_events";
}

/*
 * Summarize one staging table's new BRIN ranges, unless VACUUM (or another summarizer) holds
 * the table's ShareUpdateExclusiveLock: waiting would stall the micro-batch until the
 * deadlock timeout cancels autovacuum, and a range left unsummarized costs only a longer scan.
 */
static void
summarize_stream(DecodeStream stream)
{
	Oid			nsp = get_namespace_oid("anomstream", false);
	Oid			heap = get_relname_relid(staging_table_name(stream), nsp);
	Oid			index = get_relname_relid(psprintf("%s_batch_brin", staging_table_name(stream)), nsp);

	if (!OidIsValid(heap) || !OidIsValid(index))
		return;					/* no BRIN index: nothing to summarize */
	if (!ConditionalLockRelationOid(heap, ShareUpdateExclusiveLock))
		return;
	(void) DirectFunctionCall1(brin_summarize_new_values, ObjectIdGetDatum(index));
}

/*
 * Summarize the BRIN ranges written since the last summary, so a scan for batch_id finds
 * the batch's rows without reading every range written since then. At most once per batch
 * (batch ids are never reused, also after an abort); batch_id 0 always summarizes. A table
 * that VACUUM is working on is skipped (see summarize_stream).
 */
void
staging_summarize(int64 batch_id)
{
	static int64 summarized_batch = 0;

	if (batch_id != 0 && batch_id == summarized_batch)
		return;
	for (int s = 0; s < DECODE_NSTREAMS; s++)
		summarize_stream((DecodeStream) s);
	summarized_batch = batch_id;
}

/*
 * Insert nrows valid rows of one stream, stamped with batch_id. The scored virtual slots
 * stay in the caller's per-batch context and are described in *out, so later steps of the
 * same micro-batch read the batch from memory instead of from the table.
 */
void
staging_insert(DecodeStream stream, const StagedRow *rows, int nrows, int64 batch_id,
			   StagedSlots *out)
{
	Relation	rel;
	TupleDesc	tupdesc;
	TupleDesc	slotdesc;
	DecodeColumnMap map;
	TupleTableSlot **slots;
	BulkInserter *bi;
	AttrNumber	a_kafka_ts;

	memset(out, 0, sizeof(*out));
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

	a_kafka_ts = 0;
	for (int a = 0; a < tupdesc->natts; a++)
		if (strcmp(NameStr(TupleDescAttr(tupdesc, a)->attname), "kafka_timestamp") == 0)
			a_kafka_ts = a + 1;

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
		if (a_kafka_ts && sr->kafka_timestamp != DT_NOBEGIN)
		{
			slot->tts_values[a_kafka_ts - 1] = TimestampTzGetDatum(sr->kafka_timestamp);
			slot->tts_isnull[a_kafka_ts - 1] = false;
		}
		ExecStoreVirtualTuple(slot);
		slots[i] = slot;
	}

	/* Score the whole batch of this stream in one XGBoost call (DESIGN.md §4). */
	anomstream_score_slots(rel, slots, nrows);

	bi = bulk_insert_begin(rel);
	for (int i = 0; i < nrows; i++)
		bulk_insert_row(bi, slots[i]->tts_values, slots[i]->tts_isnull);
	(void) bulk_insert_end(bi);
	table_close(rel, NoLock);

	out->desc = slotdesc;
	out->slots = slots;
	out->nrows = nrows;
}
