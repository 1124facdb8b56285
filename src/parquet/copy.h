/*-------------------------------------------------------------------------
 *
 * copy.h
 *	  COPY ... (FORMAT parquet): options and the TO / FROM entry points.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_PARQUET_COPY_H
#define ANOMSTREAM_PARQUET_COPY_H

#include "postgres.h"

#include "nodes/parsenodes.h"
#include "parser/parse_node.h"

typedef struct PqCopyOptions
{
	int			codec;			/* PQ_CODEC_* */
	int			level;
	int64		row_group_size;
	bool		match_by_name;	/* FROM: match file fields to columns by name */
	bool		freeze;			/* FROM: passed on to core COPY */
} PqCopyOptions;

extern void anomstream_parquet_init(void);
extern uint64 pq_copy_to(ParseState *pstate, CopyStmt *stmt, int stmt_location, int stmt_len,
						 const PqCopyOptions *opts);
extern void pq_write_fd(int fd, const char *path, const void *data, size_t len);
extern uint64 pq_copy_from(ParseState *pstate, CopyStmt *stmt, const PqCopyOptions *opts);

#endif
