/*-------------------------------------------------------------------------
 *
 * fuzz_decode.c
 *	  libFuzzer target for the message decoder and the unit parser.
 *
 * The first input byte picks the stream and the kafka-timestamp mode; the rest is the
 * message. Each input is decoded twice into one arena with a reset in between (the
 * worker's reuse pattern), and every produced row is checked for internal consistency, so
 * the sanitizers see reads of everything decode_message returns.
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/decode.h"
#include "ingest/reformat.h"

static DecodeArena *arena;

/* Touch every byte decode_message claims to return. */
static void
check(const DecodedMessage *m, DecodeStream stream)
{
	const DecodeColumn *cols = decode_columns(stream);
	int			ncols = decode_ncolumns(stream);
	volatile unsigned sink = 0;

	if (m->error)
	{
		sink += (unsigned) strlen(m->error);
		if (m->nrows != 0)
			abort();
		return;
	}
	for (int r = 0; r < m->nrows; r++)
	{
		const DecodedRow *row = &m->rows[r];

		if (row->row_index != r)
			abort();
		for (size_t i = 0; i < row->raw_len; i++)
			sink += (unsigned char) row->raw[i];
		if (row->error)
		{
			sink += (unsigned) strlen(row->error);
			continue;
		}
		for (int c = 0; c < ncols; c++)
			if (!row->values[c].isnull && cols[c].kind == KIND_TEXT)
				for (uint32_t i = 0; i < row->values[c].v.s.len; i++)
					sink += (unsigned char) row->values[c].v.s.ptr[i];
		for (uint32_t i = 0; i < row->cmd_pid_len; i++)
			sink += (unsigned char) row->cmd_pid[i];
	}
	(void) sink;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	DecodedMessage m;
	DecodeStream stream;
	int64_t		kts;
	double		d;

	if (size < 1)
		return 0;
	if (arena == NULL)
		arena = decode_arena_create();
	stream = (data[0] & 1) ? STREAM_MEMORY : STREAM_PROCESS;
	kts = (data[0] & 2) ? INT64_C(1604231589000000) : INT64_MIN;
	for (int pass = 0; pass < 2; pass++)
	{
		if (!decode_message(arena, stream, (const char *) data + 1, size - 1, kts,
							INT64_C(3600000000), &m))
			abort();
		check(&m, stream);
		decode_arena_reset(arena);
	}
	(void) reformat_parse((const char *) data + 1, size - 1, &d);
	(void) decode_iso8601((const char *) data + 1, size - 1, &kts);
	return 0;
}
