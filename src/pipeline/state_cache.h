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
#include "storage/itemptr.h"

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
	ItemPointerData tid;		/* where it is in the table */
} StateRow;

typedef struct StateRows
{
	int			n;
	int			cap;
	StateRow   *rows;
} StateRows;

/* A window start of window_keys */
typedef struct StateWs
{
	TimestampTz ws;
	ItemPointerData tid;
} StateWs;

typedef struct StateEntry
{
	StateKey	key;			/* first: the hash key */
	StateRows	rows[2];		/* by stream: join_process, join_memory */
	int			nws;
	int			capws;
	StateWs    *ws;				/* window starts in window_keys, ascending */
	int			refs;			/* eviction heap items naming this entry */
} StateEntry;

/* The state tables, in the order of the held_* counters */
#define STATE_JOIN_PROCESS	0
#define STATE_JOIN_MEMORY	1
#define STATE_WINDOW_KEYS	2

extern bool state_cache_prepare(const int64 *held);
extern bool state_cache_check(void);
extern void state_cache_invalidate(void);
extern StateEntry *state_cache_entry(int32 machine, Datum cmd_pid, bool create);
extern int	state_cache_add_row(int stream, StateEntry *e, HeapTuple tuple, TimestampTz et,
								int64 batch_id);
extern int	state_cache_add_ws(StateEntry *e, TimestampTz ws);
extern int	state_cache_ws_lower(const StateEntry *e, TimestampTz ws);
extern ItemPointerData *state_cache_evict(int table, TimestampTz limit, int *n);
extern int64 state_cache_delete_evicted(int table, TimestampTz limit);

#endif							/* ANOMSTREAM_STATE_CACHE_H */
