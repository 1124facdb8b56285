/*-------------------------------------------------------------------------
 *
 * state_cache.c
 *	  The worker's in-memory copy of the pipeline's operator state, by (machine, cmd_pid):
 *	  the rows of both join buffers (anomstream.join_process, join_memory) and the window
 *	  starts of anomstream.window_keys (DESIGN.md §6).
 *
 * The tables are the state; this copy lets join.c and windows.c find a key's rows and
 * windows without an index probe per batch row, and eviction delete rows by their TIDs,
 * so the join buffers need no index at all and window_keys only its primary key.
 *
 * Eviction is proportional to what it evicts, not to the state: per table, a binary min-heap
 * holds one (time, entry) item per row or window start; eviction pops the items at or
 * before its limit and trims those entries (an entry is freed once it is empty and no item
 * names it).
 *
 * Invariants: while valid, the copy equals the tables' contents as of the current
 * transaction, TIDs included. Every change the pipeline makes to those tables is made here
 * in the same transaction; a transaction that changed the copy and aborts invalidates it
 * (transaction callback); a rebuild invalidates it; before the copy is used in a
 * transaction the tables are locked and their OIDs and relfilenodes compared with those it
 * was loaded from (DROP/CREATE EXTENSION, TRUNCATE, VACUUM FULL move rows), and before each
 * micro-batch its sizes with the held_* counters of pipeline_state (written in the same
 * transactions as the tables); any difference loads it again. An eviction that deletes
 * fewer rows than the copy names raises (and so invalidates).
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
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
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
static const char *cache_invalid_why = NULL;	/* for the LOG line of the next load */
static bool cache_changed_in_xact = false;
static bool callback_registered = false;
static Oid	cache_oids[3];		/* join_process, join_memory, window_keys as loaded */
static Oid	cache_nodes[3];		/* their relfilenodes */
static int64 cache_counts[3];	/* rows of each */

/* Eviction heaps, one per table: items ordered by time */
typedef struct HeapItem
{
	TimestampTz t;
	StateEntry *e;
} HeapItem;

typedef struct TimeHeap
{
	int			n;
	int			cap;
	HeapItem   *items;
} TimeHeap;

static TimeHeap heaps[3];

