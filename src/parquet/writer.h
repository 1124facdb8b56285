/*-------------------------------------------------------------------------
 *
 * writer.h
 *	  Parquet writer: rows in, row groups and a footer out.
 *
 * The writer does not own the output: it hands bytes to a PqWriteFn, so the
 * same writer serves a file (copy_to.c), the COPY protocol (TO STDOUT) and,
 * later, a continuous sink that keeps a part file open across micro-batches:
 * such a sink calls pq_writer_flush_row_group at each micro-batch commit (one
 * row group per batch or per roll threshold) and pq_writer_finish when the
 * part rolls. All writer memory lives under the MemoryContext given to
 * pq_writer_create, so a sink can keep a writer across transactions by
 * passing a long-lived context.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_PARQUET_WRITER_H
#define ANOMSTREAM_PARQUET_WRITER_H

#include "postgres.h"

#include "access/tupdesc.h"

#include "parquet/types.h"

#define PQ_DEFAULT_ROW_GROUP_SIZE	122880
#define PQ_MAX_ROW_GROUP_BYTES		((size_t) 512 * 1024 * 1024)

typedef void (*PqWriteFn) (void *arg, const void *data, size_t len);

typedef struct PqWriterOptions
{
	int			codec;			/* PQ_CODEC_* */
	int			level;			/* compression level (gzip, zstd) */
	int64		row_group_size; /* rows per row group */
} PqWriterOptions;

typedef struct PqWriter PqWriter;

extern PqWriter *pq_writer_create(MemoryContext parent, TupleDesc tupdesc,
								  const PqWriterOptions *opts, PqWriteFn write, void *arg);
extern void pq_writer_append(PqWriter *w, Datum *values, bool *isnull);
extern void pq_writer_flush_row_group(PqWriter *w);
extern void pq_writer_finish(PqWriter *w);
extern uint64 pq_writer_rows(PqWriter *w);
extern uint64 pq_writer_bytes(PqWriter *w);
extern void pq_writer_destroy(PqWriter *w);
extern const PqAllocator *pq_palloc_allocator(MemoryContext cxt);

#endif
