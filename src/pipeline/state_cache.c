/*-------------------------------------------------------------------------
 *
 * state_cache.c
 *	  The worker's in-memory copy of the pipeline's operator state, by (machine, cmd_pid):
 *	  the rows of both join buffers (anomstream.join_process, join_memory) and the window
 *	  starts of anomstream.window_keys (DESIGN.md §6).
 *
 * The tables are the state; this copy lets join.c and windows.c find a key's rows and
 * windows without an index probe per batch row, so the tables need no index on the key.
 *
 * Invariants: while valid, the copy equals the tables' contents as of the current
 * transaction. Every change the pipeline makes to those tables is made here in the same
 * transaction; a transaction that changed the copy and aborts invalidates it (transaction
 * callback); a rebuild invalidates it; before each micro-batch the copy is checked against
 * the tables' OIDs (DROP/CREATE EXTENSION) and the held_* counters of pipeline_state,
 * written in the same transactions as the tables, and loaded again on any difference.
 * A key's window starts are ascending; its rows are in no order. Memory:
 * a context of its own under TopMemoryContext, reset at each load; evicted rows are
 * freed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "common/hashfn.h"
#include "executor/tuptable.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "pipeline/pipeline_int.h"
#include "pipeline/state_cache.h"

static MemoryContext cache_cxt = NULL;
static HTAB *cache_keys = NULL;
static bool cache_valid = false;
static bool cache_changed_in_xact = false;
static bool callback_registered = false;
static Oid	cache_oids[3];		/* join_process, join_memory, window_keys as loaded */
static int64 cache_counts[3];	/* rows of each */

static uint32
key_hash(const void *key, Size keysize)
{
	const StateKey *k = key;

	return hash_combine(murmurhash32((uint32) k->machine),
						hash_bytes((const unsigned char *) k->data, k->len));
}

static int
key_match(const void *a, const void *b, Size keysize)
{
	const StateKey *x = a;
	const StateKey *y = b;

	if (x->machine != y->machine || x->len != y->len)
		return 1;
	return memcmp(x->data, y->data, x->len);
}

static void
xact_callback(XactEvent event, void *arg)
{
	if (!cache_changed_in_xact)
		return;
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		cache_valid = false;
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
		cache_changed_in_xact = false;
}

static void
changing(void)
{
	Assert(IsTransactionState());
	cache_changed_in_xact = true;
}

static Oid
state_table(const char *name)
{
	Oid			oid = get_relname_relid(name, get_namespace_oid("anomstream", false));

	if (!OidIsValid(oid))
		elog(ERROR, "anomstream: table anomstream.%s is missing", name);
	return oid;
}

/*
 * The entry of (machine, cmd_pid), created if create (NULL if absent and !create).
 * cmd_pid is a text datum.
 */
StateEntry *
state_cache_entry(int32 machine, Datum cmd_pid, bool create)
{
	struct varlena *t = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(cmd_pid));
	StateKey	key;
	StateEntry *e;
	bool		found;

	key.machine = machine;
	key.len = VARSIZE_ANY_EXHDR(t);
	key.data = VARDATA_ANY(t);
	e = hash_search(cache_keys, &key, create ? HASH_ENTER : HASH_FIND, &found);
	if (e != NULL && !found)
	{
		char	   *copy = MemoryContextAlloc(cache_cxt, Max(key.len, 1));

		memcpy(copy, key.data, key.len);
		memset(((char *) e) + sizeof(StateKey), 0, sizeof(StateEntry) - sizeof(StateKey));
		e->key.data = copy;		/* same bytes: the hash and the match are unchanged */
	}
	return e;
}

