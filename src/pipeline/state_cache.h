/*-------------------------------------------------------------------------
 *
 * state_cache.h
 *	  The worker's in-memory copy of the pipeline's operator state (state_cache.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_STATE_CACHE_H
#define ANOMSTREAM_STATE_CACHE_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "datatype/timestamp.h"

/* (machine, cmd_pid): the bytes of the text, owned by the copy once entered */
typedef struct StateKey
{
	int32		machine;
	int32		len;
	const char *data;
} StateKey;

/* A join buffer row */
typedef struct StateRow
{
	TimestampTz event_time;
	int64		batch_id;
	HeapTuple	tuple;			/* in the buffer table's descriptor */
} StateRow;

typedef struct StateRows
{
	int			n;
	int			cap;
	StateRow   *rows;
} StateRows;

typedef struct StateEntry
{
	StateKey	key;			/* first: the hash key */
	StateRows	rows[2];		/* by stream: join_process, join_memory */
	int			nws;
	int			capws;
	TimestampTz *ws;			/* window starts in window_keys, ascending */
} StateEntry;

extern bool state_cache_prepare(const int64 *held);
extern bool state_cache_is_valid(void);
extern void state_cache_invalidate(void);
extern StateEntry *state_cache_entry(int32 machine, Datum cmd_pid, bool create);
extern void state_cache_add_row(int stream, StateEntry *e, TupleDesc desc, Datum *values,
								bool *nulls, TimestampTz et, int64 batch_id);
extern bool state_cache_add_ws(StateEntry *e, TimestampTz ws);
extern int	state_cache_ws_lower(const StateEntry *e, TimestampTz ws);
extern void state_cache_evict(TimestampTz row_limit, TimestampTz ws_limit);

#endif							/* ANOMSTREAM_STATE_CACHE_H */
