/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Allocation of the shared status block (see shmem.h for its locking rules).
 *
 * PG15 pattern: shmem_request_hook asks for the space and an LWLock tranche,
 * shmem_startup_hook attaches (and initialises once) under AddinShmemInitLock. Without
 * shared_preload_libraries the block does not exist and anomstream_check_preloaded()
 * raises a clear error for anything that needs it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "shmem.h"

AnomstreamShared *anomstream_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void shmem_request(void);
static void shmem_startup(void);

/*
 * Install the shared memory hooks; only when preloaded.
 */
void
anomstream_shmem_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = shmem_startup;
}

/*
 * shmem_request_hook: reserve the block and its lock.
 */
static void
shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(AnomstreamShared)));
	RequestNamedLWLockTranche("anomstream", 1);
}

/*
 * shmem_startup_hook: attach, initialising on first use.
 */
static void
shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	anomstream_shared = ShmemInitStruct("anomstream", sizeof(AnomstreamShared), &found);
	if (!found)
	{
		memset(anomstream_shared, 0, sizeof(AnomstreamShared));
		anomstream_shared->lock = &(GetNamedLWLockTranche("anomstream"))->lock;
		anomstream_shared->state = WORKER_NOT_RUNNING;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Ensure the library was preloaded, so the worker and its status exist.
 */
void
anomstream_check_preloaded(void)
{
	if (anomstream_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("anomstream must be loaded via shared_preload_libraries"),
				 errhint("Add anomstream to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/*
 * Name of a worker state as shown to users.
 */
const char *
anomstream_worker_state_name(WorkerState state)
{
	switch (state)
	{
		case WORKER_NOT_RUNNING:
			return "not running";
		case WORKER_STARTING:
			return "starting";
		case WORKER_IDLE_NO_BROKERS:
			return "idle (no brokers)";
		case WORKER_WAITING_FOR_EXTENSION:
			return "waiting for extension";
		case WORKER_WAITING_FOR_RECOVERY:
			return "waiting for recovery";
		case WORKER_RUNNING:
			return "running";
		case WORKER_WAITING_FOR_BROKER:
			return "waiting for broker";
		case WORKER_ERROR:
			return "error";
		case WORKER_PAUSED:
			return "paused";
		case WORKER_CLAIM_REQUIRED:
			return "claim required";
		case WORKER_GAP:
			return "gap";
		case WORKER_SCHEMA_MISMATCH:
			return "paused (schema version mismatch)";
	}
	return "unknown";
}

/*
 * Publish a new worker state (and, if given, the error that caused it).
 */
void
anomstream_set_state(WorkerState state, const char *error)
{
	if (anomstream_shared == NULL)
		return;
	LWLockAcquire(anomstream_shared->lock, LW_EXCLUSIVE);
	if (anomstream_shared->state != state)
		anomstream_shared->state_since = GetCurrentTimestamp();
	anomstream_shared->state = state;
	if (error)
	{
		strlcpy(anomstream_shared->last_error, error, ANOMSTREAM_MSG_LEN);
		anomstream_shared->last_error_at = GetCurrentTimestamp();
	}
	LWLockRelease(anomstream_shared->lock);
}
