/*-------------------------------------------------------------------------
 *
 * decode_pg.h
 *	  The PostgreSQL side of decoding: what decode.c cannot know without the server.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_DECODE_PG_H
#define ANOMSTREAM_DECODE_PG_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "datatype/timestamp.h"

#include "ingest/decode.h"

/* Attribute numbers (1-based, 0 = absent) of decoded columns in some row type */
typedef struct DecodeColumnMap
{
	AttrNumber	col[DECODE_MAX_COLS];	/* stream columns, decode_columns() order */
	AttrNumber	cmd_pid;
	AttrNumber	event_time;
	AttrNumber	row_index;
	AttrNumber	kafka_partition;
	AttrNumber	kafka_offset;
	AttrNumber	batch_id;
	AttrNumber	error;
} DecodeColumnMap;

extern bool decode_stream_for_topic(const char *topic, DecodeStream *stream);
extern void decode_check_encoding(DecodedMessage *msg, DecodeStream stream);
extern TimestampTz decode_event_time(const DecodedMessage *msg);
extern int64 decode_max_future_usec(void);
extern int64 decode_kafka_ts_usec(TimestampTz kafka_ts);
extern Datum decode_value_datum(const DecodeColumn *col, const DecodeValue *v);
extern void decode_map_columns(TupleDesc tupdesc, DecodeStream stream, DecodeColumnMap *map);
extern void decode_fill_row(const DecodeColumnMap *map, DecodeStream stream,
							const DecodedRow *row, TimestampTz event_time,
							Datum *values, bool *nulls);

#endif							/* ANOMSTREAM_DECODE_PG_H */
