/*-------------------------------------------------------------------------
 *
 * decode_sql.c
 *	  anomstream.decode(topic, message, kafka_timestamp): the worker's decoder from SQL.
 *
 * Runs decode_message() and decode_check_encoding(), exactly the worker's steps, and returns
 * one anomstream.decoded_row per data element; a row the worker would dead-letter has its
 * reason in column error. A message the worker would dead-letter as a whole raises an error
 * whose message is the dead-letter reason (SQLSTATE 22P02, or 22007/22008 for ts).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "ingest/decode_pg.h"

PG_FUNCTION_INFO_V1(anomstream_decode);

/*
 * Memory-context reset callback: the arena is malloc'd, so an error must still free it.
 */
static void
free_arena(void *arg)
{
	decode_arena_destroy((DecodeArena *) arg);
}

/*
 * SQLSTATE for a message-level dead-letter reason.
 */
static int
message_error_code(const char *reason)
{
	if (strcmp(reason, "invalid ts") == 0 || strcmp(reason, "missing ts") == 0)
		return ERRCODE_INVALID_DATETIME_FORMAT;
	if (strcmp(reason, "ts in the future") == 0)
		return ERRCODE_DATETIME_VALUE_OUT_OF_RANGE;
	return ERRCODE_INVALID_TEXT_REPRESENTATION;
}

/*
 * anomstream.decode(topic text, message text, kafka_timestamp timestamptz)
 */
Datum
anomstream_decode(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *topic;
	text	   *message;
	DecodeStream stream;
	DecodeArena *arena;
	MemoryContextCallback *cb;
	DecodedMessage msg;
	DecodeColumnMap map;
	TupleDesc	tupdesc;
	int64		kafka_ts = INT64_MIN;
	TimestampTz event_time;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	topic = text_to_cstring(PG_GETARG_TEXT_PP(0));
	message = PG_GETARG_TEXT_PP(1);
	if (!PG_ARGISNULL(2))
		kafka_ts = decode_kafka_ts_usec(PG_GETARG_TIMESTAMPTZ(2));

	if (!decode_stream_for_topic(topic, &stream))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown topic \"%s\"", topic),
				 errhint("Use 'process' or 'memory', or a topic named in anomstream.topics.")));

	InitMaterializedSRF(fcinfo, 0);
	tupdesc = rsinfo->setDesc;

	arena = decode_arena_create();
	if (arena == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	cb = MemoryContextAlloc(CurrentMemoryContext, sizeof(MemoryContextCallback));
	cb->func = free_arena;
	cb->arg = arena;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);

	if (!decode_message(arena, stream, VARDATA_ANY(message), VARSIZE_ANY_EXHDR(message),
						kafka_ts, decode_max_future_usec(), &msg))
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (msg.error)
		ereport(ERROR,
				(errcode(message_error_code(msg.error)),
				 errmsg("invalid %s message: %s", stream == STREAM_PROCESS ? "process" : "memory",
						msg.error)));
	decode_check_encoding(&msg, stream);
	event_time = decode_event_time(&msg);
	decode_map_columns(tupdesc, stream, &map);

	for (int r = 0; r < msg.nrows; r++)
	{
		DecodedRow *row = &msg.rows[r];
		Datum	   *values = palloc0(sizeof(Datum) * tupdesc->natts);
		bool	   *nulls = palloc(sizeof(bool) * tupdesc->natts);

		memset(nulls, true, sizeof(bool) * tupdesc->natts);
		if (row->error)
		{
			values[map.row_index - 1] = Int32GetDatum(row->row_index);
			nulls[map.row_index - 1] = false;
			values[map.error - 1] = CStringGetTextDatum(row->error);
			nulls[map.error - 1] = false;
		}
		else
			decode_fill_row(&map, stream, row, event_time, values, nulls);
		tuplestore_putvalues(rsinfo->setResult, tupdesc, values, nulls);
		pfree(values);
		pfree(nulls);
	}
	return (Datum) 0;
}
