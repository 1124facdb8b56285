/*-------------------------------------------------------------------------
 *
 * status.c
 *	  anomstream.worker_status(): a consistent copy of the shared status block as rows.
 *
 * The copy is taken under the block's lock in shared mode and released before any row is
 * built, so a slow reader never delays the worker.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "shmem.h"

PG_FUNCTION_INFO_V1(anomstream_worker_status);

#define STATUS_COLS 21

/*
 * anomstream.worker_status(): one row per topic/partition the worker tracks.
 */
Datum
anomstream_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	AnomstreamShared *copy;
	int			nrows;

	anomstream_check_preloaded();
	InitMaterializedSRF(fcinfo, 0);

	copy = palloc(sizeof(AnomstreamShared));
	LWLockAcquire(anomstream_shared->lock, LW_SHARED);
	memcpy(copy, anomstream_shared, sizeof(AnomstreamShared));
	LWLockRelease(anomstream_shared->lock);

	nrows = Max(copy->npartitions, 1);
	for (int i = 0; i < nrows; i++)
	{
		Datum		values[STATUS_COLS];
		bool		nulls[STATUS_COLS];
		int			c = 0;

		memset(nulls, 0, sizeof(nulls));
		if (copy->npartitions > 0)
		{
			PartitionStatus *p = &copy->parts[i];

			values[c++] = CStringGetTextDatum(p->topic);
			values[c++] = Int32GetDatum(p->partition);
			values[c++] = Int64GetDatum(p->next_offset);
			nulls[c] = p->high_watermark < 0;
			values[c++] = Int64GetDatum(p->high_watermark);
			values[c++] = Int64GetDatum(p->messages);
			values[c++] = Int64GetDatum(p->rows);
			values[c++] = Int64GetDatum(p->dead_letters);
			values[c++] = BoolGetDatum(p->caught_up);
			nulls[c] = p->last_message_at == 0;
			values[c++] = TimestampTzGetDatum(p->last_message_at);
		}
		else
		{
			for (; c < 9; c++)
				nulls[c] = true;
		}
		/* rebuild: 'config pending' and 'rebuilding' refine the worker's own state */
		if (copy->config_pending && (copy->state == WORKER_RUNNING || copy->state == WORKER_ERROR))
			values[c++] = CStringGetTextDatum("config pending");
		else if (copy->rebuilding && copy->state == WORKER_RUNNING)
			values[c++] = CStringGetTextDatum("rebuilding");
		else
			values[c++] = CStringGetTextDatum(anomstream_worker_state_name(copy->state));
		nulls[c] = copy->state_since == 0;
		values[c++] = TimestampTzGetDatum(copy->state_since);
		nulls[c] = copy->worker_pid == 0;
		values[c++] = Int32GetDatum(copy->worker_pid);
		nulls[c] = copy->bootstrap[0] == '\0';
		values[c++] = CStringGetTextDatum(copy->bootstrap);
		values[c++] = BoolGetDatum(copy->embedded);
		values[c++] = Int64GetDatum(copy->batches);
		values[c++] = Float8GetDatum(copy->last_batch_ms);
		values[c++] = Float8GetDatum(copy->rows_per_sec);
		nulls[c] = copy->last_error[0] == '\0';
		values[c++] = CStringGetTextDatum(copy->last_error);
		nulls[c] = copy->last_error_at == 0;
		values[c++] = TimestampTzGetDatum(copy->last_error_at);
		/* ops: the partition stopped at a Kafka gap, and the earliest offset Kafka has */
		if (copy->npartitions > 0)
		{
			PartitionStatus *p = &copy->parts[i];

			values[c++] = BoolGetDatum(p->gap);
			nulls[c] = !p->gap || p->gap_low < 0;
			values[c++] = Int64GetDatum(p->gap_low);
		}
		else
		{
			nulls[c++] = true;
			nulls[c++] = true;
		}
		Assert(c == STATUS_COLS);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