static void
heap_push(TimeHeap *h, TimestampTz t, StateEntry *e)
{
	int			i;

	if (h->n == h->cap)
	{
		h->cap = h->cap ? h->cap * 2 : 1024;
		h->items = h->items ? repalloc_huge(h->items, sizeof(HeapItem) * h->cap)
			: MemoryContextAllocHuge(cache_cxt, sizeof(HeapItem) * h->cap);
	}
	i = h->n++;
	while (i > 0 && h->items[(i - 1) / 2].t > t)
	{
		h->items[i] = h->items[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h->items[i].t = t;
	h->items[i].e = e;
	e->refs++;
}

static HeapItem
heap_pop(TimeHeap *h)
{
	HeapItem	top = h->items[0];
	HeapItem	last = h->items[--h->n];
	int			i = 0;

	for (;;)
	{
		int			c = 2 * i + 1;

		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->items[c + 1].t < h->items[c].t)
			c++;
		if (last.t <= h->items[c].t)
			break;
		h->items[i] = h->items[c];
		i = c;
	}
	if (h->n > 0)
		h->items[i] = last;
	top.e->refs--;
	return top;
}

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
	if ((event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT) && cache_valid)
	{
		cache_valid = false;
		cache_invalid_why = "a transaction that changed it was rolled back";
	}
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

static const char *const state_tables[3] = {"join_process", "join_memory", "window_keys"};

/*
 * Lock the three tables (held to the end of the transaction) and read their OIDs and
 * relfilenodes.
 */
static void
lock_tables(Oid *oids, Oid *nodes)
{
	Oid			nsp = get_namespace_oid("anomstream", false);

	for (int i = 0; i < 3; i++)
	{
		Relation	rel;

		oids[i] = get_relname_relid(state_tables[i], nsp);
		if (!OidIsValid(oids[i]))
			elog(ERROR, "anomstream: table anomstream.%s is missing", state_tables[i]);
		rel = table_open(oids[i], RowExclusiveLock);
		nodes[i] = rel->rd_node.relNode;
		table_close(rel, NoLock);
	}
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

static int
add_row(StateEntry *e, int stream, TimestampTz et, int64 batch_id, HeapTuple tuple,
		const ItemPointerData *tid)
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
	if (tid)
		r->rows[r->n].tid = *tid;
	else
		ItemPointerSetInvalid(&r->rows[r->n].tid);
	cache_counts[stream]++;
	heap_push(&heaps[stream], et, e);
	return r->n++;
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

		if (e->ws[mid].ws < ws)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Returns the index of the new start, -1 if it was there */
static int
add_ws(StateEntry *e, TimestampTz ws, const ItemPointerData *tid)
{
	int			i = state_cache_ws_lower(e, ws);

	if (i < e->nws && e->ws[i].ws == ws)
		return -1;
	if (e->nws == e->capws)
	{
		e->capws = e->capws ? e->capws * 2 : 4;
		e->ws = e->ws ? repalloc(e->ws, sizeof(StateWs) * e->capws)
			: MemoryContextAlloc(cache_cxt, sizeof(StateWs) * e->capws);
	}
	memmove(&e->ws[i + 1], &e->ws[i], sizeof(StateWs) * (e->nws - i));
	e->ws[i].ws = ws;
	if (tid)
		e->ws[i].tid = *tid;
	else
		ItemPointerSetInvalid(&e->ws[i].tid);
	e->nws++;
	cache_counts[STATE_WINDOW_KEYS]++;
	heap_push(&heaps[STATE_WINDOW_KEYS], ws, e);
	return i;
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
	int			att_machine = pl_column(desc, "machine") + 1;
	int			att_cmd_pid = pl_column(desc, "cmd_pid") + 1;
	int			att_time = pl_column(desc, which == STATE_WINDOW_KEYS ? "window_start" : "event_time") + 1;
	int			att_batch = pl_column(desc, "batch_id") + 1;

	if (att_machine == 0 || att_cmd_pid == 0 || att_time == 0 ||
		(which != STATE_WINDOW_KEYS && att_batch == 0))
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
		if (which == STATE_WINDOW_KEYS)
			add_ws(e, DatumGetTimestampTz(t), &slot->tts_tid);
		else
		{
			MemoryContext old = MemoryContextSwitchTo(cache_cxt);
			HeapTuple	tuple = ExecCopySlotHeapTuple(slot);

			MemoryContextSwitchTo(old);
			add_row(e, which, DatumGetTimestampTz(t),
					DatumGetInt64(slot_getattr(slot, att_batch, &n1)), tuple, &slot->tts_tid);
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
load(const Oid *oids, const Oid *nodes)
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
	memset(heaps, 0, sizeof(heaps));	/* their items went with the context */
	for (int i = 0; i < 3; i++)
	{
		load_table(i, oids[i]);
		cache_oids[i] = oids[i];
		cache_nodes[i] = nodes[i];
	}
	cache_valid = true;
}

/*
 * Lock the tables and tell whether the copy is valid for them (invalidating it if they
 * were replaced or rewritten since it was loaded).
 */
bool
state_cache_check(void)
{
	Oid			oids[3],
				nodes[3];

	lock_tables(oids, nodes);
	if (cache_valid &&
		(memcmp(oids, cache_oids, sizeof(oids)) != 0 ||
		 memcmp(nodes, cache_nodes, sizeof(nodes)) != 0))
	{
		cache_valid = false;
		cache_invalid_why = "the tables were replaced or rewritten";
	}
	return cache_valid;
}

/*
 * Before a micro-batch: make sure the copy is valid and equals the tables, whose held_*
 * counters are held[3]. Returns true if it was loaded.
 */
bool
state_cache_prepare(const int64 *held)
{
	Oid			oids[3],
				nodes[3];

	if (state_cache_check() && memcmp(held, cache_counts, sizeof(cache_counts)) == 0)
		return false;
	if (cache_valid)
		cache_invalid_why = "its sizes differ from the held_* counters of pipeline_state";
	lock_tables(oids, nodes);
	load(oids, nodes);
	if (cache_invalid_why != NULL)
		ereport(LOG,
				(errmsg("anomstream: the copy of the pipeline state was loaded again: %s",
						cache_invalid_why),
				 errdetail("%lld join rows, %lld window keys.",
						   (long long) (cache_counts[0] + cache_counts[1]),
						   (long long) cache_counts[2])));
	cache_invalid_why = NULL;
	return true;
}

/* Drop the copy (a rebuild rewrote the state); the next batch loads it again */
void
state_cache_invalidate(void)
{
	if (cache_valid)
		cache_invalid_why = "a rebuild rewrote the state";
	cache_valid = false;
}

/*
 * Add a row of the batch to stream's rows: a copy of tuple (in the buffer's descriptor).
 * Returns its index in e->rows[stream], where the caller sets its TID once known.
 */
int
state_cache_add_row(int stream, StateEntry *e, HeapTuple tuple, TimestampTz et, int64 batch_id)
{
	MemoryContext old;
	HeapTuple	copy;

	Assert(cache_valid);
	changing();
	old = MemoryContextSwitchTo(cache_cxt);
	copy = heap_copytuple(tuple);
	MemoryContextSwitchTo(old);
	return add_row(e, stream, et, batch_id, copy, NULL);
}

/*
 * Add a window start to an entry; -1 if it was there, else its index (valid until the
 * next start is added to the entry). The caller sets its TID once known.
 */
int
state_cache_add_ws(StateEntry *e, TimestampTz ws)
{
	Assert(cache_valid);
	changing();
	return add_ws(e, ws, NULL);
}

/*
 * Evict from the copy of one table: join rows with event_time <= limit, or window starts
 * < limit. Returns the evicted rows' TIDs (*n of them), for the caller to delete from the
 * table in the same transaction. Entries left empty are freed.
 */
ItemPointerData *
state_cache_evict(int table, TimestampTz limit, int *n)
{
	TimeHeap   *h = &heaps[table];
	int			cap = 64;
	ItemPointerData *tids = palloc(sizeof(ItemPointerData) * cap);

	Assert(cache_valid);
	changing();
	*n = 0;
	while (h->n > 0 &&
		   (table == STATE_WINDOW_KEYS ? h->items[0].t < limit : h->items[0].t <= limit))
	{
		StateEntry *e = heap_pop(h).e;
		int			drop = 0;

		/* this item's row, and any other of the entry within the limit, go now */
		if (table == STATE_WINDOW_KEYS)
			drop = state_cache_ws_lower(e, limit);
		else
			for (int i = 0; i < e->rows[table].n; i++)
				drop += e->rows[table].rows[i].event_time <= limit;
		if (*n + drop > cap)
		{
			cap = Max(cap * 2, *n + drop);
			tids = repalloc_huge(tids, sizeof(ItemPointerData) * cap);
		}
		if (table == STATE_WINDOW_KEYS)
		{
			for (int i = 0; i < drop; i++)
				tids[(*n)++] = e->ws[i].tid;
			memmove(e->ws, &e->ws[drop], sizeof(StateWs) * (e->nws - drop));
			e->nws -= drop;
		}
		else if (drop > 0)
		{
			StateRows  *r = &e->rows[table];
			int			k = 0;

			for (int i = 0; i < r->n; i++)
			{
				if (r->rows[i].event_time <= limit)
				{
					tids[(*n)++] = r->rows[i].tid;
					heap_freetuple(r->rows[i].tuple);
				}
				else
					r->rows[k++] = r->rows[i];
			}
			r->n = k;
		}
		cache_counts[table] -= drop;
		if (e->refs == 0 && e->rows[0].n == 0 && e->rows[1].n == 0 && e->nws == 0)
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
	return tids;
}

/*
 * Evict from one table and its copy (see state_cache_evict) and delete the evicted rows
 * by TID. Returns the rows deleted; raises if the table did not hold each of them.
 */
int64
state_cache_delete_evicted(int table, TimestampTz limit)
{
	static const char *const sql[3] = {
		"DELETE FROM anomstream.join_process WHERE ctid = ANY($1)",
		"DELETE FROM anomstream.join_memory WHERE ctid = ANY($1)",
		"DELETE FROM anomstream.window_keys WHERE ctid = ANY($1)"
	};
	int			n;
	ItemPointerData *tids = state_cache_evict(table, limit, &n);
	Datum	   *d;
	Oid			types[1] = {TIDARRAYOID};
	Datum		values[1];
	uint64		deleted;

	if (n == 0)
		return 0;
	d = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		if (!ItemPointerIsValid(&tids[i]))
			elog(ERROR, "anomstream: a row of the copy of anomstream.%s has no TID",
				 state_tables[table]);
		d[i] = PointerGetDatum(&tids[i]);
	}
	values[0] = pl_array(d, NULL, n, TIDOID);
	deleted = pl_exec(sql[table], 1, types, values, NULL, SPI_OK_DELETE);
	if (deleted != (uint64) n)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("anomstream: the worker's copy of anomstream.%s named %d rows to evict, the table held %llu of them",
						state_tables[table], n, (unsigned long long) deleted),
				 errdetail("The copy is loaded again from the table and the micro-batch retried.")));
	return (int64) deleted;
}
