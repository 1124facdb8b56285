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

#include "datatype/timestamp.h"

#include "ingest/decode.h"

/* A valid decoded row and where it came from */
typedef struct StagedRow
{
	const DecodedRow *row;
	int32		partition;
	int64		offset;
	TimestampTz event_time;
} StagedRow;

extern void staging_insert(DecodeStream stream, const StagedRow *rows, int nrows,
						   int64 batch_id);
extern const char *staging_table_name(DecodeStream stream);

#endif							/* ANOMSTREAM_STAGING_H */
