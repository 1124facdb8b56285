/*-------------------------------------------------------------------------
 *
 * pipeline.c
 *	  One pipeline step per micro-batch (and per idle tick): the order of the operators,
 *	  bookkeeping, retention and alerts (DESIGN.md §5-§7).
 *
 * pipeline_process_batch() runs inside the worker's micro-batch transaction, after the
 * staging rows were inserted and before the positions move; it reads the batch's rows from
 * the slots staging left in memory, never from staging:
 *	 settings check → load W and partition state → check or load the worker's copy of the
 *	 operator state (state_cache.c) → per stream: late rows and join buffers (late.c) → pairs
 *	 (join.c) → window keys and potential_attacks (windows.c) → new W_p and
 *	 idleness → W → close windows → evict state → batch record → NOTIFY.
 * pipeline_tick() runs the W part alone when no message arrived, so idle partitions stop
 * holding W and windows close without data.
 *
 * Invariants: every change happens in the caller's transaction (or the tick's own), so a
 * crash anywhere leaves state, results and durable positions consistent; the statements run
 * without JIT (util/plan_settings.c) and their saved plans follow the tables' current sizes
 * (util/stmt_cache.c); nothing reads staging rows of an earlier batch; the work is
 * proportional to the batch and the state it touches, never to the whole state; per-call
 * memory is the SPI procedure context, freed when the call returns.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "ingest/decode.h"
#include "keyed/keyed.h"
#include "pipeline/pipeline.h"
#include "pipeline/pipeline_int.h"
#include "util/plan_settings.h"

#define RETENTION_EVERY_MS 60000
#define BATCH_LOG_KEEP "1 day"
#define TICK_MIN_MS 200

static TimestampTz last_retention = 0;
static TimestampTz last_tick = 0;

/*
 * Expire the batch log, at most once a minute. (Late rows expire with the other retained
 * tables, in chunks, in ops/retention.c.)
 */
static void
apply_retention(TimestampTz now)
{
	if (!TimestampDifferenceExceeds(last_retention, now, RETENTION_EVERY_MS))
		return;
	last_retention = now;
	pl_exec("DELETE FROM anomstream.pipeline_batches "
			"WHERE processed_at < pg_catalog.now() - interval '" BATCH_LOG_KEEP "'",
			0, NULL, NULL, NULL, SPI_OK_DELETE);
}

/*
 * W moved: close windows, evict state, count it.
 */
static void
after_watermark(PipelineRun *run)
{
	windows_advance(run);
	join_evict(run);
}

/*
 * Send the alerts of this run (delivered at commit).
 */
static void
notify(PipelineRun *run)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char		buf[256];
	char	   *w = DatumGetCString(DirectFunctionCall1(timestamptz_out,
														TimestampTzGetDatum(run->watermark_new)));

	if (run->pairs > 0)
	{
		snprintf(buf, sizeof(buf), "{\"batch_id\": %lld, \"pairs\": %lld}",
				 (long long) run->batch_id, (long long) run->pairs);
		values[0] = CStringGetTextDatum("anomstream_detected");
		values[1] = CStringGetTextDatum(buf);
		pl_exec("SELECT pg_catalog.pg_notify($1, $2)", 2, types, values, NULL, SPI_OK_SELECT);
	}
	if (run->windows_closed > 0)
	{
		snprintf(buf, sizeof(buf), "{\"batch_id\": %lld, \"closed\": %lld, \"watermark\": \"%s\"}",
				 (long long) run->batch_id, (long long) run->windows_closed, w);
		values[0] = CStringGetTextDatum("anomstream_window_closed");
		values[1] = CStringGetTextDatum(buf);
		pl_exec("SELECT pg_catalog.pg_notify($1, $2)", 2, types, values, NULL, SPI_OK_SELECT);
	}
}

/*
 * Update pipeline_state's counters (held rows, totals) and, for a batch, its figures.
 */
static void
record(PipelineRun *run, bool batch, double ms)
{
	Oid			types[12] = {INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID,
		FLOAT8OID, FLOAT8OID, BOOLOID, INT8OID, INT8OID, INT8OID};
	Datum		values[12];
	char		nulls[12];
	double		lag = 0;

