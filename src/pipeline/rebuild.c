/*-------------------------------------------------------------------------
 *
 * rebuild.c
 *	  anomstream.rebuild(from): delete the results from `from` on, clear the pipeline's
 *	  operator state, seek Kafka by timestamp to `from` minus the state horizon and replay,
 *	  writing results only from `from` on, with the semantic settings now in effect
 *	  (DESIGN.md §7, §11; docs/pipeline.md "Rebuild").
 *
 * Three parts:
 *	- The SQL function records a request (anomstream.rebuild_requests) and wakes the worker
 *	  when its transaction commits (rebuild_gen in the shared block).
 *	- The worker carries it out in one transaction (rebuild_execute): compute the rewritten
 *	  range, look the seek positions up in Kafka (refusing if Kafka no longer has the data),
 *	  delete results, clear state, store the settings, record per partition where the
 *	  pipeline takes rows over again (anomstream.rebuild_positions), and empty staging the
 *	  way a crash does, so the ordinary refill machinery re-reads Kafka.
 *	- Every micro-batch while replaying (rebuild_load / rebuild_advance, called by
 *	  pipeline.c in the micro-batch transaction) feeds the pipeline the rows from each
 *	  partition's replay position on, gates what it writes, and moves the replay positions.
 *
 * The range. With F = from, the new and old window widths, the retention and the join bound:
 *	R = the latest instant <= F that starts a window under both the old and the new width
 *	    (potential_attacks rows with window_start >= R are recomputed; older ones are kept);
 *	X = R - new_attack_retention - join_bound: every row with event_time >= X is replayed
 *	    and classified exactly (the state horizon);
 *	T = X - max_future, a Kafka timestamp: a message with a row at event time >= X has a
 *	    Kafka timestamp >= T (otherwise it is a "ts in the future" dead letter), so the first
 *	    offset at or after T (rd_kafka_offsets_for_times) is early enough.
 * Messages before the seek position have event times < X: they never make a row >= X late,
 * so late rows, windows from R on (their keys and the keys of the retention before them),
 * and pairs whose later row is at or after F come out exactly as a run from the beginning
 * would compute them. Pairs with GREATEST(p_event_time, m_event_time) >= F, windows
 * starting at or after R and late rows at or after X are deleted and recomputed; nothing
 * before those bounds is written while replaying.
 *
 * Invariants: the request, the deletions, the cleared state, the settings and the replay
 * positions commit together; each replayed micro-batch moves its replay positions in its
 * own transaction, so a crash during the replay resumes it where it was (staging is then
 * refilled and the positions decide again what each consumer takes over). Durable
 * consumers other than the pipeline (dead letters, keyed state, sinks) are fed nothing
 * again: they already took over every row below the durable position.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "shmem.h"
#include "ops/ops.h"
#include "pipeline/pipeline_int.h"
#include "pipeline/rebuild.h"

PG_FUNCTION_INFO_V1(anomstream_rebuild);

#define KAFKA_TIMEOUT_MS 10000
#define SCAN_TIMEOUT_MS 120000
/* 1970-01-01 00:00:00+00 in PostgreSQL's microseconds since 2000 */
#define UNIX_EPOCH_PG (-((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY))

static uint64 seen_gen = 0;
static bool check_table = true; /* look at the table at the next rebuild_requested() */

/* ---------------------------------------------------------------- SQL call */

/*
 * anomstream.rebuild(from timestamptz) → request id. Records the request; the worker
 * carries it out once this transaction commits.
 */
