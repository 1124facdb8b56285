/*-------------------------------------------------------------------------
 *
 * predict_sql.c
 *	  anomstream.predict() for one row, one feature vector or an array of rows, and
 *	  anomstream.encode_features().
 *
 * Invariants: each call site remembers in fn_extra which version its model name resolved to
 * and the loaded model, valid while registry_epoch is unchanged (any registry invalidation or
 * cache eviction changes it). Without a version argument a name means its newest version.
 * Rows are encoded by the same feature programs the pipeline uses, and scored by
 * model_predict(), so predict() over a staging row equals what the pipeline stored.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "score/registry.h"

PG_FUNCTION_INFO_V1(anomstream_predict_row);
PG_FUNCTION_INFO_V1(anomstream_predict_vector);
PG_FUNCTION_INFO_V1(anomstream_predict_rows);
PG_FUNCTION_INFO_V1(anomstream_encode_features);

typedef struct PredictCache
{
	uint64		epoch;			/* registry_epoch when model was resolved */
	text	   *name;			/* model name argument it was resolved for */
	bool		has_version;
	int32		version_arg;
	ScoreModel *model;
	TupleDesc	result_desc;	/* anomstream.prediction, blessed */
	FeatureProgram *program;	/* program the slot below was made for */
	TupleTableSlot *slot;
	float	   *buf;			/* one encoded row */
	int			buflen;
} PredictCache;

/*
 * The call site's cache, created on first call.
 */
static PredictCache *
predict_cache(FunctionCallInfo fcinfo)
{
	PredictCache *c = (PredictCache *) fcinfo->flinfo->fn_extra;

	if (c == NULL)
	{
		c = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(PredictCache));
		fcinfo->flinfo->fn_extra = c;
	}
	return c;
}

/*
 * The model for (name, version) arguments 0 and 2, resolved once per registry epoch.
 */
static ScoreModel *
resolve_model(FunctionCallInfo fcinfo, PredictCache *c)
{
	text	   *name;
	bool		has_version = PG_NARGS() > 2 && !PG_ARGISNULL(2);
	int32		version_arg = has_version ? PG_GETARG_INT32(2) : 0;
	int32		version;
	char	   *cname;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model name must not be NULL")));
	name = PG_GETARG_TEXT_PP(0);
	if (c->model != NULL && c->epoch == registry_epoch &&
		c->has_version == has_version && c->version_arg == version_arg &&
		VARSIZE_ANY_EXHDR(c->name) == VARSIZE_ANY_EXHDR(name) &&
		memcmp(VARDATA_ANY(c->name), VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name)) == 0)
		return c->model;

	cname = text_to_cstring(name);
	version = has_version ? version_arg : registry_latest_version(cname);
	c->model = registry_model(version);
	if (strcmp(c->model->name, cname) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" has no version %d", cname, version),
				 errdetail("Version %d belongs to model \"%s\".", version, c->model->name)));
	if (c->name)
		pfree(c->name);
	c->name = (text *) MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, VARSIZE_ANY(name));
	memcpy(c->name, name, VARSIZE_ANY(name));
	c->has_version = has_version;
	c->version_arg = version_arg;
	c->epoch = registry_epoch;
	if (c->buflen < c->model->features->width)
	{
		if (c->buf)
			pfree(c->buf);
		c->buflen = c->model->features->width;
		c->buf = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(float) * c->buflen);
	}
	return c->model;
}

/*
 * Encode one composite datum into out, with the model's program for its row type.
 */
static void
encode_record(FunctionCallInfo fcinfo, PredictCache *c, ScoreModel *m, HeapTupleHeader td,
			  float *out)
{
	Oid			typid = HeapTupleHeaderGetTypeId(td);
	int32		typmod = HeapTupleHeaderGetTypMod(td);
	TupleDesc	desc = lookup_rowtype_tupdesc(typid, typmod);
	FeatureProgram *p;
	HeapTupleData tuple;

	p = registry_program(m, desc, get_typ_typrelid(typid));
	if (c->program != p || c->slot == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		if (c->slot)
			ExecDropSingleTupleTableSlot(c->slot);
		c->slot = MakeSingleTupleTableSlot(CreateTupleDescCopy(desc), &TTSOpsHeapTuple);
		c->program = p;
		MemoryContextSwitchTo(old);
	}
	ReleaseTupleDesc(desc);

	tuple.t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = td;
	ExecStoreHeapTuple(&tuple, c->slot, false);
	features_encode_slot(p, c->slot, out);
	ExecClearTuple(c->slot);
}

/*
 * An anomstream.prediction datum.
 */
