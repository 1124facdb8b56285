/*-------------------------------------------------------------------------
 *
 * positions.h
 *	  Kafka positions in PostgreSQL: staged, durable and staging-low (DESIGN.md §7).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_POSITIONS_H
#define ANOMSTREAM_POSITIONS_H

#include "postgres.h"

#include "ingest/decode.h"

/* What the worker knows of one topic-partition */
typedef struct PartState
{
	char	   *topic;
	int32		partition;
	DecodeStream stream;
	int64		next_offset;	/* next offset to read; -1 = from the beginning */
	int64		refill_until;	/* offsets below this only refill staging */
	int64		durable_offset; /* durable position as last committed, -1 none */
	bool		known;			/* has a row in anomstream.positions */
	/* progress in the current micro-batch */
	bool		in_batch;
	int64		batch_first;
	int64		batch_last;
	/* live figures */
	int64		high_watermark;
	bool		caught_up;
	bool		gap;			/* stopped: Kafka no longer has next_offset */
	int64		gap_low;		/* ops: earliest offset Kafka has (-1 unknown) */
	int64		messages;
	int64		rows;
	int64		dead_letters;
	TimestampTz last_message_at;
} PartState;

/* A dead letter waiting for the micro-batch transaction */
typedef struct DeadLetter
{
	const char *topic;
	int32		partition;
	int64		offset;
	int32		row_index;		/* -1: the whole message */
	const char *key;
	size_t		key_len;
	const char *value;
	size_t		value_len;
	const char *error;
} DeadLetter;

extern bool positions_prepare_start(PartState *parts, int nparts);
extern void positions_record_batch(PartState *parts, int nparts, int64 batch_id);
extern void positions_insert_dead_letters(const DeadLetter *dl, int n);
extern int64 positions_next_batch_id(void);
extern void positions_apply_retention(void);

#endif							/* ANOMSTREAM_POSITIONS_H */