Datum
anomstream_rebuild(PG_FUNCTION_ARGS)
{
	TimestampTz from;
	Oid			types[2] = {TIMESTAMPTZOID, NAMEOID};
	Datum		values[2];
	bool		isnull;
	WorkerState state;
	int64		id;

	if (anomstream_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("anomstream.rebuild() needs the anomstream worker"),
				 errdetail("The rebuild is carried out by the pipeline worker, which runs only when the library is preloaded."),
				 errhint("Add anomstream to shared_preload_libraries and restart the server.")));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the time to rebuild from must not be NULL")));
	from = PG_GETARG_TIMESTAMPTZ(0);
	if (TIMESTAMP_NOT_FINITE(from))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the time to rebuild from must be finite"),
				 errhint("To recompute everything Kafka still holds, give a time before its oldest message.")));

	SPI_connect();
	if (SPI_execute("SELECT id, status FROM anomstream.rebuild_requests"
					" WHERE status IN ('requested', 'replaying')", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "anomstream: cannot read anomstream.rebuild_requests");
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("a rebuild is already in progress"),
				 errdetail("Request %s is %s.",
						   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
						   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2)),
				 errhint("Wait for it with anomstream.rebuild_wait(), then request the next one.")));
	values[0] = TimestampTzGetDatum(from);
	values[1] = CStringGetDatum(GetUserNameFromId(GetOuterUserId(), false));
	if (SPI_execute_with_args("INSERT INTO anomstream.rebuild_requests (from_time, requested_by)"
							  " VALUES ($1, $2) RETURNING id", 2, types, values, NULL, false,
							  0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "anomstream: cannot write anomstream.rebuild_requests");
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();

	ops_signal_at_commit(OPS_SIGNAL_REBUILD);	/* the worker learns of it at commit */

	LWLockAcquire(anomstream_shared->lock, LW_SHARED);
	state = anomstream_shared->worker_pid != 0 ? anomstream_shared->state : WORKER_NOT_RUNNING;
	LWLockRelease(anomstream_shared->lock);
	if (state == WORKER_NOT_RUNNING || state == WORKER_IDLE_NO_BROKERS ||
		state == WORKER_WAITING_FOR_EXTENSION || state == WORKER_WAITING_FOR_RECOVERY ||
		state == WORKER_CLAIM_REQUIRED || state == WORKER_PAUSED)
		ereport(NOTICE,
				(errmsg("the anomstream worker is not consuming now; the rebuild is carried out once it is"),
				 errdetail("The worker's state is \"%s\".", anomstream_worker_state_name(state))));
	PG_RETURN_INT64(id);
}

/* ---------------------------------------------------------------- helpers */

/*
 * date_bin(stride, t, '1970-01-01 00:00:00+00'), rounding towards -infinity.
 */
static TimestampTz
bin(TimestampTz t, int64 stride)
{
	int64		d = t - UNIX_EPOCH_PG;
	int64		q = d / stride;

	if (d % stride < 0)
		q--;
	return UNIX_EPOCH_PG + q * stride;
}

/*
 * The latest instant <= from that starts a window of both widths.
 */
static TimestampTz
common_window_start(TimestampTz from, int64 w_new, int64 w_old)
{
	TimestampTz r = bin(from, w_new);

	for (int i = 0; i < 100000; i++)
	{
		TimestampTz o = bin(r, w_old);

		if (o == r)
			return r;
		r = bin(o, w_new);
	}
	elog(ERROR, "anomstream: no common window start found");
	return r;
}

/*
 * A timestamptz as text, for messages.
 */
static Datum
ts_text(TimestampTz t)
{
	return DirectFunctionCall1(timestamptz_out, TimestampTzGetDatum(t));
}

/*
 * A Kafka call about partition p failed (detail: librdkafka's message).
 */
static void pg_attribute_noreturn()
kafka_failed(const char *what, const PartState *p, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
			 errmsg("anomstream: rebuild: %s of partition %s/%d", what, p->topic, p->partition),
			 errdetail("%s", detail)));
}

/*
 * Find, for every partition with want[i], the first offset in [start[i], high[i]) whose
 * Kafka timestamp is >= ts_ms (or whose timestamp is unknown); found[i] = -1 if none.
 * Reads the messages with the worker's consumer (reassigned; the worker sets itself up
 * again afterwards).
 */
