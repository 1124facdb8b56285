/*-------------------------------------------------------------------------
 *
 * signal.c
 *	  Telling the pipeline worker that a control function's transaction committed.
 *
 * skip(), accept_gap() and rebuild() write tables in the caller's transaction; the worker
 * must learn of the change only when (and only if) that transaction commits.
 * ops_signal_at_commit() arranges that: at commit it bumps the matching generation counter
 * in the shared block (skip_gen, reassign_gen, rebuild_gen) and sets the worker's latch; at
 * abort it forgets; a transaction that signals cannot be prepared. The worker
 * compares the counter with the value it last acted on.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"

#include "shmem.h"
#include "ops/ops.h"

static bool callback_registered = false;
static int	pending = 0;		/* OpsSignal bits to publish at commit */

/*
 * Publish the pending signals of a committed transaction.
 */
static void
signal_xact_callback(XactEvent event, void *arg)
{
	if (pending == 0)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		if (anomstream_shared != NULL)
		{
			LWLockAcquire(anomstream_shared->lock, LW_EXCLUSIVE);
			if (pending & OPS_SIGNAL_SKIPS)
				anomstream_shared->skip_gen++;
			if (pending & OPS_SIGNAL_REASSIGN)
				anomstream_shared->reassign_gen++;
			if (pending & OPS_SIGNAL_REBUILD)
				anomstream_shared->rebuild_gen++;
			LWLockRelease(anomstream_shared->lock);
			ops_wake_worker();
		}
		pending = 0;
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		pending = 0;
	else if (event == XACT_EVENT_PRE_PREPARE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot prepare a transaction that called an anomstream control function")));
}

/*
 * Tell the worker when the current transaction commits.
 */
void
ops_signal_at_commit(OpsSignal which)
{
	if (!callback_registered)
	{
		RegisterXactCallback(signal_xact_callback, NULL);
		callback_registered = true;
	}
	pending |= which;
}
