/*-------------------------------------------------------------------------
 *
 * anomstream.c
 *	  Library entry point.
 *
 * _PG_init only delegates: each stage of the data flow registers its own settings, shared
 * memory, hooks and worker. Nothing here may start threads or call XGBoost (the postmaster
 * forks after _PG_init, and OpenMP hangs in a child forked after its threads started).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "guc.h"
#include "shmem.h"
#include "ingest/worker.h"
#include "parquet/copy.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Module load: register settings, then (only when preloaded) shared memory and the worker.
 */
void
_PG_init(void)
{
	anomstream_guc_init();
	anomstream_shmem_init();
	anomstream_worker_register();
	anomstream_parquet_init();
}
