/*-------------------------------------------------------------------------
 *
 * claim.c
 *	  Restored copies and replicas must never consume production topics (DESIGN.md §7).
 *
 * At its first start the worker records the database cluster's system identifier (from
 * pg_control, new for every initdb) in anomstream.control, a logged extension config table
 * that pg_dump carries. A copy made with pg_dump/pg_restore into another cluster therefore
 * carries a foreign identifier: its worker consumes nothing and shows state
 * 'claim required' until an administrator runs anomstream.claim(), which records the new
 * identifier. (A file-level copy of a data directory keeps the identifier; that copy is the
 * same cluster as far as PostgreSQL is concerned.)
 *
 * Invariants:
 *	- ops_claim_ok() returns true only if the stored identifier equals this cluster's, or
 *	  none was stored yet (then it stores this one, in the same transaction).
 *	- Every micro-batch transaction re-checks (ops_claim_verify) and aborts if the row is gone
 *	  or names another cluster: a dump restored, or the extension re-created, under a running
 *	  worker is caught before the worker writes into it, and the worker's error recovery
 *	  then runs setup() again, which waits for a claim or records a first start.
 *	- anomstream.claim() runs with the owner's rights (SECURITY DEFINER, EXECUTE granted to
 *	  anomstream_admin only) and publishes the copy's pause flag at commit, so a copy of a
 *	  paused database stays paused after the claim.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

#include "shmem.h"
#include "ops/ops.h"
#include "util/stmt_cache.h"

PG_FUNCTION_INFO_V1(anomstream_claim);

static bool mismatch_logged = false;

/*
 * May this cluster's worker consume? Own transaction; the worker calls it in setup().
 */
bool
ops_claim_ok(void)
{
	int64		mine = (int64) GetSystemIdentifier();
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(mine)};
	bool		ok = true;
	bool		isnull = true;
	int64		stored = 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());

	(void) stmt_exec("SELECT pg_catalog.to_regclass('anomstream.control') IS NOT NULL", 0, NULL, NULL, NULL,
		SPI_OK_SELECT);
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
	{
		(void) stmt_exec("SELECT c.system_identifier FROM anomstream.control c FOR UPDATE", 0, NULL, NULL, NULL,
			SPI_OK_SELECT);
		isnull = true;
		if (SPI_processed > 0)
			stored = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1, &isnull));
		if (isnull)
		{
			/* First start (or a row written by pause() before it): this cluster owns it. */
			(void) stmt_exec("INSERT INTO anomstream.control AS c (singleton, system_identifier, claimed_at)"
				" VALUES (true, $1, pg_catalog.now())"
				" ON CONFLICT (singleton) DO UPDATE SET system_identifier = EXCLUDED.system_identifier,"
				" claimed_at = EXCLUDED.claimed_at",
				1, types, values, NULL, SPI_OK_INSERT);
			ereport(LOG,
					(errmsg("anomstream: recorded this cluster's system identifier %lld",
							(long long) mine)));
		}
		else if (stored != mine)
			ok = false;
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();

	if (!ok && !mismatch_logged)
		ereport(LOG,
				(errmsg("anomstream: this database was restored from another cluster; consuming nothing"),
				 errdetail("The recorded system identifier is %lld; this cluster's is %lld.",
						   (long long) stored, (long long) mine),
				 errhint("If this copy should consume the configured topics, run SELECT anomstream.claim();")));
	mismatch_logged = !ok;
	return ok;
}

/*
 * Inside a micro-batch transaction (SPI connected): raise an error unless anomstream.control
 * names this cluster. One indexed single-row read with a saved plan.
 */
void
ops_claim_verify(void)
{
	static SPIPlanPtr plan = NULL;
	int64		mine = (int64) GetSystemIdentifier();
	bool		isnull = true;
	int64		stored = 0;

	if (plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare("SELECT c.system_identifier FROM anomstream.control c", 0, NULL);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "anomstream: cannot prepare the claim check");
		plan = p;
	}
	if (SPI_execute_plan(plan, NULL, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "anomstream: cannot read anomstream.control");
	if (SPI_processed > 0)
		stored = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
											 &isnull));
	if (isnull || stored != mine)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("anomstream was restored or re-created under the running worker"),
				 errdetail("anomstream.control names %s, not this cluster's system identifier %lld.",
						   isnull ? "no cluster" : psprintf("system identifier %lld", (long long) stored),
						   (long long) mine),
				 errhint("The worker starts over from the positions in the database; a restored copy waits for anomstream.claim().")));
}

/*
 * anomstream.claim(): let this cluster's worker consume; returns the recorded identifier.
 */
Datum
anomstream_claim(PG_FUNCTION_ARGS)
{
	int64		mine = (int64) GetSystemIdentifier();
	Oid			types[2] = {INT8OID, NAMEOID};
	Datum		values[2];
	char	   *who = GetUserNameFromId(GetOuterUserId(), false);
	bool		isnull;
	bool		paused;

	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot claim anomstream on a server in recovery"),
				 errhint("Promote the server first.")));
	values[0] = Int64GetDatum(mine);
	values[1] = CStringGetDatum(who);
	SPI_connect();
	(void) stmt_exec("INSERT INTO anomstream.control AS c (singleton, system_identifier, claimed_at, claimed_by)"
		" VALUES (true, $1, pg_catalog.now(), $2)"
		" ON CONFLICT (singleton) DO UPDATE SET system_identifier = EXCLUDED.system_identifier,"
		" claimed_at = EXCLUDED.claimed_at, claimed_by = EXCLUDED.claimed_by"
		" RETURNING c.paused",
		2, types, values, NULL, SPI_OK_INSERT_RETURNING);
	paused = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();

	ops_pause_publish_at_commit(!isnull && paused);
	ereport(LOG,
			(errmsg("anomstream: claimed by \"%s\" for system identifier %lld", who,
					(long long) mine)));
	PG_RETURN_INT64(mine);
}
