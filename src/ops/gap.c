/*-------------------------------------------------------------------------
 *
 * gap.c
 *	  Kafka gaps (DESIGN.md §7): a partition whose position Kafka no longer has stops with
 *	  state 'gap' until anomstream.accept_gap(topic, partition) records the lost range in
 *	  anomstream.gaps and moves the position to the earliest offset Kafka still has.
 *
 * The consumer runs with auto.offset.reset=error: librdkafka reports the out-of-range
 * position and stops fetching that partition only. The worker then marks the partition
 * (PartState.gap), asks the broker for the partition's earliest offset and publishes both
 * in the shared status block; the other partitions keep flowing.
 *
 * Invariants:
 *	- accept_gap() runs in the caller's transaction: it refuses unless the partition is
 *	  stopped at a gap, its earliest offset is known, and everything the worker read from it
 *	  is durable (durable_offset >= the worker's next offset); then it inserts the gaps row
 *	  (from = durable position, to = earliest - 1, who, when), moves durable, staging-low and
 *	  staged positions to the earliest offset, and forgets batch ranges below it (so a refill
 *	  after a crash does not start inside the gap).
 *	- Only when that transaction commits is the worker told (reassign_gen in the shared
 *	  block); it then commits the batch it holds, re-reads every position from PostgreSQL and
 *	  re-assigns Kafka. A rolled-back accept_gap() changes nothing.
 *	- Nothing of the lost range is ever consumed: the position jumps over it in one
 *	  transaction with the gaps row that documents it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "shmem.h"
#include "ops/ops.h"
#include "util/stmt_cache.h"

#define GAP_QUERY_TIMEOUT_MS 1000	/* one broker round trip; a rare path */

PG_FUNCTION_INFO_V1(anomstream_accept_gap);

static uint64 seen_reassign_gen = 0;

/*
 * anomstream.accept_gap(topic, partition) → (from_offset, to_offset) of the lost range.
 */