static void
scan_timestamps(KafkaSource *src, PartState *parts, int nparts, const bool *want,
				const int64 *start, const int64 *high, int64 ts_ms, int64 *found)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(Max(nparts, 1));
	bool	   *done = palloc0(sizeof(bool) * Max(nparts, 1));
	int			left = 0;
	TimestampTz began = GetCurrentTimestamp();
	rd_kafka_resp_err_t err;

	for (int i = 0; i < nparts; i++)
	{
		found[i] = -1;
		if (!want[i] || start[i] >= high[i])
		{
			done[i] = true;
			continue;
		}
		rd_kafka_topic_partition_list_add(list, parts[i].topic, parts[i].partition)->offset = start[i];
		left++;
	}
	if (left == 0)
	{
		rd_kafka_topic_partition_list_destroy(list);
		return;
	}
	err = rd_kafka_assign(src->rk, list);
	rd_kafka_topic_partition_list_destroy(list);
	if (err)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("anomstream: rebuild: cannot assign partitions to read timestamps"),
				 errdetail("%s", rd_kafka_err2str(err))));
	while (left > 0)
	{
		rd_kafka_message_t *m;
		int			i;

		CHECK_FOR_INTERRUPTS();
		if (TimestampDifferenceExceeds(began, GetCurrentTimestamp(), SCAN_TIMEOUT_MS))
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("anomstream: rebuild: reading Kafka timestamps took too long"),
					 errdetail("%d partitions were not read to the needed position within %d s.",
							   left, SCAN_TIMEOUT_MS / 1000)));
		m = rd_kafka_consumer_poll(src->rk, 100);
		if (m == NULL)
			continue;
		for (i = 0; i < nparts; i++)
			if (m->rkt && parts[i].partition == m->partition &&
				strcmp(parts[i].topic, rd_kafka_topic_name(m->rkt)) == 0)
				break;
		if (i == nparts || done[i])
		{
			rd_kafka_message_destroy(m);
			continue;
		}
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
		{
			done[i] = true;
			left--;
		}
		else if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
				 m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)
		{
			char	   *msg = pstrdup(rd_kafka_message_errstr(m));

			rd_kafka_message_destroy(m);
			kafka_failed("lost the start while reading the timestamps", &parts[i], msg);
		}
		else if (!m->err && m->offset >= start[i])
		{
			int64		ts = rd_kafka_message_timestamp(m, NULL);

			if (ts < 0 || ts >= ts_ms)
			{
				found[i] = m->offset;
				done[i] = true;
				left--;
			}
			else if (m->offset >= high[i] - 1)
			{
				done[i] = true;
				left--;
			}
		}
		rd_kafka_message_destroy(m);
	}
	rd_kafka_assign(src->rk, NULL);
}

/*
 * The seek position of every partition: the first offset whose Kafka timestamp is >= ts_ms
 * (high[i] if none), with the partitions' low and high watermarks.
 * rd_kafka_offsets_for_times() answers for a real broker. A broker that cannot look up by
 * timestamp (librdkafka's mock cluster answers "none") is caught by reading the last
 * message: if it is at or after ts_ms the answer was wrong, and the partition is read from
 * its start instead.
 */
static void
seek_positions(KafkaSource *src, PartState *parts, int nparts, int64 ts_ms,
			   int64 *low, int64 *high, int64 *seek)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(Max(nparts, 1));
	rd_kafka_resp_err_t err;
	bool	   *want = palloc0(sizeof(bool) * Max(nparts, 1));
	int64	   *start = palloc0(sizeof(int64) * Max(nparts, 1));
	int64	   *found = palloc0(sizeof(int64) * Max(nparts, 1));
	bool		any = false;

	for (int i = 0; i < nparts; i++)
	{
		err = rd_kafka_query_watermark_offsets(src->rk, parts[i].topic, parts[i].partition,
											   &low[i], &high[i], KAFKA_TIMEOUT_MS);
		if (err)
			kafka_failed("cannot read the offsets", &parts[i], rd_kafka_err2str(err));
		rd_kafka_topic_partition_list_add(list, parts[i].topic, parts[i].partition)->offset = ts_ms;
	}
	err = rd_kafka_offsets_for_times(src->rk, list, KAFKA_TIMEOUT_MS);
	if (err)
	{
		rd_kafka_topic_partition_list_destroy(list);
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("anomstream: rebuild: cannot look up Kafka offsets by timestamp"),
				 errdetail("%s", rd_kafka_err2str(err))));
	}
	for (int i = 0; i < nparts; i++)
	{
		rd_kafka_topic_partition_t *tp =
			rd_kafka_topic_partition_list_find(list, parts[i].topic, parts[i].partition);

		if (tp == NULL || tp->err)
		{
			const char *e = tp ? rd_kafka_err2str(tp->err) : "no answer";

			rd_kafka_topic_partition_list_destroy(list);
			kafka_failed("cannot look up by timestamp the offset", &parts[i], e);
		}
		seek[i] = tp->offset;
		if (seek[i] < 0 && high[i] > low[i])
		{
			want[i] = true;
			start[i] = high[i] - 1;
			any = true;
		}
	}
	rd_kafka_topic_partition_list_destroy(list);

	if (any)
	{
		bool		wrong = false;

		scan_timestamps(src, parts, nparts, want, start, high, ts_ms, found);
		for (int i = 0; i < nparts; i++)
		{
			want[i] = want[i] && found[i] >= 0;
			start[i] = low[i];
			wrong |= want[i];
		}
		if (wrong)
		{
			ereport(LOG,
					(errmsg("anomstream: rebuild: the broker did not find offsets by timestamp; reading the partitions' timestamps instead")));
			scan_timestamps(src, parts, nparts, want, start, high, ts_ms, found);
			for (int i = 0; i < nparts; i++)
				if (want[i])
					seek[i] = found[i];
		}
	}
	for (int i = 0; i < nparts; i++)
		if (seek[i] < 0)
			seek[i] = high[i];
}

