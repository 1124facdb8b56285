/*-------------------------------------------------------------------------
 *
 * bulk_insert.h
 *	  COPY-style bulk insert of already-formed rows into one table: staging rows, join
 *	  buffer rows.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_BULK_INSERT_H
#define ANOMSTREAM_BULK_INSERT_H

#include "postgres.h"

#include "access/htup.h"
#include "storage/itemptr.h"
#include "utils/relcache.h"

typedef struct BulkInserter BulkInserter;

extern BulkInserter *bulk_insert_begin(Relation rel);
extern void bulk_insert_capture_tids(BulkInserter *bi, ItemPointerData *tids);
extern HeapTuple bulk_insert_row(BulkInserter *bi, Datum *values, bool *isnull);
extern uint64 bulk_insert_end(BulkInserter *bi);

#endif							/* ANOMSTREAM_BULK_INSERT_H */
