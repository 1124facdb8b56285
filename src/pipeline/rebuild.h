/*-------------------------------------------------------------------------
 *
 * rebuild.h
 *	  anomstream.rebuild(from): recompute the results from a point in event time with the
 *	  semantic settings now in effect (DESIGN.md §7, §11). What the worker calls.
 *
 * Call sites (src/ingest/worker.c):
 *	- rebuild_adjust_start() in setup(), in the positions transaction, SPI connected, after
 *	  positions_prepare_start(): lowers next_offset to where a replay must start again;
 *	- rebuild_requested() at the top of the loop, outside any transaction; when it says
 *	  yes, the worker drops its in-memory batches, calls rebuild_execute() (its own
 *	  transaction) and sets itself up again from the positions in PostgreSQL.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_REBUILD_H
#define ANOMSTREAM_REBUILD_H

#include "postgres.h"

#include "ingest/consumer.h"
#include "ingest/positions.h"

extern bool rebuild_requested(void);
extern void rebuild_execute(KafkaSource *src, PartState *parts, int nparts);
extern void rebuild_adjust_start(PartState *parts, int nparts, bool refill);

#endif							/* ANOMSTREAM_REBUILD_H */
