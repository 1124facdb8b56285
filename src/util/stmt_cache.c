/*-------------------------------------------------------------------------
 *
 * stmt_cache.c
 *	  Fixed SQL statements of the micro-batch, planned once per process.
 *
 * The worker runs the same few dozen statements in every micro-batch; parsing and planning
 * them each time cost more than executing most of them. stmt_exec() keeps one saved SPI plan
 * per distinct (statement text, argument types), so each is parsed once per process and
 * then only executed. PostgreSQL's plan cache revalidates saved plans when the objects they
 * use change (DDL, ANALYZE) or search_path differs, so a cached plan never runs against a
 * changed schema. It does not replan when a table merely grows: a plan made while a state
 * table was empty (first batches, after a rebuild) could keep a shape that no longer fits
 * as the table fills, until autovacuum's ANALYZE (seen with the join statement when it was
 * SQL: it probed the wrong index). So a plan older than STMT_REPLAN_MS (by
 * transaction start) is prepared again, for the tables' current sizes: a re-plan per
 * statement per second at most.
 *
 * Invariants: callers pass statements whose text does not embed values (values go in as
 * parameters), so the number of entries is bounded by the number of call sites (and, as a
 * guard, by STMT_MAX: further statements run unprepared); entries and
 * plans live in TopMemoryContext / CacheMemoryContext for the life of the process; a
 * statement that fails to prepare is not cached. SPI must be connected.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "executor/spi.h"
#include "access/xact.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "util/stmt_cache.h"

#define STMT_BUCKETS 64
#define STMT_MAX 512				/* beyond this, statements run unprepared */
#define STMT_REPLAN_MS 1000			/* plans older than this are prepared again */

typedef struct CachedStmt
{
	struct CachedStmt *next;
	uint32		hash;
	char	   *sql;
	int			nargs;
	Oid		   *types;
	SPIPlanPtr	plan;
	TimestampTz prepared_at;
} CachedStmt;

static CachedStmt *buckets[STMT_BUCKETS];
static int	nstmts = 0;

/*
 * Prepare and save a statement's plan.
 */
static SPIPlanPtr
prepare(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL)
		elog(ERROR, "anomstream: SPI_prepare failed (%s): %s",
			 SPI_result_code_string(SPI_result), sql);
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "anomstream: SPI_keepplan failed: %s", sql);
	return plan;
}

/*
 * The saved plan of a statement, prepared on first use and again once it is older than
 * STMT_REPLAN_MS; NULL when the cache is full.
 */
static SPIPlanPtr
stmt_plan(const char *sql, int nargs, Oid *types)
{
	uint32		h = hash_bytes((const unsigned char *) sql, (int) strlen(sql));
	CachedStmt *e;
	SPIPlanPtr	plan;
	MemoryContext old;
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	for (e = buckets[h % STMT_BUCKETS]; e; e = e->next)
		if (e->hash == h && e->nargs == nargs && strcmp(e->sql, sql) == 0 &&
			(nargs == 0 || memcmp(e->types, types, sizeof(Oid) * nargs) == 0))
		{
			if (TimestampDifferenceExceeds(e->prepared_at, now, STMT_REPLAN_MS))
			{
				plan = prepare(sql, nargs, types);
				SPI_freeplan(e->plan);
				e->plan = plan;
				e->prepared_at = now;
			}
			return e->plan;
		}
	if (nstmts >= STMT_MAX)
		return NULL;

	plan = prepare(sql, nargs, types);

	old = MemoryContextSwitchTo(TopMemoryContext);
	e = palloc(sizeof(CachedStmt));
	e->hash = h;
	e->sql = pstrdup(sql);
	e->nargs = nargs;
	e->types = palloc(sizeof(Oid) * Max(nargs, 1));
	if (nargs > 0)
		memcpy(e->types, types, sizeof(Oid) * nargs);
	e->plan = plan;
	e->prepared_at = now;
	e->next = buckets[h % STMT_BUCKETS];
	buckets[h % STMT_BUCKETS] = e;
	nstmts++;
	MemoryContextSwitchTo(old);
	return plan;
}

/*
 * Run a statement with arguments through its saved plan; anything but the expected SPI
 * result is an internal error. Returns the number of rows processed.
 */
uint64
stmt_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
		  int expect)
{
	SPIPlanPtr	plan = stmt_plan(sql, nargs, types);
	int			rc = plan ? SPI_execute_plan(plan, values, nulls, false, 0)
		: SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (rc != expect)
		elog(ERROR, "anomstream: statement failed (%s): %s", SPI_result_code_string(rc), sql);
	return SPI_processed;
}
