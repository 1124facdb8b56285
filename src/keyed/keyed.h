/*-------------------------------------------------------------------------
 *
 * keyed.h
 *	  Keyed state across micro-batches (DESIGN.md §9): the worker's hook and the built-in
 *	  C updaters.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_KEYED_H
#define ANOMSTREAM_KEYED_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "ingest/positions.h"
#include "utils/jsonb.h"

/* Counters a built-in adds to its operator's progress */
typedef struct KeyedCounts
{
	int64		out_of_order;
	int64		invalid;
} KeyedCounts;

#define KEYED_DERIVATIVE_HISTORY 10
#define KEYED_CAPPED_LIST_CAP 100

/*
 * Run every enabled keyed operator over the current micro-batch. Called by the worker
 * inside the micro-batch transaction, after staging_insert(), with SPI connected; parts[i]
 * .durable_offset is the durable position before this batch (rows below it are refills).
 */
extern void keyed_state_process_batch(int64 batch_id, PartState *parts, int nparts);

/*
 * The pipeline watermark moved to watermark outside a micro-batch (pipeline_tick): evict
 * keys by TTL. Called inside the tick's transaction with SPI connected.
 */
extern void keyed_state_evict(TimestampTz watermark);

extern Jsonb *keyed_derivative_apply(Jsonb *values, Jsonb *state, int history,
									 KeyedCounts *counts);
extern Jsonb *keyed_capped_apply(Jsonb *values, Jsonb *state, int cap);

#endif							/* ANOMSTREAM_KEYED_H */
