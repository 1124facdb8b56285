/*-------------------------------------------------------------------------
 *
 * pause.c
 *	  anomstream.pause() and anomstream.resume(): hold the pipeline worker without stopping
 *	  it (DESIGN.md §10).
 *
 * The flag lives in the logged one-row table anomstream.control (column paused), so it
 * survives restarts and is carried by pg_dump, and is mirrored in the shared status block
 * (pause_known, paused, pause_gen) so the worker can test it every loop iteration without a
 * transaction.
 *
 * Invariants:
 *	- pause()/resume() write the table in the caller's transaction and publish the new value
 *	  to shared memory only when that transaction commits (an XactCallback), then wake the
 *	  worker; an aborted call changes nothing.
 *	- Every committed pause()/resume() bumps pause_gen. The worker copies the table into
 *	  shared memory (ops_paused) only if pause_gen did not move since before its snapshot,
 *	  so a stale read can never overwrite a newer committed value.
 *	- anomstream.claim() publishes the restored table's flag the same way, so a copy restored
 *	  from a paused database stays paused once claimed.
 *	- ops_paused() answers from shared memory while it knows the flag is off (the hot path);
 *	  while the flag is unknown (first iteration after a server start) or on, it re-reads the
 *	  table, so a DROP/CREATE EXTENSION or a restored table cannot leave the worker held by a
 *	  flag that no longer exists.
 *	- A paused worker consumes nothing: the loop commits the batch it already collected,
 *	  then only waits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "utils/snapmgr.h"

#include "shmem.h"
#include "ops/ops.h"

PG_FUNCTION_INFO_V1(anomstream_pause);
PG_FUNCTION_INFO_V1(anomstream_resume);

static bool callback_registered = false;
static bool pending = false;	/* this transaction called pause() or resume() */
static bool pending_value = false;

/*
 * Set the worker's latch, if there is a worker.
 */
void
ops_wake_worker(void)
{
	pid_t		pid;
	PGPROC	   *proc;

	if (anomstream_shared == NULL)
		return;
	LWLockAcquire(anomstream_shared->lock, LW_SHARED);
	pid = anomstream_shared->worker_pid;
	LWLockRelease(anomstream_shared->lock);
	if (pid == 0)
		return;
	proc = BackendPidGetProc(pid);
	if (proc != NULL)
		SetLatch(&proc->procLatch);
}

/*
 * Publish a committed pause()/resume() to the worker.
 */
static void
pause_xact_callback(XactEvent event, void *arg)
{
	if (!pending)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			pending = false;
			if (anomstream_shared != NULL)
			{
				LWLockAcquire(anomstream_shared->lock, LW_EXCLUSIVE);
				anomstream_shared->paused = pending_value;
				anomstream_shared->pause_known = true;
				anomstream_shared->pause_gen++;
				LWLockRelease(anomstream_shared->lock);
				ops_wake_worker();
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			pending = false;
			break;
		case XACT_EVENT_PRE_PREPARE:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot prepare a transaction that called anomstream.pause() or anomstream.resume()")));
			break;
		default:
			break;
	}
}

/*
 * Publish value as the worker's pause flag when the current transaction commits.
 */
void
ops_pause_publish_at_commit(bool value)
{
	if (!callback_registered)
	{
		RegisterXactCallback(pause_xact_callback, NULL);
		callback_registered = true;
	}
	pending = true;
	pending_value = value;
}

/*
 * Write the flag (caller's transaction) and arrange to publish it at commit.
 */
static void
set_paused(bool value)
{
	Oid			types[2] = {BOOLOID, NAMEOID};
	Datum		values[2];
	char	   *who = GetUserNameFromId(GetOuterUserId(), false);

	values[0] = BoolGetDatum(value);
	values[1] = CStringGetDatum(who);
	SPI_connect();
	if (SPI_execute_with_args("INSERT INTO anomstream.control AS c (singleton, paused, paused_at, paused_by)"
							  " VALUES (true, $1, pg_catalog.now(), $2)"
							  " ON CONFLICT (singleton) DO UPDATE SET paused = EXCLUDED.paused,"
							  " paused_at = EXCLUDED.paused_at, paused_by = EXCLUDED.paused_by",
							  2, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "anomstream: cannot write anomstream.control");
	SPI_finish();
	ops_pause_publish_at_commit(value);
}

/*
 * anomstream.pause(): the worker stops consuming after its current micro-batch.
 */
Datum
anomstream_pause(PG_FUNCTION_ARGS)
{
	set_paused(true);
	if (anomstream_shared == NULL)
		ereport(NOTICE,
				(errmsg("anomstream is not preloaded; the pause takes effect when the worker starts")));
	PG_RETURN_VOID();
}

/*
 * anomstream.resume(): the worker consumes again.
 */
Datum
anomstream_resume(PG_FUNCTION_ARGS)
{
	set_paused(false);
	PG_RETURN_VOID();
}

/*
 * Copy the flag from anomstream.control into shared memory, unless a pause()/resume()
 * committed since gen was read. Needs a transaction and SPI; a missing table or row
 * counts as not paused.
 */
static void
sync_from_table(uint64 gen)
{
	bool		paused = false;

	bool		exists;
	bool		isnull;

	if (SPI_execute("SELECT pg_catalog.to_regclass('anomstream.control') IS NOT NULL",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "anomstream: cannot look up anomstream.control");
	exists = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (exists &&
		SPI_execute("SELECT c.paused FROM anomstream.control c", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "anomstream: cannot read anomstream.control");
	if (exists && SPI_processed > 0)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		paused = !isnull && DatumGetBool(d);
	}
	LWLockAcquire(anomstream_shared->lock, LW_EXCLUSIVE);
	if (anomstream_shared->pause_gen == gen)
	{
		anomstream_shared->paused = paused;
		anomstream_shared->pause_known = true;
	}
	LWLockRelease(anomstream_shared->lock);
}

/*
 * Is the worker paused? Called by the worker outside any transaction.
 */
bool
ops_paused(void)
{
	bool		known;
	bool		paused;
	uint64		gen;

	if (anomstream_shared == NULL)
		return false;
	LWLockAcquire(anomstream_shared->lock, LW_SHARED);
	known = anomstream_shared->pause_known;
	paused = anomstream_shared->paused;
	gen = anomstream_shared->pause_gen;
	LWLockRelease(anomstream_shared->lock);
	if (known && !paused)
		return false;

	/* Unknown or paused: the table decides (the snapshot is taken after gen was read). */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	sync_from_table(gen);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();

	LWLockAcquire(anomstream_shared->lock, LW_SHARED);
	paused = anomstream_shared->pause_known && anomstream_shared->paused;
	LWLockRelease(anomstream_shared->lock);
	return paused;
}
