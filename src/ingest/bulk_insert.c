/*-------------------------------------------------------------------------
 *
 * bulk_insert.c
 *	  COPY-style bulk insert of already-formed rows into one table.
 *
 * The caller opens and locks the relation, hands over each row as values and nulls in the
 * relation's column order, and ends the insert before closing the relation. Rows are formed
 * into heap tuples at once (so the caller may reuse its arrays), buffered, and written in
 * groups of BULK_GROUP through table_multi_insert with a BulkInsertState; the index entries
 * of each group follow through ExecInsertIndexTuples. No SPI, no planning, no per-row
 * executor overhead.
 *
 * Invariants: values passed by reference must stay valid until bulk_insert_end (the slots
 * keep them, so index entries and constraint checks need not deform the formed tuples);
 * like COPY FROM, NOT NULL and CHECK constraints are checked (ExecConstraints)
 * and index entries made (a unique index raises on a duplicate, as an INSERT would);
 * unlike it, no triggers fire and no defaults are evaluated: the tables written this way
 * are the extension's own, every column filled or NULL by design. All memory is allocated
 * in the caller's current context, which the caller resets per batch.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "nodes/parsenodes.h"
#include "utils/acl.h"
#include "utils/rel.h"

#include "ingest/bulk_insert.h"

#define BULK_GROUP 1000				/* rows per table_multi_insert call, as COPY */

struct BulkInserter
{
	Relation	rel;
	TupleDesc	desc;			/* an unpinned copy (see bulk_insert_begin) */
	EState	   *estate;
	ResultRelInfo *rri;
	BulkInsertState bistate;
	CommandId	cid;
	ItemPointerData *tids;		/* where each row went, or NULL */
	TupleTableSlot *slots[BULK_GROUP];
	int			nbuffered;
	uint64		inserted;
};

/*
 * Start a bulk insert into rel (opened with RowExclusiveLock by the caller).
 */
BulkInserter *
bulk_insert_begin(Relation rel)
{
	BulkInserter *bi = palloc0(sizeof(BulkInserter));
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	bi->rel = rel;

	/*
	 * Slots on the relation's own, reference-counted descriptor would each register with
	 * the resource owner, which costs quadratic time over a large batch.
	 */
	bi->desc = CreateTupleDescCopy(RelationGetDescr(rel));
	bi->estate = CreateExecutorState();
	/* a range table, so that constraint errors can describe the row as core does */
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	rte->requiredPerms = ACL_INSERT;
	ExecInitRangeTable(bi->estate, list_make1(rte));
	bi->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(bi->rri, rel, 1, NULL, 0);
	ExecOpenIndices(bi->rri, false);
	bi->bistate = GetBulkInsertState();
	bi->cid = GetCurrentCommandId(true);
	return bi;
}

/*
 * Write the buffered rows and their index entries.
 */
static void
bulk_flush(BulkInserter *bi)
{
	if (bi->nbuffered == 0)
		return;
	table_multi_insert(bi->rel, bi->slots, bi->nbuffered, bi->cid, 0, bi->bistate);
	for (int i = 0; i < bi->nbuffered; i++)
	{
		if (bi->tids)
			bi->tids[bi->inserted + i] = bi->slots[i]->tts_tid;
		if (bi->rri->ri_NumIndices > 0)
			list_free(ExecInsertIndexTuples(bi->rri, bi->slots[i], bi->estate, false, false,
											NULL, NIL));
		ExecClearTuple(bi->slots[i]);
	}
	ResetPerTupleExprContext(bi->estate);
	bi->inserted += bi->nbuffered;
	bi->nbuffered = 0;
}

/*
 * Record where each row goes: the n-th row inserted gets its TID in tids[n], filled when
 * its group is written (at the latest by bulk_insert_end).
 */
void
bulk_insert_capture_tids(BulkInserter *bi, ItemPointerData *tids)
{
	Assert(bi->inserted == 0 && bi->nbuffered == 0);
	bi->tids = tids;
}

/*
 * Add one row (values and nulls in the relation's column order). Returns the tuple formed
 * from them, valid until the next call or bulk_insert_end.
 */
HeapTuple
bulk_insert_row(BulkInserter *bi, Datum *values, bool *isnull)
{
	TupleTableSlot *slot;
	HeapTuple	tuple;

	if (bi->nbuffered == BULK_GROUP)
		bulk_flush(bi);
	if (bi->slots[bi->nbuffered] == NULL)
		bi->slots[bi->nbuffered] = MakeTupleTableSlot(bi->desc, &TTSOpsHeapTuple);
	slot = bi->slots[bi->nbuffered];
	tuple = heap_form_tuple(bi->desc, values, isnull);
	ExecStoreHeapTuple(tuple, slot, true);

	/*
	 * The slot also carries the values it was formed from, marked valid, so constraint
	 * checks and index entries read them instead of deforming the tuple again.
	 */
	memcpy(slot->tts_values, values, sizeof(Datum) * bi->desc->natts);
	memcpy(slot->tts_isnull, isnull, sizeof(bool) * bi->desc->natts);
	slot->tts_nvalid = bi->desc->natts;
	if (bi->rel->rd_att->constr)
		ExecConstraints(bi->rri, slot, bi->estate);
	bi->nbuffered++;
	return tuple;
}

/*
 * Write what is buffered and release the executor state; returns the rows inserted.
 */
uint64
bulk_insert_end(BulkInserter *bi)
{
	uint64		n;

	bulk_flush(bi);
	FreeBulkInsertState(bi->bistate);
	ExecCloseIndices(bi->rri);
	FreeExecutorState(bi->estate);
	n = bi->inserted;
	pfree(bi);
	return n;
}
