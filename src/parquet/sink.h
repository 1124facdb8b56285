/*-------------------------------------------------------------------------
 *
 * sink.h
 *	  Continuous Parquet sinks (DESIGN.md §8): part files of process and memory rows per
 *	  Kafka partition, and of detected_attacks per batch range.
 *
 * What the worker calls (each from one marked line in src/ingest/worker.c or positions.c):
 *	- sinks_recover_at_start() in setup(), inside its transaction, SPI connected: completes
 *	  renames of committed parts and deletes in-progress files nobody committed;
 *	- sinks_process_batch() in commit_batch(), after positions_record_batch(): the sinks take
 *	  over the batch's rows and write the parts that are due;
 *	- sinks_roll_due() in run_retention()'s transaction: parts due by roll interval while no
 *	  data arrives;
 *	- sinks_retention_cut() and sinks_hold_staging_low() in positions_apply_retention(): staging
 *	  keeps every row of an open part.
 * Renames happen in a transaction callback after the commit; an abort deletes the files.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_PARQUET_SINK_H
#define ANOMSTREAM_PARQUET_SINK_H

#include "postgres.h"

#include "ingest/positions.h"

/* sink.c */
extern void sinks_process_batch(int64 batch_id, PartState *parts, int nparts);
extern void sinks_roll_due(void);
extern int64 sinks_retention_cut(int64 cut);
extern void sinks_hold_staging_low(void);

/* sink_part.c */
typedef struct SinkPart
{
	const char *sink;			/* "process", "memory", "detected" */
	const char *directory;
	const char *topic;			/* NULL for detected */
	int32		partition;		/* -1 for detected */
	int64		first;			/* first offset or batch id */
	int64		last;			/* last offset or batch id, inclusive */
	int64		expected_rows;	/* -1: do not check */
} SinkPart;

extern void sink_write_part(const SinkPart *part, const char *query, int nargs, Oid *types,
							Datum *values);
extern void sinks_recover_at_start(void);

#endif							/* ANOMSTREAM_PARQUET_SINK_H */
