/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The pipeline worker: registration and main loop.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_WORKER_H
#define ANOMSTREAM_WORKER_H

#include "postgres.h"

extern void anomstream_worker_register(void);
extern PGDLLEXPORT void anomstream_worker_main(Datum arg);

#endif							/* ANOMSTREAM_WORKER_H */
