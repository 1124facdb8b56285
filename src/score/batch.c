/*-------------------------------------------------------------------------
 *
 * batch.c
 *	  Batch scoring of staged rows: the pipeline's hook anomstream_score_slots(), and
 *	  anomstream.score_rows(), which runs the same code over the rows of a query.
 *
 * Invariants: one XGBoost call per anomstream_score_slots() call; the model is the stream's
 * active version as of this transaction (a change committed elsewhere is seen at the next
 * transaction, i.e. the next micro-batch); prediction, probability and model_version are
 * written together, all three NULL when the stream has no model. Memory: the feature matrix
 * and outputs are palloc'd in CurrentMemoryContext, which the caller resets per batch.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "score/model_io.h"
#include "score/registry.h"
#include "score/score.h"

PG_FUNCTION_INFO_V1(anomstream_score_rows);

/*
 * Which stream a staging relation (or a partition of one) holds.
 */
static ScoreStream
stream_of_relation(Relation rel)
{
	const char *name = RelationGetRelationName(rel);

	if (strncmp(name, "process_", 8) == 0)
		return STREAM_PROCESS;
	if (strncmp(name, "memory_", 7) == 0)
		return STREAM_MEMORY;
	ereport(ERROR,
			(errcode(ERRCODE_WRONG_OBJECT_TYPE),
			 errmsg("\"%s\" is not a staging table of anomstream", name)));
	return STREAM_NONE;			/* keep compiler quiet */
}

/*
 * Attribute number of a column that must exist in the staging table.
 */
static AttrNumber
staging_column(TupleDesc desc, const char *name)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		if (!a->attisdropped && strcmp(NameStr(a->attname), name) == 0)
			return i + 1;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("staging table has no column \"%s\"", name)));
	return InvalidAttrNumber;	/* keep compiler quiet */
}

/*
 * The pipeline hook (see score.h).
 */
bool
anomstream_score_slots(Relation rel, TupleTableSlot **slots, int nslots)
{
	TupleDesc	desc = RelationGetDescr(rel);
	ScoreStream stream = stream_of_relation(rel);
	AttrNumber	a_pred = staging_column(desc, "prediction");
	AttrNumber	a_prob = staging_column(desc, "probability");
	AttrNumber	a_version = staging_column(desc, "model_version");
	int32		version = registry_active_version(stream);
	ScoreModel *m;
	FeatureProgram *p;
	float	   *x;
	float8	   *prob;
	int32	   *pred;
	int			width;

	for (int i = 0; i < nslots; i++)
	{
		if (!TTS_IS_VIRTUAL(slots[i]))
			elog(ERROR, "anomstream_score_slots needs virtual slots");
		slot_getallattrs(slots[i]);
	}
	if (version == 0)
	{
		for (int i = 0; i < nslots; i++)
		{
			slots[i]->tts_isnull[a_pred - 1] = true;
			slots[i]->tts_isnull[a_prob - 1] = true;
			slots[i]->tts_isnull[a_version - 1] = true;
		}
		return false;
	}
	m = registry_model(version);
	if (nslots == 0)
		return true;
	p = registry_program(m, desc, RelationGetRelid(rel));
	width = m->features->width;

	x = palloc(sizeof(float) * (Size) nslots * width);
	prob = palloc(sizeof(float8) * nslots);
	pred = palloc(sizeof(int32) * nslots);
	for (int i = 0; i < nslots; i++)
		features_encode_slot(p, slots[i], x + (Size) i * width);
	model_predict(m, x, nslots, prob, pred);

	for (int i = 0; i < nslots; i++)
	{
		TupleTableSlot *s = slots[i];

		s->tts_values[a_pred - 1] = Int32GetDatum(pred[i]);
		s->tts_isnull[a_pred - 1] = false;
		s->tts_values[a_prob - 1] = Float8GetDatum(prob[i]);
		s->tts_isnull[a_prob - 1] = false;
		s->tts_values[a_version - 1] = Int32GetDatum(version);
		s->tts_isnull[a_version - 1] = false;
	}
	return true;
}

/*
 * anomstream.score_rows(stream, query, batch_size, report_timing): the rows of query (the
 * stream's staging row type) scored batch by batch through anomstream_score_slots.
 */
