/*-------------------------------------------------------------------------
 *
 * skip.c
 *	  anomstream.skip(topic, partition, offset): an administrator skips one Kafka message,
 *	  typically a poison message that makes every micro-batch fail (DESIGN.md §7, §10).
 *
 * skip() records the request in anomstream.skips (logged, an extension config table) in
 * the caller's transaction. The worker keeps a copy of that table in memory; a message
 * whose (topic, partition, offset) is listed is not decoded: it becomes a dead letter
 * holding the raw message and saying who skipped it and when.
 *
 * Invariants:
 *	- skip() refuses an offset below the partition's durable position (already processed),
 *	  reading that position FOR UPDATE, so it serializes with the micro-batch that moves it.
 *	- The worker reloads its copy in setup() and whenever a skip() committed (skip_gen in
 *	  the shared block, bumped at commit), before it absorbs a batch.
 *	- Inside every micro-batch transaction, after the positions are recorded (so after any
 *	  concurrent skip() committed), ops_skips_apply() marks the skips the batch applied; a
 *	  pending skip inside the batch's offsets that the worker did not know about aborts the
 *	  batch, which is then retried with the skip applied. So a skipped message is never
 *	  processed, and a skip is never silently lost.
 *	- During a refill after a crash a skipped message stages nothing either (no second dead
 *	  letter: the refill feeds staging only).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "guc.h"
#include "shmem.h"
#include "ops/ops.h"
#include "util/stmt_cache.h"

PG_FUNCTION_INFO_V1(anomstream_skip);

/* The worker's copy of anomstream.skips */
typedef struct SkipEntry
{
	char	   *topic;
	int32		partition;
	int64		offset;
	char	   *reason;			/* the dead letter's error text */
} SkipEntry;

static MemoryContext skip_cxt = NULL;
static SkipEntry *skips = NULL;
static int	nskips = 0;
static uint64 loaded_gen = 0;
static bool loaded = false;


/*
 * Is topic one of anomstream.topics?
 */
static bool
topic_configured(const char *topic)
{
	char	   *copy = pstrdup(anomstream_topics ? anomstream_topics : "");
	char	   *save = NULL;

	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
	{
		while (*t == ' ')
			t++;
		if (strcmp(t, topic) == 0)
			return true;
	}
	return false;
}

/*
 * Is (topic, partition) assigned to the running worker (shared status block)?
 */
static bool
partition_assigned(const char *topic, int32 partition)
{
	bool		found = false;

	if (anomstream_shared == NULL)
		return false;
	LWLockAcquire(anomstream_shared->lock, LW_SHARED);
	for (int i = 0; i < anomstream_shared->npartitions && !found; i++)
		found = anomstream_shared->parts[i].partition == partition &&
			strcmp(anomstream_shared->parts[i].topic, topic) == 0;
	LWLockRelease(anomstream_shared->lock);
	return found;
}

/*
 * anomstream.skip(topic, partition, offset) → true if recorded, false if already requested.
 */
Datum
anomstream_skip(PG_FUNCTION_ARGS)
{
	char	   *topic;
	int32		partition;
	int64		offset;
	Oid			types[5] = {TEXTOID, INT4OID, INT8OID, NAMEOID, NAMEOID};
	Datum		values[5];
	bool		have_position;
	int64		durable = -1;
	bool		isnull;
	bool		inserted;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("topic, partition and offset must not be null")));
	topic = text_to_cstring(PG_GETARG_TEXT_PP(0));
	partition = PG_GETARG_INT32(1);
	offset = PG_GETARG_INT64(2);

	/* a Kafka offset is never negative */
	if (offset < 0 || partition < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid Kafka position %s/%d offset " INT64_FORMAT, topic, partition,
						offset)));
	/* only the configured topics are consumed */
	if (!topic_configured(topic))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("topic \"%s\" is not consumed by anomstream", topic),
				 errdetail("anomstream.topics is \"%s\".", anomstream_topics ? anomstream_topics : "")));

	values[0] = CStringGetTextDatum(topic);
	values[1] = Int32GetDatum(partition);
	values[2] = Int64GetDatum(offset);
	values[3] = CStringGetDatum(GetUserNameFromId(GetOuterUserId(), false));
	values[4] = CStringGetDatum(GetUserNameFromId(GetSessionUserId(), false));

	SPI_connect();
	/* asked before (perhaps already applied): say so, whatever the position is now */
	(void) stmt_exec("SELECT 1 FROM anomstream.skips s"
		" WHERE s.topic OPERATOR(pg_catalog.=) $1 AND s.kafka_partition OPERATOR(pg_catalog.=) $2"
		"   AND s.kafka_offset OPERATOR(pg_catalog.=) $3", 3, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		SPI_finish();
		ereport(NOTICE,
				(errmsg("offset " INT64_FORMAT " of partition %s/%d is already being skipped",
						offset, topic, partition)));
		PG_RETURN_BOOL(false);
	}
	/* FOR UPDATE: a micro-batch moving this position commits before or after us, not across */
	(void) stmt_exec("SELECT p.durable_offset FROM anomstream.positions p"
		" WHERE p.topic OPERATOR(pg_catalog.=) $1 AND p.kafka_partition OPERATOR(pg_catalog.=) $2"
		" FOR UPDATE", 2, types, values, NULL, SPI_OK_SELECT);
	have_position = SPI_processed > 0;
	if (have_position)
		durable = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
											  &isnull));
	/* the partition must exist for this server */
	if (!have_position && !partition_assigned(topic, partition))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("partition %d of topic \"%s\" is not consumed by this server",
						partition, topic),
				 errhint("anomstream.status lists the partitions the worker consumes.")));
	/* an offset the worker already passed cannot be skipped */
	if (have_position && offset < durable)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("offset " INT64_FORMAT " of partition %s/%d was already processed",
						offset, topic, partition),
				 errdetail("The durable position of this partition is " INT64_FORMAT "; only messages at or after it can be skipped.",
						   durable)));

	(void) stmt_exec("INSERT INTO anomstream.skips (topic, kafka_partition, kafka_offset, requested_by, session_user_name)"
		" VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING", 5, types, values, NULL, SPI_OK_INSERT);
	inserted = SPI_processed > 0;
	SPI_finish();

	if (!inserted)
	{
		ereport(NOTICE,
				(errmsg("offset " INT64_FORMAT " of partition %s/%d is already being skipped",
						offset, topic, partition)));
		PG_RETURN_BOOL(false);
	}
	ops_signal_at_commit(OPS_SIGNAL_SKIPS);
	PG_RETURN_BOOL(true);
}