Datum
anomstream_accept_gap(PG_FUNCTION_ARGS)
{
	char	   *topic;
	int32		partition;
	PartitionStatus st;
	bool		found = false;
	int64		durable = 0;
	int64		from;
	int64		to;
	bool		isnull;
	TupleDesc	tupdesc;
	Datum		result[2];
	bool		rnulls[2] = {false, false};
	Oid			types[6] = {TEXTOID, INT4OID, INT8OID, INT8OID, NAMEOID, NAMEOID};
	Datum		values[6];

	anomstream_check_preloaded();
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("topic and partition must not be null")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "anomstream: accept_gap must return a record");
	topic = text_to_cstring(PG_GETARG_TEXT_PP(0));
	partition = PG_GETARG_INT32(1);

	LWLockAcquire(anomstream_shared->lock, LW_SHARED);
	for (int i = 0; i < anomstream_shared->npartitions && !found; i++)
	{
		if (anomstream_shared->parts[i].partition == partition &&
			strcmp(anomstream_shared->parts[i].topic, topic) == 0)
		{
			st = anomstream_shared->parts[i];
			found = true;
		}
	}
	LWLockRelease(anomstream_shared->lock);

	/* the worker must be consuming this partition */
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("partition %d of topic \"%s\" is not consumed by this server",
						partition, topic),
				 errhint("anomstream.status lists the partitions the worker consumes.")));
	/* it must be stopped at a gap */
	if (!st.gap)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("partition %s/%d is not stopped at a gap", topic, partition),
				 errdetail("Only a partition whose state in anomstream.status is 'gap' can be moved past a gap.")));
	/* and the broker must have told us where its data starts now */
	if (st.gap_low < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the earliest offset Kafka has for partition %s/%d is not known yet",
						topic, partition),
				 errhint("Try again in a few seconds; the worker asks the broker again.")));

	values[0] = CStringGetTextDatum(topic);
	values[1] = Int32GetDatum(partition);
	SPI_connect();
	(void) stmt_exec("SELECT p.durable_offset FROM anomstream.positions p"
		" WHERE p.topic OPERATOR(pg_catalog.=) $1 AND p.kafka_partition OPERATOR(pg_catalog.=) $2"
		" FOR UPDATE", 2, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed > 0)
		durable = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
											  &isnull));
	/* everything the worker read before the gap must be committed first */
	if (st.next_offset >= 0 && durable < st.next_offset)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the worker has not yet committed what it read of partition %s/%d before the gap",
						topic, partition),
				 errdetail("Durable position " INT64_FORMAT ", read up to " INT64_FORMAT ".",
						   durable, st.next_offset),
				 errhint("Try again in a few seconds.")));

	from = durable;
	to = st.gap_low - 1;
	values[2] = Int64GetDatum(from);
	values[3] = Int64GetDatum(st.gap_low);
	values[4] = CStringGetDatum(GetUserNameFromId(GetOuterUserId(), false));
	values[5] = CStringGetDatum(GetUserNameFromId(GetSessionUserId(), false));
	if (to >= from)
		(void) stmt_exec("INSERT INTO anomstream.gaps (topic, kafka_partition, from_offset, to_offset,"
			" accepted_by, session_user_name)"
			" VALUES ($1, $2, $3, $4 OPERATOR(pg_catalog.-) 1, $5, $6)",
			6, types, values, NULL, SPI_OK_INSERT);
	else
	{
		/* Kafka has the position again (e.g. the broker came back): nothing is lost */
		ereport(NOTICE,
				(errmsg("Kafka has partition %s/%d from offset " INT64_FORMAT "; nothing was lost",
						topic, partition, st.gap_low)));
		result[0] = result[1] = (Datum) 0;
		rnulls[0] = rnulls[1] = true;
	}
	if (to >= from)
	{
		(void) stmt_exec("INSERT INTO anomstream.positions AS p (topic, kafka_partition, durable_offset, staging_low)"
			" VALUES ($1, $2, $4, $4) ON CONFLICT (topic, kafka_partition) DO UPDATE"
			" SET durable_offset = excluded.durable_offset, staging_low = excluded.staging_low,"
			"     updated_at = pg_catalog.now()",
			4, types, values, NULL, SPI_OK_INSERT);
		(void) stmt_exec("INSERT INTO anomstream.staged_positions AS s (topic, kafka_partition, staged_offset)"
			" VALUES ($1, $2, $4) ON CONFLICT (topic, kafka_partition) DO UPDATE"
			" SET staged_offset = excluded.staged_offset",
			4, types, values, NULL, SPI_OK_INSERT);
		(void) stmt_exec("DELETE FROM anomstream.batch_ranges r"
			" WHERE r.topic OPERATOR(pg_catalog.=) $1 AND r.kafka_partition OPERATOR(pg_catalog.=) $2"
			"   AND r.last_offset OPERATOR(pg_catalog.<) $4",
			4, types, values, NULL, SPI_OK_DELETE);
		result[0] = Int64GetDatum(from);
		result[1] = Int64GetDatum(to);
	}
	SPI_finish();

	ops_signal_at_commit(OPS_SIGNAL_REASSIGN);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), result, rnulls)));
}

/*
 * Worker, outside any transaction: did an accept_gap() commit since the last call? Then
 * the worker re-reads its positions and re-assigns Kafka.
 */
bool
ops_reassign_requested(void)
{
	uint64		gen;

	if (anomstream_shared == NULL)
		return false;
	LWLockAcquire(anomstream_shared->lock, LW_SHARED);
	gen = anomstream_shared->reassign_gen;
	LWLockRelease(anomstream_shared->lock);
	if (gen == seen_reassign_gen)
		return false;
	seen_reassign_gen = gen;
	return true;
}

/*
 * Worker: is any partition stopped at a gap?
 */
bool
ops_any_gap(const PartState *parts, int nparts)
{
	for (int i = 0; i < nparts; i++)
		if (parts[i].gap)
			return true;
	return false;
}

/*
 * Worker: ask the broker for the earliest offset of a partition stopped at a gap (once it
 * is known it is kept; the worker calls this again while it is not).
 */
void
ops_gap_find_earliest(rd_kafka_t *rk, PartState *p)
{
	int64_t		low = -1;
	int64_t		high = -1;

	if (!p->gap || p->gap_low >= 0 || rk == NULL)
		return;
	if (rd_kafka_query_watermark_offsets(rk, p->topic, p->partition, &low, &high,
										 GAP_QUERY_TIMEOUT_MS) == RD_KAFKA_RESP_ERR_NO_ERROR &&
		low >= 0)
	{
		p->gap_low = low;
		ereport(LOG,
				(errmsg("anomstream: partition %s/%d stopped at a gap: offsets " INT64_FORMAT " to " INT64_FORMAT " are no longer in Kafka",
						p->topic, p->partition, p->next_offset, (int64) low - 1),
				 errhint("SELECT anomstream.accept_gap('%s', %d); records the lost range and resumes at offset " INT64_FORMAT ".",
						 p->topic, p->partition, (int64) low)));
	}
}
