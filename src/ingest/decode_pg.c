/*-------------------------------------------------------------------------
 *
 * decode_pg.c
 *	  Server-dependent parts of decoding, shared by the worker and anomstream.decode().
 *
 * decode.c produces UTF-8 text; here each text value is checked against the database
 * encoding (a row whose text the database cannot store is a dead letter, DESIGN.md §2), and
 * event times are moved from the Unix epoch to PostgreSQL's. Topic names map to streams by
 * anomstream.topics, and the literal names 'process' and 'memory' always work.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "ingest/decode_pg.h"

#define UNIX_TO_PG_EPOCH_USEC \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * USECS_PER_SEC)

/*
 * Which stream a topic feeds: by position in anomstream.topics, or by the stream's name.
 */
bool
decode_stream_for_topic(const char *topic, DecodeStream *stream)
{
	const char *list = anomstream_topics ? anomstream_topics : "";
	const char *comma = strchr(list, ',');

	if (comma != NULL)
	{
		size_t		first_len = comma - list;

		if (strlen(topic) == first_len && strncmp(topic, list, first_len) == 0)
		{
			*stream = STREAM_PROCESS;
			return true;
		}
		if (strcmp(topic, comma + 1) == 0)
		{
			*stream = STREAM_MEMORY;
			return true;
		}
	}
	if (strcmp(topic, "process") == 0)
	{
		*stream = STREAM_PROCESS;
		return true;
	}
	if (strcmp(topic, "memory") == 0)
	{
		*stream = STREAM_MEMORY;
		return true;
	}
	return false;
}

/*
 * Mark rows whose text the database encoding cannot hold. UTF-8 databases need nothing
 * more (decode.c validated UTF-8) and SQL_ASCII stores bytes as they are; any other
 * encoding accepts ASCII only, since a conversion could raise an error mid-batch.
 */
void
decode_check_encoding(DecodedMessage *msg, DecodeStream stream)
{
	int			enc = GetDatabaseEncoding();
	const DecodeColumn *cols = decode_columns(stream);
	int			ncols = decode_ncolumns(stream);

	if (enc == PG_UTF8 || enc == PG_SQL_ASCII)
		return;
	for (int r = 0; r < msg->nrows; r++)
	{
		DecodedRow *row = &msg->rows[r];

		if (row->error)
			continue;
		for (int c = 0; c < ncols; c++)
		{
			DecodeValue *v = &row->values[c];

			if (cols[c].kind != KIND_TEXT || v->isnull)
				continue;
			for (uint32 i = 0; i < v->v.s.len; i++)
				if ((unsigned char) v->v.s.ptr[i] >= 0x80)
				{
					row->error = "text not representable in the database encoding";
					break;
				}
			if (row->error)
				break;
		}
	}
}

/*
 * The message's event time as timestamptz.
 */
TimestampTz
decode_event_time(const DecodedMessage *msg)
{
	return (TimestampTz) (msg->ts_unix_usec - UNIX_TO_PG_EPOCH_USEC);
}

/*
 * anomstream.max_future in microseconds.
 */
int64
decode_max_future_usec(void)
{
	return (int64) anomstream_max_future * USECS_PER_SEC;
}

/*
 * A timestamptz as Unix microseconds (decode.c's clock).
 */
int64
decode_kafka_ts_usec(TimestampTz kafka_ts)
{
	return (int64) kafka_ts + UNIX_TO_PG_EPOCH_USEC;
}

/*
 * A decoded column value as a Datum of its staging type (int4, float8 or text).
 */
Datum
decode_value_datum(const DecodeColumn *col, const DecodeValue *v)
{
	switch (col->kind)
	{
		case KIND_INT4:
			return Int32GetDatum(v->v.i);
		case KIND_FLOAT8:
		case KIND_UNIT:
			return Float8GetDatum(v->v.f);
		case KIND_TEXT:
			return PointerGetDatum(cstring_to_text_with_len(v->v.s.ptr, v->v.s.len));
	}
	elog(ERROR, "unexpected column kind %d", (int) col->kind);
	return (Datum) 0;
}

/*
 * Map each stream column, and the derived columns, to an attribute number of tupdesc
 * (0 when the descriptor has no such column).
 */
void
decode_map_columns(TupleDesc tupdesc, DecodeStream stream, DecodeColumnMap *map)
{
	const DecodeColumn *cols = decode_columns(stream);
	int			ncols = decode_ncolumns(stream);

	memset(map, 0, sizeof(*map));
	for (int a = 0; a < tupdesc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, a);
		const char *name = NameStr(att->attname);

		if (att->attisdropped)
			continue;
		for (int c = 0; c < ncols; c++)
			if (strcmp(name, cols[c].name) == 0)
				map->col[c] = a + 1;
		if (strcmp(name, "cmd_pid") == 0)
			map->cmd_pid = a + 1;
		else if (strcmp(name, "event_time") == 0)
			map->event_time = a + 1;
		else if (strcmp(name, "row_index") == 0)
			map->row_index = a + 1;
		else if (strcmp(name, "kafka_partition") == 0)
			map->kafka_partition = a + 1;
		else if (strcmp(name, "kafka_offset") == 0)
			map->kafka_offset = a + 1;
		else if (strcmp(name, "batch_id") == 0)
			map->batch_id = a + 1;
		else if (strcmp(name, "error") == 0)
			map->error = a + 1;
	}
}

/*
 * Fill values/nulls (sized for the descriptor the map was built from, all preset to NULL by
 * the caller) with a valid row's stream columns, cmd_pid and event_time.
 */
void
decode_fill_row(const DecodeColumnMap *map, DecodeStream stream, const DecodedRow *row,
				TimestampTz event_time, Datum *values, bool *nulls)
{
	const DecodeColumn *cols = decode_columns(stream);
	int			ncols = decode_ncolumns(stream);

	for (int c = 0; c < ncols; c++)
	{
		int			a = map->col[c];

		if (a == 0 || row->values[c].isnull)
			continue;
		values[a - 1] = decode_value_datum(&cols[c], &row->values[c]);
		nulls[a - 1] = false;
	}
	if (map->cmd_pid && row->cmd_pid)
	{
		values[map->cmd_pid - 1] =
			PointerGetDatum(cstring_to_text_with_len(row->cmd_pid, row->cmd_pid_len));
		nulls[map->cmd_pid - 1] = false;
	}
	if (map->event_time)
	{
		values[map->event_time - 1] = TimestampTzGetDatum(event_time);
		nulls[map->event_time - 1] = false;
	}
	if (map->row_index)
	{
		values[map->row_index - 1] = Int32GetDatum(row->row_index);
		nulls[map->row_index - 1] = false;
	}
}