/*
 * The rebuild request waiting for the worker, if any: its id (0 none) and from time.
 */
static int64
next_request(TimestampTz *from)
{
	bool		isnull;

	if (pl_exec("SELECT id, from_time FROM anomstream.rebuild_requests"
				" WHERE status = 'requested' ORDER BY id LIMIT 1 FOR UPDATE",
				0, NULL, NULL, NULL, SPI_OK_SELECT) == 0)
		return 0;
	*from = DatumGetTimestampTz(pl_get(0, 2, &isnull));
	return DatumGetInt64(pl_get(0, 1, &isnull));
}

/*
 * Mark the request refused, with the reason.
 */
static void
refuse(int64 id, const char *msg)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(id), CStringGetTextDatum(msg)};

	pl_exec("UPDATE anomstream.rebuild_requests SET status = 'refused', message = $2,"
			" started_at = pg_catalog.now(), finished_at = pg_catalog.now() WHERE id = $1",
			2, types, values, NULL, SPI_OK_UPDATE);
	ereport(LOG, (errmsg("anomstream: rebuild request " INT64_FORMAT " refused: %s", id, msg)));
}

/*
 * Publish whether a rebuild replays (status shows 'rebuilding'; the micro-batches look at
 * the replay positions only then).
 */
static void
set_rebuilding(bool on)
{
	LWLockAcquire(anomstream_shared->lock, LW_EXCLUSIVE);
	anomstream_shared->rebuilding = on;
	LWLockRelease(anomstream_shared->lock);
}

/*
 * Partitions whose replay has passed the durable position it started from: they get
 * their largest event time back (messages before the seek position count for W_p of
 * later rows, DESIGN.md §5) and stop replaying. When none is left, the request is done.
 * Returns true while some partition still replays.
 */
static bool
finish_partitions(void)
{
	pl_exec("WITH d AS (DELETE FROM anomstream.rebuild_positions"
			"   WHERE replay_from >= replay_until"
			"   RETURNING topic, kafka_partition, old_max_event_time)"
			" UPDATE anomstream.pipeline_partitions p"
			"   SET max_event_time = GREATEST(p.max_event_time, d.old_max_event_time)"
			"   FROM d WHERE p.topic = d.topic AND p.kafka_partition = d.kafka_partition",
			0, NULL, NULL, NULL, SPI_OK_UPDATE);
	pl_exec("SELECT 1 FROM anomstream.rebuild_positions LIMIT 1", 0, NULL, NULL, NULL,
			SPI_OK_SELECT);
	if (SPI_processed > 0)
		return true;
	if (pl_exec("UPDATE anomstream.rebuild_requests SET status = 'done',"
				" finished_at = pg_catalog.now() WHERE status = 'replaying' RETURNING id",
				0, NULL, NULL, NULL, SPI_OK_UPDATE_RETURNING) > 0)
	{
		bool		isnull;

		ereport(LOG,
				(errmsg("anomstream: rebuild request " INT64_FORMAT " done: the replay reached the positions the pipeline had",
						DatumGetInt64(pl_get(0, 1, &isnull)))));
	}
	return false;
}

/* ---------------------------------------------------------------- worker */

/*
 * Is a rebuild request waiting? Outside any transaction. Looks at the table only when
 * a rebuild() committed since the last look, or after the worker set itself up.
 */
bool
rebuild_requested(void)
{
	uint64		gen;
	bool		found;

	LWLockAcquire(anomstream_shared->lock, LW_SHARED);
	gen = anomstream_shared->rebuild_gen;
	LWLockRelease(anomstream_shared->lock);
	if (gen == seen_gen && !check_table)
		return false;
	seen_gen = gen;
	check_table = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pl_exec("SELECT 1 FROM anomstream.rebuild_requests WHERE status = 'requested'",
			0, NULL, NULL, NULL, SPI_OK_SELECT);
	found = SPI_processed > 0;
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return found;
}

