/*-------------------------------------------------------------------------
 *
 * stmt_cache.h
 *	  Fixed SQL statements of the micro-batch, planned once per process.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_STMT_CACHE_H
#define ANOMSTREAM_STMT_CACHE_H

#include "postgres.h"

extern uint64 stmt_exec(const char *sql, int nargs, Oid *types, Datum *values,
						const char *nulls, int expect);

#endif							/* ANOMSTREAM_STMT_CACHE_H */
