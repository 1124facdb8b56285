/*-------------------------------------------------------------------------
 *
 * decode.h
 *	  Kafka message → rows: the envelope of DESIGN.md §2, one row per data element.
 *
 * Plain C: no PostgreSQL call, no longjmp, no global state. Errors are returned as strings
 * (the dead-letter reason), never raised, so the same code runs in the worker, in the SQL
 * function anomstream.decode(), and under the fuzzer. All output lives in a DecodeArena that
 * the caller rewinds once per micro-batch.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_DECODE_H
#define ANOMSTREAM_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The two input streams; the index is also the position in anomstream.topics. */
typedef enum DecodeStream
{
	STREAM_PROCESS = 0,
	STREAM_MEMORY = 1
} DecodeStream;

#define DECODE_NSTREAMS 2
#define DECODE_MAX_COLS 16

/* How a column's JSON value is converted */
typedef enum DecodeKind
{
	KIND_INT4,					/* integral number, or a string holding one */
	KIND_FLOAT8,				/* number, or a string float8in accepts */
	KIND_UNIT,					/* number, or an atop unit string (reformat) */
	KIND_TEXT					/* string; a number keeps its text */
} DecodeKind;

typedef struct DecodeColumn
{
	const char *name;			/* lower-case staging column name */
	size_t		name_len;
	DecodeKind	kind;
} DecodeColumn;

typedef struct DecodeValue
{
	union
	{
		int32_t		i;
		double		f;
		struct
		{
			const char *ptr;	/* not NUL-terminated; lives in the arena or the message */
			uint32_t	len;
		}			s;
	}			v;
	bool		isnull;
} DecodeValue;

/* One decoded row. error != NULL means the row is a dead letter and values are unset. */
typedef struct DecodedRow
{
	int32_t		row_index;		/* position in the message's data array */
	const char *error;
	const char *raw;			/* the row's JSON text (after one level of unescaping) */
	size_t		raw_len;
	/* derived columns (DESIGN.md §3) */
	bool		nice_isnull;
	double		nice;			/* PRI - 120 (process stream only) */
	const char *cmd_pid;		/* CMD || '_' || PID, NULL if either is NULL */
	uint32_t	cmd_pid_len;
	DecodeValue values[DECODE_MAX_COLS];	/* in decode_columns() order */
} DecodedRow;

typedef struct DecodedMessage
{
	const char *error;			/* message-level dead letter; then nrows == 0 */
	int64_t		ts_unix_usec;	/* event time, microseconds since 1970-01-01 UTC */
	int32_t		nrows;
	DecodedRow *rows;
} DecodedMessage;

/* Bump allocator for decode output (opaque). */
typedef struct DecodeArena DecodeArena;

extern DecodeArena *decode_arena_create(void);
extern void decode_arena_reset(DecodeArena *arena);
extern void decode_arena_destroy(DecodeArena *arena);
extern size_t decode_arena_bytes(const DecodeArena *arena);

extern int	decode_ncolumns(DecodeStream stream);
extern const DecodeColumn *decode_columns(DecodeStream stream);

/*
 * Decode one message. kafka_ts_usec is the Kafka message timestamp (unix microseconds) or
 * INT64_MIN when unknown; max_future_usec bounds ts - kafka_ts. Returns false only if the
 * arena could not allocate (out of memory); everything else is reported in *out.
 */
extern bool decode_message(DecodeArena *arena, DecodeStream stream,
						   const char *buf, size_t len,
						   int64_t kafka_ts_usec, int64_t max_future_usec,
						   DecodedMessage *out);

/* Helpers shared with other parsers of user input */
extern bool decode_float8(const char *s, size_t len, double *result);
extern bool decode_iso8601(const char *s, size_t len, int64_t *unix_usec);

#endif							/* ANOMSTREAM_DECODE_H */