static Datum
prediction_datum(FunctionCallInfo fcinfo, PredictCache *c, float8 prob, int32 pred, int32 version,
				 bool isnull)
{
	Datum		values[3];
	bool		nulls[3] = {isnull, isnull, isnull};

	if (c->result_desc == NULL)
	{
		TupleDesc	desc;
		MemoryContext old;

		if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "return type must be a row type");
		old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
		c->result_desc = BlessTupleDesc(CreateTupleDescCopy(desc));
		MemoryContextSwitchTo(old);
	}
	values[0] = Float8GetDatum(prob);
	values[1] = Int32GetDatum(pred);
	values[2] = Int32GetDatum(version);
	return HeapTupleGetDatum(heap_form_tuple(c->result_desc, values, nulls));
}

/*
 * anomstream.predict(model text, row record, version int)
 */
Datum
anomstream_predict_row(PG_FUNCTION_ARGS)
{
	PredictCache *c = predict_cache(fcinfo);
	ScoreModel *m = resolve_model(fcinfo, c);
	float8		prob;
	int32		pred;

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	encode_record(fcinfo, c, m, PG_GETARG_HEAPTUPLEHEADER(1), c->buf);
	model_predict(m, c->buf, 1, &prob, &pred);
	PG_RETURN_DATUM(prediction_datum(fcinfo, c, prob, pred, m->version, false));
}

/*
 * anomstream.predict(model text, features float8[], version int)
 */
Datum
anomstream_predict_vector(PG_FUNCTION_ARGS)
{
	PredictCache *c = predict_cache(fcinfo);
	ScoreModel *m = resolve_model(fcinfo, c);
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	float8		prob;
	int32		pred;

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	arr = PG_GETARG_ARRAYTYPE_P(1);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("feature vector must be one-dimensional"),
				 errhint("Score several vectors with anomstream.predict(model, rows) over an array of rows, or one call per vector.")));
	deconstruct_array(arr, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, &nulls, &n);
	if (n != m->features->width)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("feature vector has %d values but model \"%s\" version %d expects %d",
						n, m->name, m->version, m->features->width)));
	for (int i = 0; i < n; i++)
		c->buf[i] = nulls[i] ? NAN : (float) DatumGetFloat8(elems[i]);
	model_predict(m, c->buf, 1, &prob, &pred);
	PG_RETURN_DATUM(prediction_datum(fcinfo, c, prob, pred, m->version, false));
}

/*
 * anomstream.predict(model text, rows anyarray, version int): one XGBoost call for all rows.
 */
Datum
anomstream_predict_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PredictCache *c = predict_cache(fcinfo);
	ScoreModel *m = resolve_model(fcinfo, c);
	ArrayType  *arr;
	Oid			elemtype;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			width = m->features->width;
	float	   *x;
	float8	   *prob;
	int32	   *pred;
	int			k = 0;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(1))
		return (Datum) 0;
	arr = PG_GETARG_ARRAYTYPE_P(1);
	elemtype = ARR_ELEMTYPE(arr);
	if (!type_is_rowtype(elemtype))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("rows must be an array of rows, not %s", format_type_be(get_array_type(elemtype))),
				 errhint("For example: anomstream.predict('process_default', ARRAY(SELECT e FROM anomstream.process_events e)).")));
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(arr, elemtype, typlen, typbyval, typalign, &elems, &nulls, &n);

	x = palloc(sizeof(float) * (Size) Max(n, 1) * width);
	for (int i = 0; i < n; i++)
		if (!nulls[i])
			encode_record(fcinfo, c, m, DatumGetHeapTupleHeader(elems[i]), x + (Size) (k++) * width);
	prob = palloc(sizeof(float8) * Max(k, 1));
	pred = palloc(sizeof(int32) * Max(k, 1));
	model_predict(m, x, k, prob, pred);

	k = 0;
	for (int i = 0; i < n; i++)
	{
		Datum		values[3];
		bool		rnulls[3] = {nulls[i], nulls[i], nulls[i]};

		if (!nulls[i])
		{
			values[0] = Float8GetDatum(prob[k]);
			values[1] = Int32GetDatum(pred[k]);
			values[2] = Int32GetDatum(m->version);
			k++;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, rnulls);
	}
	return (Datum) 0;
}

/*
 * anomstream.encode_features(model text, row record, version int) -> float4[]
 */
Datum
anomstream_encode_features(PG_FUNCTION_ARGS)
{
	PredictCache *c = predict_cache(fcinfo);
	ScoreModel *m = resolve_model(fcinfo, c);
	int			width = m->features->width;
	Datum	   *elems;
	bool	   *nulls;
	int			dims[1] = {width};
	int			lbs[1] = {1};

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	encode_record(fcinfo, c, m, PG_GETARG_HEAPTUPLEHEADER(1), c->buf);
	elems = palloc(sizeof(Datum) * width);
	nulls = palloc(sizeof(bool) * width);
	for (int i = 0; i < width; i++)
	{
		nulls[i] = isnan(c->buf[i]);
		elems[i] = Float4GetDatum(c->buf[i]);
	}
	PG_RETURN_ARRAYTYPE_P(construct_md_array(elems, nulls, 1, dims, lbs, FLOAT4OID, 4, true,
											 TYPALIGN_INT));
}