/*
 * Carry out the waiting request in one transaction (see the file header). The caller
 * dropped its in-memory batches and sets itself up again afterwards (the consumer's
 * assignment is changed here). Errors abort the transaction and leave the request
 * waiting: the worker retries it with backoff.
 */
void
rebuild_execute(KafkaSource *src, PartState *parts, int nparts)
{
	TimestampTz from = 0;
	int64		id;
	PipelineSettings old;
	bool		had_config;
	int64		w_new = (int64) anomstream_window * 1000;
	int64		retention_us = (int64) anomstream_new_attack_retention * USECS_PER_SEC;
	int64		bound_us = (int64) anomstream_join_bound * 1000;
	TimestampTz windows_from,
				horizon,
				kafka_time,
				watermark,
				anchor;
	int64		ts_ms;
	int64	   *low,
			   *high,
			   *seek,
			   *durable;
	bool	   *known;
	int64		deleted[3];
	int64		replayed = 0;
	bool		still;
	bool		isnull;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "anomstream rebuild");
	/* in the SPI procedure context: freed by SPI_finish() */
	low = palloc0(sizeof(int64) * Max(nparts, 1));
	high = palloc0(sizeof(int64) * Max(nparts, 1));
	seek = palloc0(sizeof(int64) * Max(nparts, 1));
	durable = palloc0(sizeof(int64) * Max(nparts, 1));
	known = palloc0(sizeof(bool) * Max(nparts, 1));

	id = next_request(&from);
	if (id == 0)
		goto out;
	set_rebuilding(true);

	/* The settings: the stored ones (if any) are the old ones, the current ones the new. */
	pl_exec("SELECT window_ms, lateness_ms, join_bound_ms, new_attack_retention_s"
			" FROM anomstream.pipeline_config", 0, NULL, NULL, NULL, SPI_OK_SELECT);
	had_config = SPI_processed > 0;
	old.window_ms = had_config ? DatumGetInt32(pl_get(0, 1, &isnull)) : anomstream_window;
	old.lateness_ms = had_config ? DatumGetInt32(pl_get(0, 2, &isnull)) : anomstream_lateness;
	pl_exec("SELECT watermark FROM anomstream.pipeline_state", 0, NULL, NULL, NULL, SPI_OK_SELECT);
	watermark = SPI_processed > 0 ? DatumGetTimestampTz(pl_get(0, 1, &isnull)) : DT_NOBEGIN;
	if (((int64) anomstream_new_attack_retention * 1000) % anomstream_window != 0)
	{
		refuse(id, "anomstream.new_attack_retention is not a multiple of anomstream.window");
		goto out;
	}

	/*
	 * Windows still open (at or after W's window) are rewritten too, even when from is
	 * later: rows arriving after the replay may only fall into windows it recomputed, whose
	 * keys and look-back are exact. (W, lowered by a grown lateness, bounds those rows.)
	 */
	anchor = from;
	if (!TIMESTAMP_NOT_FINITE(watermark))
		anchor = Min(from, watermark - (int64) Max(0, anomstream_lateness - old.lateness_ms) * 1000);
	/* before 1970 there is no Kafka data: such a from means "all Kafka still has" */
	anchor = Max(anchor, UNIX_EPOCH_PG);
	windows_from = common_window_start(anchor, w_new, (int64) old.window_ms * 1000);
	horizon = windows_from - retention_us - bound_us;
	kafka_time = horizon - (int64) anomstream_max_future * USECS_PER_SEC;
	ts_ms = Max((kafka_time - UNIX_EPOCH_PG) / 1000, 0);

	/* Durable positions and the seek positions in Kafka. */
	pl_exec("SELECT topic, kafka_partition, durable_offset FROM anomstream.positions",
			0, NULL, NULL, NULL, SPI_OK_SELECT);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		char	   *topic = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1);
		int32		partition = DatumGetInt32(pl_get(r, 2, &isnull));

		for (int i = 0; i < nparts; i++)
			if (parts[i].partition == partition && strcmp(parts[i].topic, topic) == 0)
			{
				known[i] = true;
				durable[i] = DatumGetInt64(pl_get(r, 3, &isnull));
			}
	}
	seek_positions(src, parts, nparts, ts_ms, low, high, seek);
	for (int i = 0; i < nparts; i++)
	{
		if (low[i] > 0 && seek[i] <= low[i] && (!known[i] || seek[i] < durable[i]))
		{
			char		msg[512];

			snprintf(msg, sizeof(msg),
					 "Kafka no longer has the data: partition %s/%d starts at offset " INT64_FORMAT
					 ", and messages before it may have Kafka timestamps at or after %s, which the rebuild needs",
					 parts[i].topic, parts[i].partition, low[i],
					 DatumGetCString(ts_text(kafka_time)));
			refuse(id, msg);
			goto out;
		}
	}

	/* Delete the results of the rewritten range and clear the operator state. */
	{
		Oid			types[3] = {TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
		Datum		values[3] = {TimestampTzGetDatum(windows_from), TimestampTzGetDatum(from),
		TimestampTzGetDatum(horizon)};

		deleted[0] = pl_exec("DELETE FROM anomstream.potential_attacks WHERE window_start >= $1",
							 1, types, values, NULL, SPI_OK_DELETE);
		deleted[1] = pl_exec("DELETE FROM anomstream.detected_attacks"
							 " WHERE GREATEST(p_event_time, m_event_time) >= $2",
							 2, types, values, NULL, SPI_OK_DELETE);
		deleted[2] = pl_exec("DELETE FROM anomstream.late_rows WHERE event_time >= $3",
							 3, types, values, NULL, SPI_OK_DELETE);
	}
	state_cache_invalidate();	/* loaded again (empty) by the next batch */
	pl_exec("DELETE FROM anomstream.join_process", 0, NULL, NULL, NULL, SPI_OK_DELETE);
	pl_exec("DELETE FROM anomstream.join_memory", 0, NULL, NULL, NULL, SPI_OK_DELETE);
	pl_exec("DELETE FROM anomstream.window_keys", 0, NULL, NULL, NULL, SPI_OK_DELETE);
	pl_exec("UPDATE anomstream.pipeline_state SET watermark = '-infinity', held_process = 0,"
			" held_memory = 0, held_keys = 0", 0, NULL, NULL, NULL, SPI_OK_UPDATE);

	/* Replay positions (before the partitions forget their largest event time). */
	for (int i = 0; i < nparts; i++)
	{
		Oid			types[5] = {INT8OID, TEXTOID, INT4OID, INT8OID, INT8OID};
		Datum		values[5];
		int64		from_offset;

		if (!known[i])
		{
			/*
			 * Never consumed here (a partition moved to this server, DESIGN.md §11): it
			 * starts at the seek position, and its messages up to the current end count
			 * as replay (the results before the rebuild's range are the other server's).
			 */
			Oid			ptypes[3] = {TEXTOID, INT4OID, INT8OID};
			Datum		pvalues[3] = {CStringGetTextDatum(parts[i].topic),
			Int32GetDatum(parts[i].partition), Int64GetDatum(seek[i])};

			pl_exec("INSERT INTO anomstream.positions (topic, kafka_partition, durable_offset, staging_low)"
					" VALUES ($1, $2, $3, $3)", 3, ptypes, pvalues, NULL, SPI_OK_INSERT);
			durable[i] = high[i];
		}
		from_offset = Min(seek[i], durable[i]);
		replayed += durable[i] - from_offset;
		values[0] = Int64GetDatum(id);
		values[1] = CStringGetTextDatum(parts[i].topic);
		values[2] = Int32GetDatum(parts[i].partition);
		values[3] = Int64GetDatum(from_offset);
		values[4] = Int64GetDatum(durable[i]);
		pl_exec("INSERT INTO anomstream.rebuild_positions (request_id, topic, kafka_partition,"
				" replay_from, replay_until, old_max_event_time)"
				" SELECT $1, $2, $3, $4, $5, (SELECT p.max_event_time FROM anomstream.pipeline_partitions p"
				"   WHERE p.topic = $2 AND p.kafka_partition = $3)",
				5, types, values, NULL, SPI_OK_INSERT);
	}
	pl_exec("UPDATE anomstream.pipeline_partitions SET max_event_time = NULL, idle = false,"
			" last_data_at = NULL, first_seen_at = pg_catalog.transaction_timestamp()",
			0, NULL, NULL, NULL, SPI_OK_UPDATE);

	/* The settings now in effect become the stored ones: config pending clears. */
	{
		Oid			types[5] = {INT4OID, INT4OID, INT4OID, INT4OID, INT8OID};
		Datum		values[5] = {Int32GetDatum(anomstream_window), Int32GetDatum(anomstream_lateness),
			Int32GetDatum(anomstream_join_bound), Int32GetDatum(anomstream_new_attack_retention),
		Int64GetDatum(id)};

		pl_exec("UPDATE anomstream.rebuild_requests SET old_settings ="
				" (SELECT pg_catalog.to_jsonb(c) - 'id' - 'stored_at' FROM anomstream.pipeline_config c)"
				" WHERE id = $5", 5, types, values, NULL, SPI_OK_UPDATE);
		pl_exec("INSERT INTO anomstream.pipeline_config AS c (id, window_ms, lateness_ms,"
				" join_bound_ms, new_attack_retention_s) VALUES (1, $1, $2, $3, $4)"
				" ON CONFLICT (id) DO UPDATE SET window_ms = $1, lateness_ms = $2,"
				" join_bound_ms = $3, new_attack_retention_s = $4,"
				" stored_at = pg_catalog.now()", 5, types, values, NULL, SPI_OK_INSERT);
	}

	/* Empty staging the way a crash does: setup() refills it, rebuild_adjust_start() rewinds. */
	pl_exec("TRUNCATE anomstream.process_events, anomstream.memory_events, anomstream.staged_positions",
			0, NULL, NULL, NULL, SPI_OK_UTILITY);
	pl_exec("DELETE FROM anomstream.batch_ranges", 0, NULL, NULL, NULL, SPI_OK_DELETE);
	pl_exec("DELETE FROM anomstream.staging_marker", 0, NULL, NULL, NULL, SPI_OK_DELETE);

	{
		Oid			types[9] = {INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
		INT8OID, INT8OID, INT8OID, INT8OID, INT8OID};
		Datum		values[9] = {Int64GetDatum(id), TimestampTzGetDatum(windows_from),
			TimestampTzGetDatum(horizon), TimestampTzGetDatum(kafka_time),
			Int64GetDatum(deleted[0]), Int64GetDatum(deleted[1]), Int64GetDatum(deleted[2]),
		Int64GetDatum(replayed)};

		pl_exec("UPDATE anomstream.rebuild_requests SET status = 'replaying',"
				" started_at = pg_catalog.now(), windows_from = $2, horizon = $3, kafka_time = $4,"
				" deleted_windows = $5, deleted_pairs = $6, deleted_late_rows = $7,"
				" replayed_messages = $8,"
				" new_settings = (SELECT pg_catalog.to_jsonb(c) - 'id' - 'stored_at' FROM anomstream.pipeline_config c)"
				" WHERE id = $1", 8, types, values, NULL, SPI_OK_UPDATE);
	}
	still = finish_partitions();
	ereport(LOG,
			(errmsg("anomstream: rebuild request " INT64_FORMAT " from %s: results from window %s on recomputed, state rebuilt from event time %s",
					id, DatumGetCString(ts_text(from)), DatumGetCString(ts_text(windows_from)),
					DatumGetCString(ts_text(horizon))),
			 errdetail("Deleted " INT64_FORMAT " window rows, " INT64_FORMAT " pairs, " INT64_FORMAT " late rows; " INT64_FORMAT " messages to replay, from the first at or after Kafka time %s.",
					   deleted[0], deleted[1], deleted[2], replayed,
					   DatumGetCString(ts_text(kafka_time)))));
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	set_rebuilding(still);
	return;

out:
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	set_rebuilding(false);		/* none waited, or refused: no replay */
}

