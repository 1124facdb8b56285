/*-------------------------------------------------------------------------
 *
 * retention.c
 *	  Expiry of results, dead letters and late rows (DESIGN.md §6 "Bounded state", §10).
 *
 * One rule per table: its time column and the setting that bounds it (-1 keeps rows forever).
 *	anomstream.dead_letters		received_at		anomstream.dead_letters_retention (7 days)
 *	anomstream.late_rows		recorded_at		anomstream.late_rows_retention (7 days)
 *	anomstream.potential_attacks window_end		anomstream.result_retention (forever);
 *												closed windows only
 *	anomstream.detected_attacks	p_event_time	anomstream.result_retention
 * Results expire by event time (a window's end, a pair's process row), so a window and the
 * pairs in it leave together; a row expires when its time is older than now() - retention.
 *
 * Invariants:
 *	- Rows are deleted in statements of at most RETENTION_CHUNK rows (a ctid list from a
 *	  LIMITed subquery), so no statement holds many row locks or builds a large trigger queue.
 *	- The worker's call (ops_apply_retention) deletes at most RETENTION_WORKER_MAX rows per
 *	  table per call, so a large backlog drains over several 10-second rounds instead of one
 *	  long transaction; anomstream.apply_retention() deletes everything that has expired.
 *	- A table or column that does not exist (late_rows before the pipeline is installed) is
 *	  skipped, never an error.
 *	- Everything runs in the caller's transaction with SPI connected; names are qualified.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "guc.h"
#include "ops/ops.h"

#define RETENTION_CHUNK 10000
#define RETENTION_WORKER_MAX 100000

typedef struct RetentionRule
{
	const char *table;			/* qualified name */
	const char *column;			/* time column */
	const char *extra;			/* further condition, "" for none */
	int		   *setting;		/* seconds, -1 = forever */
} RetentionRule;

static const RetentionRule rules[] = {
	{"anomstream.dead_letters", "received_at", "", &anomstream_dead_letters_retention},
	{"anomstream.late_rows", "recorded_at", "", &anomstream_late_rows_retention},
	{"anomstream.potential_attacks", "window_end", " AND t.closed", &anomstream_result_retention},
	{"anomstream.detected_attacks", "p_event_time", "", &anomstream_result_retention},
};

#define NRULES lengthof(rules)

PG_FUNCTION_INFO_V1(anomstream_apply_retention);

/*
 * Does the rule's table exist with its time column?
 */
static bool
rule_applies(const RetentionRule *r)
{
	Oid			types[2] = {TEXTOID, NAMEOID};
	Datum		values[2] = {CStringGetTextDatum(r->table), CStringGetDatum(r->column)};

	if (SPI_execute_with_args("SELECT 1 FROM pg_catalog.pg_attribute a"
							  " WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)"
							  " AND a.attname OPERATOR(pg_catalog.=) $2 AND NOT a.attisdropped",
							  2, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "anomstream: cannot look up %s", r->table);
	return SPI_processed > 0;
}

/*
 * Delete expired rows of one rule, at most max_rows (0: no limit); returns rows deleted.
 */
static int64
expire(const RetentionRule *r, int64 max_rows)
{
	Oid			types[1] = {FLOAT8OID};
	Datum		values[1] = {Float8GetDatum((double) *r->setting)};
	char	   *sql;
	int64		total = 0;

	sql = psprintf("DELETE FROM %s WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
				   "SELECT t.ctid FROM %s t WHERE t.%s OPERATOR(pg_catalog.<)"
				   " (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))%s"
				   " LIMIT %d))",
				   r->table, r->table, r->column, r->extra, RETENTION_CHUNK);
	for (;;)
	{
		if (SPI_execute_with_args(sql, 1, types, values, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "anomstream: retention of %s failed", r->table);
		total += SPI_processed;
		if (SPI_processed < RETENTION_CHUNK || (max_rows > 0 && total >= max_rows))
			break;
		CHECK_FOR_INTERRUPTS();
	}
	pfree(sql);
	return total;
}

/*
 * Apply every rule, at most max_rows per table; deleted[i] gets rule i's count (-1 skipped).
 */
static void
apply_rules(int64 max_rows, int64 *deleted)
{
	for (int i = 0; i < NRULES; i++)
	{
		deleted[i] = -1;
		if (*rules[i].setting < 0 || !rule_applies(&rules[i]))
			continue;
		deleted[i] = expire(&rules[i], max_rows);
	}
}

/*
 * The worker's retention round (inside run_retention()'s transaction); returns rows deleted.
 */
int64
ops_apply_retention(void)
{
	int64		deleted[NRULES];
	int64		total = 0;

	apply_rules(RETENTION_WORKER_MAX, deleted);
	for (int i = 0; i < NRULES; i++)
		if (deleted[i] > 0)
			total += deleted[i];
	if (total > 0)
		ereport(DEBUG1, (errmsg("anomstream: retention deleted %lld rows", (long long) total)));
	return total;
}

/*
 * anomstream.apply_retention(): expire everything that is due now; one row per rule.
 */
Datum
anomstream_apply_retention(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		deleted[NRULES];

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	apply_rules(0, deleted);
	SPI_finish();
	for (int i = 0; i < NRULES; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		values[0] = CStringGetTextDatum(rules[i].table);
		values[1] = CStringGetTextDatum(rules[i].column);
		if (*rules[i].setting < 0)
			nulls[2] = true;
		else
			values[2] = Int32GetDatum(*rules[i].setting);
		if (deleted[i] < 0)
			nulls[3] = true;
		else
			values[3] = Int64GetDatum(deleted[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