static void
add_row(StateEntry *e, int stream, TimestampTz et, int64 batch_id, HeapTuple tuple)
{
	StateRows  *r = &e->rows[stream];

	if (r->n == r->cap)
	{
		r->cap = r->cap ? r->cap * 2 : 4;
		r->rows = r->rows ? repalloc(r->rows, sizeof(StateRow) * r->cap)
			: MemoryContextAlloc(cache_cxt, sizeof(StateRow) * r->cap);
	}
	r->rows[r->n].event_time = et;
	r->rows[r->n].batch_id = batch_id;
	r->rows[r->n].tuple = tuple;
	r->n++;
	cache_counts[stream]++;
}

/*
 * Index of the first window start >= ws in e (e->nws if none).
 */
int
state_cache_ws_lower(const StateEntry *e, TimestampTz ws)
{
	int			lo = 0,
				hi = e->nws;

	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;

		if (e->ws[mid] < ws)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool
add_ws(StateEntry *e, TimestampTz ws)
{
	int			i = state_cache_ws_lower(e, ws);

	if (i < e->nws && e->ws[i] == ws)
		return false;
	if (e->nws == e->capws)
	{
		e->capws = e->capws ? e->capws * 2 : 4;
		e->ws = e->ws ? repalloc(e->ws, sizeof(TimestampTz) * e->capws)
			: MemoryContextAlloc(cache_cxt, sizeof(TimestampTz) * e->capws);
	}
	memmove(&e->ws[i + 1], &e->ws[i], sizeof(TimestampTz) * (e->nws - i));
	e->ws[i] = ws;
	e->nws++;
	cache_counts[2]++;
	return true;
}

/* Read one table into the copy */
static void
load_table(int which, Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	TableScanDesc scan = table_beginscan(rel, snapshot, 0, NULL);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	int			att_machine = -1,
				att_cmd_pid = -1,
				att_time = -1,
				att_batch = -1;

	for (int a = 0; a < desc->natts; a++)
	{
		const char *name = NameStr(TupleDescAttr(desc, a)->attname);

		if (TupleDescAttr(desc, a)->attisdropped)
			continue;
		if (strcmp(name, "machine") == 0)
			att_machine = a + 1;
		else if (strcmp(name, "cmd_pid") == 0)
			att_cmd_pid = a + 1;
		else if (strcmp(name, which == 2 ? "window_start" : "event_time") == 0)
			att_time = a + 1;
		else if (strcmp(name, "batch_id") == 0)
			att_batch = a + 1;
	}
	if (att_machine < 0 || att_cmd_pid < 0 || att_time < 0 || (which < 2 && att_batch < 0))
		elog(ERROR, "anomstream: %s lacks a column of the pipeline's state", RelationGetRelationName(rel));

	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		n1,
					n2,
					n3;
		Datum		machine = slot_getattr(slot, att_machine, &n1);
		Datum		cmd_pid = slot_getattr(slot, att_cmd_pid, &n2);
		Datum		t = slot_getattr(slot, att_time, &n3);
		StateEntry *e;

		if (n1 || n2 || n3)
			elog(ERROR, "anomstream: %s holds a row without its key", RelationGetRelationName(rel));
		e = state_cache_entry(DatumGetInt32(machine), cmd_pid, true);
		if (which == 2)
			add_ws(e, DatumGetTimestampTz(t));
		else
		{
			MemoryContext old = MemoryContextSwitchTo(cache_cxt);
			HeapTuple	tuple = ExecCopySlotHeapTuple(slot);

			MemoryContextSwitchTo(old);
			add_row(e, which, DatumGetTimestampTz(t),
					DatumGetInt64(slot_getattr(slot, att_batch, &n1)), tuple);
		}
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);
}

/*
 * Read the three tables into a fresh copy.
 */