/*
 * In setup(), after positions_prepare_start(): while a rebuild replays, start each
 * partition no later than its replay position. Staging was emptied by the rebuild (or by
 * a crash during the replay), so re-reading from there duplicates nothing in staging; the
 * rows below the durable position feed only staging and the pipeline.
 */
void
rebuild_adjust_start(PartState *parts, int nparts, bool refill)
{
	uint64		n;
	bool		any = false;

	check_table = true;
	n = pl_exec("SELECT topic, kafka_partition, replay_from FROM anomstream.rebuild_positions",
				0, NULL, NULL, NULL, SPI_OK_SELECT);
	for (uint64 r = 0; r < n; r++)
	{
		char	   *topic = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1);
		bool		isnull;
		int32		partition = DatumGetInt32(pl_get(r, 2, &isnull));
		int64		from = DatumGetInt64(pl_get(r, 3, &isnull));

		any = true;
		for (int i = 0; i < nparts; i++)
		{
			PartState  *p = &parts[i];

			if (p->partition != partition || strcmp(p->topic, topic) != 0)
				continue;
			if (p->next_offset >= 0 && from < p->next_offset)
			{
				if (!refill)
					ereport(LOG,
							(errmsg("anomstream: rebuild: partition %s/%d was staged up to " INT64_FORMAT " but replays from " INT64_FORMAT "; staging may hold some rows twice",
									topic, partition, p->next_offset, from)));
				p->next_offset = from;
			}
		}
	}
	set_rebuilding(any);
}