/*
 * Topic, partition and offset from columns 1-3 of SPI result row r.
 */
static void
read_position(uint64 r, SkipEntry *e)
{
	bool		isnull;

	e->topic = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1);
	e->partition = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2,
											   &isnull));
	e->offset = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 3,
											&isnull));
}

/*
 * Worker: (re)load the copy of anomstream.skips. Inside a transaction, SPI connected.
 */
void
ops_skips_load(void)
{
	uint64		gen = 0;
	uint64		n;
	MemoryContext old;

	if (anomstream_shared != NULL)
	{
		LWLockAcquire(anomstream_shared->lock, LW_SHARED);
		gen = anomstream_shared->skip_gen;
		LWLockRelease(anomstream_shared->lock);
	}
	if (skip_cxt == NULL)
		skip_cxt = AllocSetContextCreate(TopMemoryContext, "anomstream skips",
										 ALLOCSET_SMALL_SIZES);
	MemoryContextReset(skip_cxt);
	skips = NULL;
	nskips = 0;

	/* the table is missing while the extension is being created or was dropped */
	(void) stmt_exec("SELECT pg_catalog.to_regclass('anomstream.skips') IS NOT NULL", 0, NULL, NULL, NULL,
		SPI_OK_SELECT);
	{
		bool		isnull;

		if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										&isnull)))
		{
			loaded_gen = gen;
			loaded = true;
			return;
		}
	}
	(void) stmt_exec("SELECT s.topic, s.kafka_partition, s.kafka_offset,"
		" pg_catalog.format('skipped by anomstream.skip(): requested by %s (session user %s) at %s',"
		"   s.requested_by, s.session_user_name, s.requested_at)"
		" FROM anomstream.skips s", 0, NULL, NULL, NULL, SPI_OK_SELECT);
	n = SPI_processed;
	old = MemoryContextSwitchTo(skip_cxt);
	if (n > 0)
		skips = palloc(sizeof(SkipEntry) * n);
	for (uint64 r = 0; r < n; r++)
	{
		read_position(r, &skips[r]);
		skips[r].reason = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 4);
	}
	nskips = (int) n;
	MemoryContextSwitchTo(old);
	loaded_gen = gen;
	loaded = true;
}

/*
 * Worker, outside any transaction: reload the copy if a skip() committed since.
 */
void
ops_skips_refresh(void)
{
	uint64		gen;

	if (anomstream_shared == NULL)
		return;
	LWLockAcquire(anomstream_shared->lock, LW_SHARED);
	gen = anomstream_shared->skip_gen;
	LWLockRelease(anomstream_shared->lock);
	if (loaded && gen == loaded_gen)
		return;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	ops_skips_load();
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * Worker: the dead letter text if this message is skipped, else NULL.
 */
const char *
ops_skip_reason(const char *topic, int32 partition, int64 offset)
{
	for (int i = 0; i < nskips; i++)
		if (skips[i].offset == offset && skips[i].partition == partition &&
			strcmp(skips[i].topic, topic) == 0)
			return skips[i].reason;
	return NULL;
}

/*
 * Worker, inside the micro-batch transaction after its positions and batch ranges were
 * recorded: mark the skips this batch applied; abort the batch if a skip of one of its
 * messages committed after the worker loaded its copy (the retry applies it).
 */
void
ops_skips_apply(int64 batch_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(batch_id)};
	uint64		n;

	(void) stmt_exec("UPDATE anomstream.skips s SET applied_at = pg_catalog.now(), batch_id = $1"
		" FROM anomstream.batch_ranges r"
		" WHERE r.batch_id OPERATOR(pg_catalog.=) $1"
		"   AND r.topic OPERATOR(pg_catalog.=) s.topic"
		"   AND r.kafka_partition OPERATOR(pg_catalog.=) s.kafka_partition"
		"   AND s.kafka_offset OPERATOR(pg_catalog.>=) r.first_offset"
		"   AND s.kafka_offset OPERATOR(pg_catalog.<=) r.last_offset"
		"   AND s.applied_at IS NULL"
		" RETURNING s.topic, s.kafka_partition, s.kafka_offset",
		1, types, values, NULL, SPI_OK_UPDATE_RETURNING);
	n = SPI_processed;
	for (uint64 r = 0; r < n; r++)
	{
		SkipEntry	e;

		read_position(r, &e);
		if (ops_skip_reason(e.topic, e.partition, e.offset) == NULL)
		{
			loaded = false;		/* reload before the retry */
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("anomstream: offset " INT64_FORMAT " of partition %s/%d was skipped while its micro-batch ran",
							e.offset, e.topic, e.partition),
					 errdetail("The micro-batch is retried with the message skipped.")));
		}
	}
}