static void
load(const Oid *oids)
{
	HASHCTL		ctl;

	if (cache_cxt == NULL)
		cache_cxt = AllocSetContextCreate(TopMemoryContext, "anomstream pipeline state",
										  ALLOCSET_DEFAULT_SIZES);
	if (!callback_registered)
	{
		RegisterXactCallback(xact_callback, NULL);
		callback_registered = true;
	}
	cache_valid = false;
	MemoryContextReset(cache_cxt);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(StateKey);
	ctl.entrysize = sizeof(StateEntry);
	ctl.hash = key_hash;
	ctl.match = key_match;
	ctl.hcxt = cache_cxt;
	cache_keys = hash_create("anomstream pipeline state keys", 1024, &ctl,
							 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	memset(cache_counts, 0, sizeof(cache_counts));
	for (int i = 0; i < 3; i++)
	{
		load_table(i, oids[i]);
		cache_oids[i] = oids[i];
	}
	cache_valid = true;
}

/*
 * Before a micro-batch: make sure the copy is valid and equals the tables, whose held_*
 * counters are held[3] (join_process, join_memory, window_keys). Returns true if it was
 * loaded.
 */
bool
state_cache_prepare(const int64 *held)
{
	Oid			oids[3] = {state_table("join_process"), state_table("join_memory"),
	state_table("window_keys")};

	if (cache_valid &&
		memcmp(oids, cache_oids, sizeof(oids)) == 0 &&
		memcmp(held, cache_counts, sizeof(cache_counts)) == 0)
		return false;
	load(oids);
	return true;
}

bool
state_cache_is_valid(void)
{
	return cache_valid;
}

/* Drop the copy (a rebuild rewrote the state); the next batch loads it again */
void
state_cache_invalidate(void)
{
	cache_valid = false;
}

/*
 * Add a row of the batch to stream's rows (values and nulls in the buffer's descriptor).
 */
void
state_cache_add_row(int stream, StateEntry *e, TupleDesc desc, Datum *values, bool *nulls,
					TimestampTz et, int64 batch_id)
{
	MemoryContext old;
	HeapTuple	tuple;

	Assert(cache_valid);
	changing();
	old = MemoryContextSwitchTo(cache_cxt);
	tuple = heap_form_tuple(desc, values, nulls);
	MemoryContextSwitchTo(old);
	add_row(e, stream, et, batch_id, tuple);
}

/*
 * Add a window start to an entry; false if it was there.
 */
bool
state_cache_add_ws(StateEntry *e, TimestampTz ws)
{
	Assert(cache_valid);
	changing();
	return add_ws(e, ws);
}

/*
 * Evict: join rows with event_time <= row_limit, window starts < ws_limit (either may be
 * DT_NOBEGIN: nothing). Entries left empty are removed. Returns nothing: the counts
 * follow the tables' DELETEs, which use the same limits.
 */
void
state_cache_evict(TimestampTz row_limit, TimestampTz ws_limit)
{
	HASH_SEQ_STATUS st;
	StateEntry *e;

	if (!cache_valid)
		return;
	changing();
	hash_seq_init(&st, cache_keys);
	while ((e = hash_seq_search(&st)) != NULL)
	{
		for (int s = 0; s < 2; s++)
		{
			StateRows  *r = &e->rows[s];
			int			k = 0;

			for (int i = 0; i < r->n; i++)
			{
				if (r->rows[i].event_time <= row_limit)
				{
					heap_freetuple(r->rows[i].tuple);
					cache_counts[s]--;
				}
				else
					r->rows[k++] = r->rows[i];
			}
			r->n = k;
		}
		if (e->nws > 0 && e->ws[0] < ws_limit)
		{
			int			i = state_cache_ws_lower(e, ws_limit);

			memmove(e->ws, &e->ws[i], sizeof(TimestampTz) * (e->nws - i));
			e->nws -= i;
			cache_counts[2] -= i;
		}
		if (e->rows[0].n == 0 && e->rows[1].n == 0 && e->nws == 0)
		{
			char	   *data = (char *) e->key.data;

			if (e->rows[0].rows)
				pfree(e->rows[0].rows);
			if (e->rows[1].rows)
				pfree(e->rows[1].rows);
			if (e->ws)
				pfree(e->ws);
			hash_search(cache_keys, &e->key, HASH_REMOVE, NULL);
			pfree(data);
		}
	}
}
