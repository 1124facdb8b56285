/*-------------------------------------------------------------------------
 *
 * windows.c
 *	  potential_attacks: tumbling windows per machine counting distinct attacking
 *	  (machine, cmd_pid), and new_attacks deduplicated over new_attack_retention
 *	  (DESIGN.md §5, §6).
 *
 * State: anomstream.window_keys holds each distinct (machine, cmd_pid, window_start) of the
 * non-late attack rows of both streams. A batch inserts its keys; only the keys that were
 * not there yet (set A) can change a result: the window of each such key (attacks + 1, and
 * new or not), and the later windows of the same key within the retention, (ws, ws + R],
 * where the key stops being new. Those windows are recounted from window_keys exactly as
 * the reference query does and written only where a value changed (HOT updates; the
 * table has fillfactor 50 and no index on the changing columns). All of them are open:
 * non-late rows have event_time >= W, so their window ends after W. While a rebuild
 * replays, only windows from its first recomputed window on are written (rebuild.c); the
 * keys of earlier windows are still kept, for new_attacks.
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
#include "utils/timestamp.h"

#include "pipeline/pipeline_int.h"

#define ORIGIN "'1970-01-01 00:00:00+00'::timestamptz"

/*
 * Insert the batch's window keys and recount the windows they affect.
 */
void
windows_update(PipelineRun *run)
{
	Oid			types[4] = {INT8OID, INTERVALOID, INTERVALOID, INTERVALOID};
	Datum		values[4];
	bool		isnull;
	Datum		machines,
				cmd_pids,
				starts;

	if (run->attack_rows[0] == 0 && run->attack_rows[1] == 0)
		return;
	values[0] = Int64GetDatum(run->batch_id);
	values[1] = run->s.window;
	pl_exec("WITH d AS ("
			" SELECT machine, cmd_pid, pg_catalog.date_bin($2, event_time, " ORIGIN ") AS ws"
			" FROM anomstream.join_process WHERE batch_id = $1"
			" UNION"
			" SELECT machine, cmd_pid, pg_catalog.date_bin($2, event_time, " ORIGIN ")"
			" FROM anomstream.join_memory WHERE batch_id = $1"
			"), ins AS ("
			" INSERT INTO anomstream.window_keys (machine, cmd_pid, window_start)"
			" SELECT machine, cmd_pid, ws FROM d ON CONFLICT DO NOTHING"
			" RETURNING machine, cmd_pid, window_start"
			") SELECT count(*), array_agg(machine), array_agg(cmd_pid), array_agg(window_start)"
			" FROM ins", 2, types, values, NULL, SPI_OK_SELECT);
	run->new_keys = DatumGetInt64(pl_get(0, 1, &isnull));
	if (run->new_keys == 0)
		return;
	machines = SPI_datumTransfer(pl_get(0, 2, &isnull), false, -1);
	cmd_pids = SPI_datumTransfer(pl_get(0, 3, &isnull), false, -1);
	starts = SPI_datumTransfer(pl_get(0, 4, &isnull), false, -1);

	{
		Oid			t[6] = {INT4ARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, INTERVALOID,
		INTERVALOID, TIMESTAMPTZOID};
		Datum		v[6] = {machines, cmd_pids, starts, run->s.window, run->s.retention,
		TimestampTzGetDatum(run->gate_windows)};

		run->windows_changed =
			pl_exec("WITH a AS ("
					" SELECT * FROM unnest($1, $2, $3) AS a(machine, cmd_pid, ws)"
					"), aff AS ("
					" SELECT machine, ws FROM a"
					" UNION"
					" SELECT k.machine, k.window_start FROM a CROSS JOIN LATERAL ("
					"   SELECT l.machine, l.window_start FROM anomstream.window_keys l"
					"   WHERE l.machine = a.machine AND l.cmd_pid = a.cmd_pid"
					"     AND l.window_start > a.ws AND l.window_start <= a.ws + $5"
					"   OFFSET 0) k"	/* a probe of the key's index per new key, never a scan of all keys */
					"), cnt AS ("
					" SELECT f.machine, f.ws, count(*) AS attacks,"
					"   count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM anomstream.window_keys j"
					"     WHERE j.machine = k.machine AND j.cmd_pid = k.cmd_pid"
					"       AND j.window_start >= k.window_start - $5"
					"       AND j.window_start < k.window_start)) AS new_attacks"
					" FROM aff f JOIN anomstream.window_keys k"
					"   ON k.window_start = f.ws AND k.machine = f.machine"
					" GROUP BY f.machine, f.ws"
					")"
					" INSERT INTO anomstream.potential_attacks AS pa"
					"   (window_start, window_end, machine, attacks, new_attacks)"
					" SELECT ws, ws + $4, machine, attacks, new_attacks FROM cnt WHERE ws >= $6"
					" ON CONFLICT (window_start, machine) DO UPDATE"
					"   SET attacks = excluded.attacks, new_attacks = excluded.new_attacks"
					"   WHERE pa.attacks <> excluded.attacks OR pa.new_attacks <> excluded.new_attacks",
					6, t, v, NULL, SPI_OK_INSERT);
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
	Oid			types[4] = {TIMESTAMPTZOID, TIMESTAMPTZOID, INTERVALOID, INTERVALOID};
	Datum		values[4];

	if (TIMESTAMP_NOT_FINITE(run->watermark_new) || run->watermark_new == run->watermark_old)
		return;
	values[0] = TimestampTzGetDatum(run->watermark_old);
	values[1] = TimestampTzGetDatum(run->watermark_new);
	values[2] = run->s.window;
	values[3] = run->s.retention;
	run->windows_closed =
		pl_exec("UPDATE anomstream.potential_attacks SET closed = true"
				" WHERE window_start > $1 - $3 AND window_start <= $2 - $3 AND NOT closed",
				3, types, values, NULL, SPI_OK_UPDATE);
	run->evicted[2] =
		pl_exec("DELETE FROM anomstream.window_keys"
				" WHERE window_start < pg_catalog.date_bin($3, $2, " ORIGIN ") - $4",
				4, types, values, NULL, SPI_OK_DELETE);
}