	memset(nulls, ' ', sizeof(nulls));
	if (run->has_event_time)
		lag = (double) (GetCurrentTimestamp() - run->max_event_time_seen) / 1000.0;
	else
		nulls[7] = 'n';
	values[0] = Int64GetDatum(run->attack_rows[0] - run->evicted[0]);
	values[1] = Int64GetDatum(run->attack_rows[1] - run->evicted[1]);
	values[2] = Int64GetDatum(run->new_keys - run->evicted[2]);
	values[3] = Int64GetDatum(run->pairs);
	values[4] = Int64GetDatum(run->windows_closed);
	values[5] = Int64GetDatum(run->batch_id);
	values[6] = Float8GetDatum(ms);
	values[7] = Float8GetDatum(lag);
	values[8] = BoolGetDatum(batch);
	values[9] = Int64GetDatum(run->rows);
	values[10] = Int64GetDatum(run->late_rows);
	values[11] = Int64GetDatum(run->attack_rows[0] + run->attack_rows[1]);
	pl_exec("UPDATE anomstream.pipeline_state SET "
			"held_process = held_process + $1, held_memory = held_memory + $2, "
			"held_keys = held_keys + $3, pairs = pairs + $4, windows_closed = windows_closed + $5, "
			"batches = batches + CASE WHEN $9 THEN 1 ELSE 0 END, "
			"last_batch_id = CASE WHEN $9 THEN $6 ELSE last_batch_id END, "
			"last_batch_at = CASE WHEN $9 THEN pg_catalog.transaction_timestamp() ELSE last_batch_at END, "
			"last_batch_rows = CASE WHEN $9 THEN $10 ELSE last_batch_rows END, "
			"last_pipeline_ms = CASE WHEN $9 THEN $7 ELSE last_pipeline_ms END, "
			"last_event_lag_ms = CASE WHEN $9 AND $8 IS NOT NULL THEN $8 ELSE last_event_lag_ms END "
			"RETURNING held_process, held_memory, held_keys",
			12, types, values, nulls, SPI_OK_UPDATE_RETURNING);
	if (batch)
	{
		Oid			bt[13] = {INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID,
			INT8OID, TIMESTAMPTZOID, FLOAT8OID, INT8OID, INT8OID, INT8OID};
		Datum		bv[13];
		bool		isnull;

		for (int c = 0; c < 3; c++)
			bv[10 + c] = pl_get(0, c + 1, &isnull);

		bv[0] = Int64GetDatum(run->batch_id);
		bv[1] = Int64GetDatum(run->rows);
		bv[2] = Int64GetDatum(run->late_rows);
		bv[3] = Int64GetDatum(run->attack_rows[0] + run->attack_rows[1]);
		bv[4] = Int64GetDatum(run->pairs);
		bv[5] = Int64GetDatum(run->new_keys);
		bv[6] = Int64GetDatum(run->windows_changed);
		bv[7] = Int64GetDatum(run->windows_closed);
		bv[8] = TimestampTzGetDatum(run->watermark_new);
		bv[9] = Float8GetDatum(ms);
		pl_exec("INSERT INTO anomstream.pipeline_batches (batch_id, rows, late_rows, attack_rows, "
				"pairs, new_keys, windows_changed, windows_closed, watermark, pipeline_ms, "
				"held_process, held_memory, held_keys) "
				"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
				13, bt, bv, NULL, SPI_OK_INSERT);
	}
}

/*
 * The pipeline step of micro-batch batch_id. Runs in the micro-batch transaction; raises
 * (aborting the batch) when the semantic settings changed (config pending).
 */
void
pipeline_process_batch(int64 batch_id, PartState *parts, int nparts, const StagedSlots *staged)
{
	PipelineRun run;
	TimestampTz start = GetCurrentTimestamp();
	int			guc_level;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "anomstream: SPI_connect failed");
	guc_level = plan_settings_without_jit_begin();
	memset(&run, 0, sizeof(run));
	run.batch_id = batch_id;
	run.now = start;
	pipeline_settings_load(&run.s, true);
	watermark_load(&run, parts, nparts);
	rebuild_load(&run);			/* a rebuild replaying: gates, replay positions */
	state_cache_prepare(run.held);

	for (int s = 0; s < DECODE_NSTREAMS; s++)
		late_classify(&run, s, &staged[s]);
	join_emit_pairs(&run);
	windows_update(&run);

	watermark_advance(&run);
	watermark_save(&run);
	after_watermark(&run);
	rebuild_advance(&run);
	record(&run, true, (double) (GetCurrentTimestamp() - start) / 1000.0);
	notify(&run);
	apply_retention(start);
	AtEOXact_GUC(true, guc_level);
	SPI_finish();
}

/*
 * Time passed without messages: re-decide idleness, move W, close windows and evict.
 * Runs in the caller's transaction if there is one, else in its own. Does nothing while
 * the settings are pending, and writes nothing unless something changed.
 */
void
pipeline_tick(PartState *parts, int nparts)
{
	PipelineRun run;
	bool		own = !IsTransactionState();
	TimestampTz now = GetCurrentTimestamp();
	int			guc_level;

	if (!TimestampDifferenceExceeds(last_tick, now, Max(anomstream_trigger_interval, TICK_MIN_MS)))
		return;
	last_tick = now;
	if (own)
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "anomstream: SPI_connect failed");
	guc_level = plan_settings_without_jit_begin();
	memset(&run, 0, sizeof(run));
	run.now = now;
	if (pipeline_settings_load(&run.s, false))
	{
		watermark_load(&run, parts, nparts);
		if (watermark_advance(&run))
		{
			watermark_save(&run);
			after_watermark(&run);
			if (run.watermark_new != run.watermark_old)
				keyed_state_evict(run.watermark_new);	/* keyed TTL follows W */
			record(&run, false, 0);
			notify(&run);
		}
		apply_retention(now);
	}
	AtEOXact_GUC(true, guc_level);
	SPI_finish();
	if (own)
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
}
