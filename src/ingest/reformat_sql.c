/*-------------------------------------------------------------------------
 *
 * reformat_sql.c
 *	  SQL functions anomstream.reformat(text) and anomstream.try_reformat(text).
 *
 * Both call reformat_parse(), the code the worker uses for the memory unit columns.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "ingest/reformat.h"

PG_FUNCTION_INFO_V1(anomstream_reformat);
PG_FUNCTION_INFO_V1(anomstream_try_reformat);

/*
 * anomstream.reformat(text): the number, or SQLSTATE 22P02.
 */
Datum
anomstream_reformat(PG_FUNCTION_ARGS)
{
	text	   *arg = PG_GETARG_TEXT_PP(0);
	double		value;

	if (!reformat_parse(VARDATA_ANY(arg), VARSIZE_ANY_EXHDR(arg), &value))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for anomstream.reformat: \"%s\"",
						text_to_cstring(arg)),
				 errdetail("Expected a decimal number optionally followed by one of K, M, G, T, P.")));
	PG_RETURN_FLOAT8(value);
}

/*
 * anomstream.try_reformat(text): the number, or NULL.
 */
Datum
anomstream_try_reformat(PG_FUNCTION_ARGS)
{
	text	   *arg = PG_GETARG_TEXT_PP(0);
	double		value;

	if (!reformat_parse(VARDATA_ANY(arg), VARSIZE_ANY_EXHDR(arg), &value))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(value);
}
