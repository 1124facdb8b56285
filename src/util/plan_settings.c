/*-------------------------------------------------------------------------
 *
 * plan_settings.c
 *	  Planner settings for the worker's statements whose cost must follow the micro-batch,
 *	  not the size of the table they read.
 *
 * The worker's tables grow and shrink by orders of magnitude faster than statistics follow
 * (staging between VACUUMs, with only a BRIN index on batch_id), so a statement that reads
 * one batch out of staging is planned with sequential scans off ("index scans"). Every such
 * plan, and any plan of a large estimate, costs more than jit_above_cost, and PostgreSQL would
 * compile it with LLVM at every execution (tens of milliseconds each): the statements of a
 * micro-batch are small and run every batch, so JIT is off for them ("without JIT"). (Plans
 * that must follow a table's current size are re-planned by util/stmt_cache.c.)
 *
 * Invariants: settings are made with GUC_ACTION_SAVE in the caller's GUC nest level and end
 * with AtEOXact_GUC(true, level) of that level, or with the transaction on error.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "util/plan_settings.h"

static void
set(const char *name, const char *value)
{
	(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true,
							 0, false);
}

/*
 * Sequential scans and JIT off in the current GUC nest level.
 */
void
plan_settings_index_scans(void)
{
	set("enable_seqscan", "off");
	set("jit", "off");
}

/*
 * The same in a new GUC nest level; returns the level for AtEOXact_GUC(true, level).
 */
int
plan_settings_index_scans_begin(void)
{
	int			level = NewGUCNestLevel();

	plan_settings_index_scans();
	return level;
}

/*
 * A new GUC nest level with JIT off; returns the level for AtEOXact_GUC(true, level).
 */
int
plan_settings_without_jit_begin(void)
{
	int			level = NewGUCNestLevel();

	set("jit", "off");
	return level;
}
