/*-------------------------------------------------------------------------
 *
 * schema_version.c
 *	  The worker runs only against the schema version its library was built for
 *	  (DESIGN.md §10: ALTER EXTENSION UPDATE with a schema-version mismatch pauses it).
 *
 * When a new library is installed before `ALTER EXTENSION anomstream UPDATE` ran (or a
 * database is restored from a dump of another version), the tables the worker writes may
 * not have the shape it expects. ops_schema_version_ok() compares pg_extension.extversion
 * with ANOMSTREAM_VERSION (the control file's default_version, compiled in); on a mismatch
 * the worker consumes nothing, shows state "paused (schema version mismatch)" and logs it
 * once with a hint, until the versions agree again.
 *
 * Invariants: the check runs in its own short transaction outside any micro-batch (in
 * setup() and at most once a second in the running loop), so a mismatch never reaches a
 * batch that already started; positions do not move while the versions differ, so nothing
 * is lost: consumption resumes from the durable positions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "ops/ops.h"
#include "util/stmt_cache.h"

#ifndef ANOMSTREAM_VERSION
#error "ANOMSTREAM_VERSION must be defined by the build (the control file's default_version)"
#endif

#define CHECK_EVERY_MS 1000

static TimestampTz last_check = 0;
static bool last_ok = true;
static bool mismatch_logged = false;

/*
 * The installed extension's version in this database; NULL if it is not installed.
 * Caller is in a transaction.
 */
static char *
installed_version(void)
{
	char	   *v = NULL;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "anomstream: SPI_connect failed");
	if (stmt_exec("SELECT e.extversion FROM pg_catalog.pg_extension e"
				  " WHERE e.extname OPERATOR(pg_catalog.=) 'anomstream'",
				  0, NULL, NULL, NULL, SPI_OK_SELECT) == 1)
	{
		char	   *s = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (s)
			v = MemoryContextStrdup(TopTransactionContext, s);
	}
	SPI_finish();
	return v;
}

/*
 * May the worker consume with this library against this database's schema? force: check
 * now, else at most once a second (answering the last result in between). Own
 * transaction; call outside any transaction.
 */
bool
ops_schema_version_ok(bool force)
{
	TimestampTz now = GetCurrentTimestamp();
	char	   *v;
	bool		ok;

	if (!force && !TimestampDifferenceExceeds(last_check, now, CHECK_EVERY_MS))
		return last_ok;
	last_check = now;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	v = installed_version();
	/* not installed: setup() waits for the extension, which is another state */
	ok = (v == NULL || strcmp(v, ANOMSTREAM_VERSION) == 0);
	if (!ok && !mismatch_logged)
	{
		ereport(LOG,
				(errmsg("anomstream: the worker is paused: extension schema version \"%s\" does not match library version \"%s\"",
						v, ANOMSTREAM_VERSION),
				 errdetail("The worker consumes nothing until the versions agree; no position moves, so nothing is lost."),
				 errhint("Run ALTER EXTENSION anomstream UPDATE in the worker's database.")));
		mismatch_logged = true;
	}
	if (ok && mismatch_logged)
	{
		ereport(LOG,
				(errmsg("anomstream: extension schema version matches library version \"%s\" again; resuming",
						ANOMSTREAM_VERSION)));
		mismatch_logged = false;
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	last_ok = ok;
	return ok;
}