/* ---------------------------------------------------------------- micro-batches */

/*
 * While a rebuild replays: the gates of this run and each partition's first offset the
 * pipeline takes over (its replay position instead of the durable one).
 */
void
rebuild_load(PipelineRun *run)
{
	bool		on;
	bool		isnull;
	uint64		n;

	run->gate_windows = DT_NOBEGIN;
	run->gate_pairs = DT_NOBEGIN;
	run->gate_late = DT_NOBEGIN;
	LWLockAcquire(anomstream_shared->lock, LW_SHARED);
	on = anomstream_shared->rebuilding;
	LWLockRelease(anomstream_shared->lock);
	if (!on)
		return;
	pl_exec("SELECT windows_from, from_time, horizon FROM anomstream.rebuild_requests"
			" WHERE status = 'replaying'", 0, NULL, NULL, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return;
	run->rebuilding = true;
	run->gate_windows = DatumGetTimestampTz(pl_get(0, 1, &isnull));
	run->gate_pairs = DatumGetTimestampTz(pl_get(0, 2, &isnull));
	run->gate_late = DatumGetTimestampTz(pl_get(0, 3, &isnull));
	n = pl_exec("SELECT topic, kafka_partition, replay_from FROM anomstream.rebuild_positions",
				0, NULL, NULL, NULL, SPI_OK_SELECT);
	for (uint64 r = 0; r < n; r++)
	{
		char	   *topic = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1);
		int32		partition = DatumGetInt32(pl_get(r, 2, &isnull));
		int64		from = DatumGetInt64(pl_get(r, 3, &isnull));

		for (int i = 0; i < run->npw; i++)
		{
			PartWatermark *w = &run->pw[i];

			if (w->part->partition == partition && strcmp(w->part->topic, topic) == 0)
				w->from_offset = Min(w->from_offset, from);
		}
	}
}

