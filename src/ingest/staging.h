/*-------------------------------------------------------------------------
 *
 * staging.h
 *	  Bulk insert of decoded rows into anomstream.process_events / memory_events.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_STAGING_H
#define ANOMSTREAM_STAGING_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "datatype/timestamp.h"
#include "executor/tuptable.h"

#include "ingest/decode.h"

/* A valid decoded row and where it came from */
typedef struct StagedRow
{
	const DecodedRow *row;
	int32		partition;
	int64		offset;
	TimestampTz event_time;
	TimestampTz kafka_timestamp;	/* Kafka message timestamp, DT_NOBEGIN if none */
} StagedRow;

/*
 * One stream's rows of a micro-batch as staged: scored virtual slots over a copy of the
 * staging table's descriptor, in consumption order (per partition: ascending offset), alive
 * in the worker's per-batch memory context until the batch is reset.
 */
typedef struct StagedSlots
{
	TupleDesc	desc;
	TupleTableSlot **slots;
	int			nrows;
} StagedSlots;

extern void staging_insert(DecodeStream stream, const StagedRow *rows, int nrows,
						   int64 batch_id, StagedSlots *out);
extern const char *staging_table_name(DecodeStream stream);
extern void staging_summarize(int64 batch_id);

#endif							/* ANOMSTREAM_STAGING_H */
