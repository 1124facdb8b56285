/*-------------------------------------------------------------------------
 *
 * decode_thread.h
 *	  A helper thread that decodes one micro-batch while the worker commits the previous one.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_DECODE_THREAD_H
#define ANOMSTREAM_DECODE_THREAD_H

#include "ingest/decode.h"

/* A run of messages to decode; inputs are read-only for the thread. */
typedef struct DecodeJob
{
	struct DecodeJob *next;		/* queue link, owned by decode_thread.c */
	int			first;			/* caller's index of the first message */
	int			nmsgs;
	const char **bufs;			/* message values */
	const size_t *lens;
	const DecodeStream *streams;
	const int64_t *kafka_ts_usec;	/* INT64_MIN when unknown */
	int64_t		max_future_usec;
	DecodeArena *arena;			/* output storage, reset by the owner */
	DecodedMessage *out;		/* nmsgs results */
	bool		oom;			/* set if the arena ran out of memory */
} DecodeJob;

extern bool decode_thread_start(void);
extern void decode_thread_submit(DecodeJob *job);
extern void decode_thread_wait(void);

#endif							/* ANOMSTREAM_DECODE_THREAD_H */
