/*-------------------------------------------------------------------------
 *
 * spi_util.c
 *	  Small SPI helpers of the pipeline: run a statement checking its result, build
 *	  interval and array parameters, find a column by name.
 *
 * Invariants: every statement is set-based over one micro-batch (never one per input row);
 * values returned live in the caller's SPI procedure context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "pipeline/pipeline_int.h"
#include "util/stmt_cache.h"

/*
 * Run a statement (planned once per process); anything but the expected SPI result is an
 * internal error.
 */
uint64
pl_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
		int expect)
{
	return stmt_exec(sql, nargs, types, values, nulls, expect);
}

/*
 * An interval datum of ms milliseconds (no days or months, so date_bin accepts it).
 */
Datum
pl_interval_ms(int64 ms)
{
	Interval   *iv = palloc0(sizeof(Interval));

	iv->time = ms * INT64CONST(1000);
	return IntervalPGetDatum(iv);
}

/*
 * Column col (1-based) of result row row.
 */
Datum
pl_get(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

/*
 * A one-dimensional array of n datums of elemtype (nulls may be NULL: none).
 */
Datum
pl_array(Datum *d, bool *nulls, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(d, nulls, 1, dims, lbs, elemtype, typlen,
											  typbyval, typalign));
}

Datum
pl_int4_array(const int32 *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int32GetDatum(v[i]);
	return pl_array(d, NULL, n, INT4OID);
}

Datum
pl_int8_array(const int64 *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(v[i]);
	return pl_array(d, NULL, n, INT8OID);
}

Datum
pl_timestamptz_array(const TimestampTz *v, const bool *isnull, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(n, 1));

	for (int i = 0; i < n; i++)
	{
		d[i] = TimestampTzGetDatum(v[i]);
		nulls[i] = isnull[i];
	}
	return pl_array(d, nulls, n, TIMESTAMPTZOID);
}

/*
 * 0-based number of the live column name of desc, -1 if there is none.
 */
int
pl_column(TupleDesc desc, const char *name)
{
	for (int a = 0; a < desc->natts; a++)
		if (!TupleDescAttr(desc, a)->attisdropped &&
			strcmp(NameStr(TupleDescAttr(desc, a)->attname), name) == 0)
			return a;
	return -1;
}
