/*-------------------------------------------------------------------------
 *
 * windows.c
 *	  potential_attacks: tumbling windows per machine counting distinct attacking
 *	  (machine, cmd_pid), and new_attacks deduplicated over new_attack_retention
 *	  (DESIGN.md §5, §6).
 *
 * State: anomstream.window_keys holds each distinct (machine, cmd_pid, window_start) of the
 * non-late attack rows of both streams. A batch inserts its distinct keys (computed in C
 * from the batch's rows in memory); only the keys that were not there yet (set A) can
 * change a result: the window of each such key (attacks + 1, and new or not), and the next
 * window of the same key within the retention, (ws, ws + R], where that key may stop being
 * new. The changes are added to the windows' rows (windows_update's comment has the
 * argument; HOT updates: the table has fillfactor 50 and no index on the changing
 * columns). All of them are open: non-late rows have event_time >= W, so their window
 * ends after W. While a rebuild replays, only windows from its first recomputed window on
 * are written (rebuild.c); the keys of earlier windows are still kept, for new_attacks.
 *
 * A window is closed once W >= window_end; a closed row never changes. Eviction: future
 * keys fall into windows starting at date_bin(W) or later and look back R from there, so
 * keys of windows starting before date_bin(W) - R are deleted.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "access/table.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/timestamp.h"

#include "ingest/bulk_insert.h"
#include "pipeline/pipeline_int.h"

/* A key the batch added, or an older key that stopped being new */
typedef struct KeyRef
{
	StateEntry *e;
	TimestampTz ws;
} KeyRef;

static int
ref_cmp(const void *a, const void *b)
{
	const KeyRef *x = a;
	const KeyRef *y = b;

	if (x->e != y->e)
		return x->e < y->e ? -1 : 1;
	return x->ws < y->ws ? -1 : x->ws > y->ws ? 1 : 0;
}