Datum
anomstream_score_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ScoreStream stream;
	char	   *query;
	int			batch_size;
	bool		report_timing;
	Relation	rel;
	TupleDesc	desc;
	int		   *map;			/* query column i -> staging attribute index */
	int			nlive = 0;
	TupleTableSlot **slots;
	MemoryContext batch_cxt;
	MemoryContext old;
	SPIPlanPtr	plan;
	Portal		portal;
	int64		ord = 0;
	instr_time	start,
				elapsed;
	double		score_ms = 0;
	AttrNumber	a_pred,
				a_prob,
				a_version;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream, query and batch_size must not be NULL")));
	stream = stream_from_name(text_to_cstring(PG_GETARG_TEXT_PP(0)), false);
	query = text_to_cstring(PG_GETARG_TEXT_PP(1));
	batch_size = PG_GETARG_INT32(2);
	report_timing = PG_NARGS() > 3 && !PG_ARGISNULL(3) && PG_GETARG_BOOL(3);
	if (batch_size < 1 || batch_size > 1000000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be between 1 and 1000000")));

	InitMaterializedSRF(fcinfo, 0);
	rel = table_open(staging_relid(stream), AccessShareLock);
	desc = RelationGetDescr(rel);
	a_pred = staging_column(desc, "prediction");
	a_prob = staging_column(desc, "probability");
	a_version = staging_column(desc, "model_version");

	batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "anomstream score_rows batch",
									  ALLOCSET_DEFAULT_SIZES);
	map = palloc(sizeof(int) * desc->natts);
	for (int i = 0; i < desc->natts; i++)
		if (!TupleDescAttr(desc, i)->attisdropped)
			map[nlive++] = i;
	slots = palloc(sizeof(TupleTableSlot *) * batch_size);
	for (int i = 0; i < batch_size; i++)
		slots[i] = MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);

	SPI_connect();
	plan = SPI_prepare(query, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not prepare query: %s", SPI_result_code_string(SPI_result));
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);

	/* The query must return the staging table's live columns, in order. */
	{
		TupleDesc	qdesc = portal->tupDesc;

		if (qdesc == NULL || qdesc->natts != nlive)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("query must return rows of %s", RelationGetRelationName(rel)),
					 errdetail("The query returns %d columns, the table has %d.",
							   qdesc ? qdesc->natts : 0, nlive)));
		for (int c = 0; c < nlive; c++)
			if (TupleDescAttr(qdesc, c)->atttypid != TupleDescAttr(desc, map[c])->atttypid)
				ereport(ERROR,
						(errcode(ERRCODE_DATATYPE_MISMATCH),
						 errmsg("query must return rows of %s", RelationGetRelationName(rel)),
						 errdetail("Column %d of the query has type %s, column \"%s\" has type %s.",
								   c + 1, format_type_be(TupleDescAttr(qdesc, c)->atttypid),
								   NameStr(TupleDescAttr(desc, map[c])->attname),
								   format_type_be(TupleDescAttr(desc, map[c])->atttypid))));
	}

	for (;;)
	{
		TupleDesc	qdesc;
		uint64		n;

		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, batch_size);
		n = SPI_processed;
		if (n == 0)
			break;
		qdesc = SPI_tuptable->tupdesc;

		old = MemoryContextSwitchTo(batch_cxt);
		for (uint64 r = 0; r < n; r++)
		{
			TupleTableSlot *slot = slots[r];
			Datum	   *qv = palloc(sizeof(Datum) * nlive);
			bool	   *qn = palloc(sizeof(bool) * nlive);

			ExecClearTuple(slot);
			heap_deform_tuple(SPI_tuptable->vals[r], qdesc, qv, qn);
			for (int i = 0; i < desc->natts; i++)
				slot->tts_isnull[i] = true;
			for (int c = 0; c < nlive; c++)
			{
				slot->tts_values[map[c]] = qv[c];
				slot->tts_isnull[map[c]] = qn[c];
			}
			ExecStoreVirtualTuple(slot);
		}
		INSTR_TIME_SET_CURRENT(start);
		(void) anomstream_score_slots(rel, slots, (int) n);
		INSTR_TIME_SET_CURRENT(elapsed);
		INSTR_TIME_SUBTRACT(elapsed, start);
		score_ms += INSTR_TIME_GET_MILLISEC(elapsed);

		MemoryContextSwitchTo(old);
		for (uint64 r = 0; r < n; r++)
		{
			TupleTableSlot *slot = slots[r];
			Datum		values[4];
			bool		nulls[4];

			values[0] = Int64GetDatum(++ord);
			nulls[0] = false;
			values[1] = slot->tts_values[a_pred - 1];
			nulls[1] = slot->tts_isnull[a_pred - 1];
			values[2] = slot->tts_values[a_prob - 1];
			nulls[2] = slot->tts_isnull[a_prob - 1];
			values[3] = slot->tts_values[a_version - 1];
			nulls[3] = slot->tts_isnull[a_version - 1];
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
		SPI_freetuptable(SPI_tuptable);
		MemoryContextReset(batch_cxt);
	}
	SPI_cursor_close(portal);
	SPI_finish();
	for (int i = 0; i < batch_size; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	table_close(rel, AccessShareLock);
	if (report_timing)
		ereport(NOTICE,
				(errmsg("anomstream_score_slots scored %lld rows in %.3f ms",
						(long long) ord, score_ms)));
	return (Datum) 0;
}