/*
 * After the batch's pipeline step: move the replay positions of the partitions the batch
 * read, and finish the partitions (and the request) whose replay is complete.
 */
void
rebuild_advance(PipelineRun *run)
{
	int			n = 0;
	Datum	   *topics;
	int32	   *partitions;
	int64	   *nexts;

	if (!run->rebuilding)
		return;
	topics = palloc(sizeof(Datum) * Max(run->npw, 1));
	partitions = palloc(sizeof(int32) * Max(run->npw, 1));
	nexts = palloc(sizeof(int64) * Max(run->npw, 1));
	for (int i = 0; i < run->npw; i++)
	{
		PartState  *p = run->pw[i].part;

		if (!p->in_batch)
			continue;
		topics[n] = CStringGetTextDatum(p->topic);
		partitions[n] = p->partition;
		nexts[n] = p->batch_last + 1;
		n++;
	}
	if (n > 0)
	{
		Oid			types[3] = {TEXTARRAYOID, INT4ARRAYOID, INT8ARRAYOID};
		Datum		values[3];

		values[0] = pl_array(topics, NULL, n, TEXTOID);
		values[1] = pl_int4_array(partitions, n);
		values[2] = pl_int8_array(nexts, n);
		pl_exec("UPDATE anomstream.rebuild_positions r SET replay_from = u.next"
				" FROM unnest($1, $2, $3) AS u(topic, kafka_partition, next)"
				" WHERE r.topic = u.topic AND r.kafka_partition = u.kafka_partition"
				"   AND u.next > r.replay_from", 3, types, values, NULL, SPI_OK_UPDATE);
	}
	if (!finish_partitions())
		set_rebuilding(false);
}