static Datum
window_origin(void)
{
	return TimestampTzGetDatum(-((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY));
}

/*
 * Write the keys the batch added to window_keys (bulk insert; its primary key still
 * refuses a key the copy wrongly took for new) and give the copy their TIDs.
 */
static void
insert_keys(const KeyRef *added, int n)
{
	Relation	rel = table_openrv(makeRangeVar("anomstream", "window_keys", -1), RowExclusiveLock);
	TupleDesc	desc = RelationGetDescr(rel);
	Datum	   *values = palloc0(sizeof(Datum) * desc->natts);
	bool	   *nulls = palloc(sizeof(bool) * desc->natts);
	int			att[3];
	ItemPointerData *tids = palloc(sizeof(ItemPointerData) * n);
	BulkInserter *bi;

	for (int a = 0; a < desc->natts; a++)
		nulls[a] = true;
	att[0] = pl_column(desc, "machine");
	att[1] = pl_column(desc, "cmd_pid");
	att[2] = pl_column(desc, "window_start");
	if (att[0] < 0 || att[1] < 0 || att[2] < 0)
		elog(ERROR, "anomstream: anomstream.window_keys lacks machine, cmd_pid or window_start");
	nulls[att[0]] = nulls[att[1]] = nulls[att[2]] = false;
	bi = bulk_insert_begin(rel);
	bulk_insert_capture_tids(bi, tids);
	for (int i = 0; i < n; i++)
	{
		values[att[0]] = Int32GetDatum(added[i].e->key.machine);
		values[att[1]] = PointerGetDatum(cstring_to_text_with_len(added[i].e->key.data,
																  added[i].e->key.len));
		values[att[2]] = TimestampTzGetDatum(added[i].ws);
		bulk_insert_row(bi, values, nulls);
	}
	bulk_insert_end(bi);
	table_close(rel, NoLock);
	for (int i = 0; i < n; i++)
		added[i].e->ws[state_cache_ws_lower(added[i].e, added[i].ws)].tid = tids[i];
}

/*
 * Insert the batch's window keys and apply what the new ones change.
 *
 * Only the keys that were not there yet (set A) change a result: each adds 1 to attacks of
 * its window, and 1 to new_attacks if no key of the same (machine, cmd_pid) is in
 * [ws - R, ws) (after the batch). An older key o that was new (no older key in
 * [o - R, o)) stops being new if a key of A falls in [o - R, o); the largest such key of A
 * has o as its next window start, so looking at the next start after each key of A finds
 * every such o (counted once). The changes are added to the windows' rows, which therefore
 * equal the reference query's counts over the keys inserted since the row was made (a
 * rebuild deletes both: rebuild.c). The keys are looked up in the worker's copy of
 * window_keys (state_cache.c); the table gets the new ones.
 */
void
windows_update(PipelineRun *run)
{
	int			nrows = run->delta[0].n + run->delta[1].n;
	int64		r_us = (int64) run->s.retention_s * USECS_PER_SEC;
	KeyRef	   *added;
	KeyRef	   *flips;
	int			nadded = 0,
				nflips = 0,
				nd = 0;
	Datum	   *d_machine,
			   *d_ws,
			   *d_attacks,
			   *d_new;
	Datum		origin = window_origin();

	if (nrows == 0)
		return;
	added = palloc(sizeof(KeyRef) * nrows);
	for (int s = 0; s < 2; s++)
	{
		DeltaRows  *d = &run->delta[s];

		for (int r = 0; r < d->n; r++)
		{
			TimestampTz ws = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_bin,
																	 run->s.window,
																	 d->values[r][d->att_event_time],
																	 origin));

			if (state_cache_add_ws(d->entries[r], ws) >= 0)
			{
				added[nadded].e = d->entries[r];
				added[nadded].ws = ws;
				nadded++;
			}
		}
	}
	run->new_keys = nadded;
	if (nadded == 0)
		return;
	qsort(added, nadded, sizeof(KeyRef), ref_cmp);

	d_machine = palloc(sizeof(Datum) * nadded * 2);
	d_ws = palloc(sizeof(Datum) * nadded * 2);
	d_attacks = palloc(sizeof(Datum) * nadded * 2);
	d_new = palloc(sizeof(Datum) * nadded * 2);
	flips = palloc(sizeof(KeyRef) * nadded);
	for (int i = 0; i < nadded; i++)
	{
		StateEntry *e = added[i].e;
		TimestampTz ws = added[i].ws;
		int			at = state_cache_ws_lower(e, ws);
		bool		is_new = state_cache_ws_lower(e, ws - r_us) == at;

		if (ws >= run->gate_windows)
		{
			d_machine[nd] = Int32GetDatum(e->key.machine);
			d_ws[nd] = TimestampTzGetDatum(ws);
			d_attacks[nd] = Int32GetDatum(1);
			d_new[nd] = Int32GetDatum(is_new ? 1 : 0);
			nd++;
		}
		/* the next start of the key, if it is an older key that was new until now */
		if (at + 1 < e->nws && e->ws[at + 1].ws <= ws + r_us)
		{
			KeyRef		o = {e, e->ws[at + 1].ws};
			bool		older_before = false;

			if (bsearch(&o, added, nadded, sizeof(KeyRef), ref_cmp) != NULL)
				continue;		/* a key of A: counted above */
			for (int j = state_cache_ws_lower(e, o.ws - r_us); e->ws[j].ws < o.ws; j++)
			{
				KeyRef		x = {e, e->ws[j].ws};

				if (bsearch(&x, added, nadded, sizeof(KeyRef), ref_cmp) == NULL)
				{
					older_before = true;
					break;
				}
			}
			if (!older_before)
				flips[nflips++] = o;
		}
	}
	qsort(flips, nflips, sizeof(KeyRef), ref_cmp);
	for (int i = 0; i < nflips; i++)
	{
		if ((i > 0 && ref_cmp(&flips[i], &flips[i - 1]) == 0) || flips[i].ws < run->gate_windows)
			continue;
		d_machine[nd] = Int32GetDatum(flips[i].e->key.machine);
		d_ws[nd] = TimestampTzGetDatum(flips[i].ws);
		d_attacks[nd] = Int32GetDatum(0);
		d_new[nd] = Int32GetDatum(-1);
		nd++;
	}

	insert_keys(added, nadded);
	if (nd == 0)
		return;
	{
		Oid			t[5] = {INT4ARRAYOID, TIMESTAMPTZARRAYOID, INT4ARRAYOID, INT4ARRAYOID,
		INTERVALOID};
		Datum		v[5] = {pl_array(d_machine, NULL, nd, INT4OID),
			pl_array(d_ws, NULL, nd, TIMESTAMPTZOID),
			pl_array(d_attacks, NULL, nd, INT4OID),
			pl_array(d_new, NULL, nd, INT4OID),
		run->s.window};

		run->windows_changed =
			pl_exec("WITH s AS ("
					" SELECT machine, ws, sum(a) AS attacks, sum(n) AS new_attacks"
					" FROM unnest($1, $2, $3, $4) AS d(machine, ws, a, n) GROUP BY machine, ws"
					")"
					" INSERT INTO anomstream.potential_attacks AS pa"
					"   (window_start, window_end, machine, attacks, new_attacks)"
					" SELECT ws, ws + $5, machine, attacks, new_attacks FROM s"
					" WHERE attacks <> 0 OR new_attacks <> 0"
					" ON CONFLICT (window_start, machine) DO UPDATE"
					"   SET attacks = pa.attacks + excluded.attacks,"
					"       new_attacks = pa.new_attacks + excluded.new_attacks",
					5, t, v, NULL, SPI_OK_INSERT);
	}
}

/*
 * W moved: close the windows it passed (window_end in (W_old, W_new]; the primary key's
 * range on window_start) and delete the window keys no open or future window can look back
 * at (window_start < date_bin(W) - retention).
 */
void
windows_advance(PipelineRun *run)
{
	Oid			types[4] = {TIMESTAMPTZOID, TIMESTAMPTZOID, INTERVALOID, TIMESTAMPTZOID};
	Datum		values[4];

	if (TIMESTAMP_NOT_FINITE(run->watermark_new) || run->watermark_new == run->watermark_old)
		return;
	values[0] = TimestampTzGetDatum(run->watermark_old);
	values[1] = TimestampTzGetDatum(run->watermark_new);
	values[2] = run->s.window;
	values[3] = DirectFunctionCall2(timestamptz_mi_interval,
									DirectFunctionCall3(timestamptz_bin, run->s.window,
														values[1], window_origin()),
									run->s.retention);
	run->windows_closed =
		pl_exec("UPDATE anomstream.potential_attacks SET closed = true"
				" WHERE window_start > $1 - $3 AND window_start <= $2 - $3 AND NOT closed",
				3, types, values, NULL, SPI_OK_UPDATE);
	if (state_cache_check())
		run->evicted[2] = state_cache_delete_evicted(STATE_WINDOW_KEYS,
													 DatumGetTimestampTz(values[3]));
	else						/* no copy (a tick after an error or a rebuild): by a scan */
		run->evicted[2] =
			pl_exec("DELETE FROM anomstream.window_keys WHERE window_start < $1",
					1, &types[3], &values[3], NULL, SPI_OK_DELETE);
}
