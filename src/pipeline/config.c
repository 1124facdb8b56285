/*-------------------------------------------------------------------------
 *
 * config.c
 *	  The pipeline's semantic settings (DESIGN.md §7): window, lateness, join_bound and
 *	  new_attack_retention are stored in anomstream.pipeline_config at first start; while the
 *	  current settings differ, the pipeline is "config pending" and processes nothing.
 *
 * Invariants: the pipeline always computes with the stored values, which equal the
 * current ones; a difference raises an error that aborts the micro-batch (the worker
 * retries with backoff, status shows 'config pending'), so no row is ever taken over under
 * other semantics. anomstream.rebuild() (rebuild.c) is the way to change them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"

#include "guc.h"
#include "shmem.h"
#include "pipeline/pipeline_int.h"

/*
 * Publish whether the settings are pending (status shows 'config pending').
 */
static void
publish_pending(bool pending)
{
	if (anomstream_shared == NULL)
		return;
	LWLockAcquire(anomstream_shared->lock, LW_EXCLUSIVE);
	anomstream_shared->config_pending = pending;
	LWLockRelease(anomstream_shared->lock);
}

/*
 * Fill the interval datums from the millisecond values.
 */
static void
settings_datums(PipelineSettings *s)
{
	s->window = pl_interval_ms(s->window_ms);
	s->lateness = pl_interval_ms(s->lateness_ms);
	s->join_bound = pl_interval_ms(s->join_bound_ms);
	s->retention = pl_interval_ms((int64) s->retention_s * 1000);
}

/*
 * new_attack_retention must be a whole number of windows (DESIGN.md §6).
 */
static void
check_retention_multiple(int32 window_ms, int32 retention_s)
{
	if (((int64) retention_s * 1000) % window_ms != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("anomstream.new_attack_retention must be a multiple of anomstream.window"),
				 errdetail("new_attack_retention is %d s and window is %d ms.",
						   retention_s, window_ms),
				 errhint("Set anomstream.new_attack_retention to a whole number of windows and reload.")));
}

/*
 * Load the stored settings into s, storing the current ones at first start. Returns false
 * if they differ from the current settings: with raise, that is an error instead.
 */
bool
pipeline_settings_load(PipelineSettings *s, bool raise)
{
	bool		isnull;

	pl_exec("SELECT window_ms, lateness_ms, join_bound_ms, new_attack_retention_s "
			"FROM anomstream.pipeline_config", 0, NULL, NULL, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		Oid			types[4] = {INT4OID, INT4OID, INT4OID, INT4OID};
		Datum		values[4];

		check_retention_multiple(anomstream_window, anomstream_new_attack_retention);
		values[0] = Int32GetDatum(anomstream_window);
		values[1] = Int32GetDatum(anomstream_lateness);
		values[2] = Int32GetDatum(anomstream_join_bound);
		values[3] = Int32GetDatum(anomstream_new_attack_retention);
		pl_exec("INSERT INTO anomstream.pipeline_config "
				"(window_ms, lateness_ms, join_bound_ms, new_attack_retention_s) "
				"VALUES ($1, $2, $3, $4)", 4, types, values, NULL, SPI_OK_INSERT);
		s->window_ms = anomstream_window;
		s->lateness_ms = anomstream_lateness;
		s->join_bound_ms = anomstream_join_bound;
		s->retention_s = anomstream_new_attack_retention;
		settings_datums(s);
		publish_pending(false);
		ereport(LOG,
				(errmsg("anomstream: pipeline settings stored: window %d ms, lateness %d ms, join_bound %d ms, new_attack_retention %d s",
						s->window_ms, s->lateness_ms, s->join_bound_ms, s->retention_s)));
		return true;
	}
	s->window_ms = DatumGetInt32(pl_get(0, 1, &isnull));
	s->lateness_ms = DatumGetInt32(pl_get(0, 2, &isnull));
	s->join_bound_ms = DatumGetInt32(pl_get(0, 3, &isnull));
	s->retention_s = DatumGetInt32(pl_get(0, 4, &isnull));
	settings_datums(s);

	if (s->window_ms == anomstream_window && s->lateness_ms == anomstream_lateness &&
		s->join_bound_ms == anomstream_join_bound &&
		s->retention_s == anomstream_new_attack_retention)
	{
		publish_pending(false);
		return true;
	}
	publish_pending(true);
	if (raise)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("anomstream: config pending: the pipeline's semantic settings changed"),
				 errdetail("Results were computed with window %d ms, lateness %d ms, join_bound %d ms, new_attack_retention %d s; the settings now say %d ms, %d ms, %d ms, %d s.",
						   s->window_ms, s->lateness_ms, s->join_bound_ms, s->retention_s,
						   anomstream_window, anomstream_lateness, anomstream_join_bound,
						   anomstream_new_attack_retention),
				 errhint("Restore the stored values, or run anomstream.rebuild(from) to recompute the results from a time on with the new ones.")));
	return false;
}
