/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The pipeline worker: Kafka → decode → staging, one transaction per micro-batch.
 *
 * Loop: collect messages until the batch is full (anomstream.max_batch_rows/_bytes), the
 * consumer queue is empty, or anomstream.trigger_interval passes;
 * the decode thread (decode_thread.c) decodes it while this thread commits the previous
 * batch; then one transaction inserts the staging rows (staging.c, scored by score/), the
 * dead letters and the positions (positions.c). Offsets are committed to the Kafka group
 * only after PostgreSQL committed.
 *
 * Invariants:
 *	- Nothing the worker keeps in memory is authoritative: after any error the batch's
 *	  transaction aborts, both in-memory batches are dropped, and the worker re-reads its
 *	  positions from PostgreSQL and re-assigns Kafka there (retrying with backoff 1-60 s).
 *	- Decoding never raises; bad input becomes dead letters inside the same transaction.
 *	- Each batch's memory lives in its own context and decoder arena, reset when the batch
 *	  is committed or dropped; the decode thread touches a batch only between
 *	  decode_thread_submit() and decode_thread_wait().
 *	- Kafka messages stay alive until their batch is reset, and every batch is reset before
 *	  the consumer is closed.
 *	- The worker never blocks in librdkafka for longer than anomstream.poll_timeout, so
 *	  SIGTERM, SIGHUP and postmaster death are noticed promptly.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <malloc.h>
#include <setjmp.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "shmem.h"
#include "ingest/consumer.h"
#include "ingest/decode_pg.h"
#include "ingest/decode_thread.h"
#include "ingest/positions.h"
#include "ingest/staging.h"
#include "ingest/worker.h"
#include "keyed/keyed.h"
#include "ops/ops.h"			/* ops */
#include "parquet/sink.h"		/* sinks */
#include "pipeline/pipeline.h"
#include "pipeline/rebuild.h"

#define RESTART_SECONDS 5			/* postmaster restarts a crashed worker after this */
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 60000
#define RETENTION_INTERVAL_MS 10000
#define METADATA_INTERVAL_MS 30000
#define EXTENSION_WAIT_MS 5000
#define RECOVERY_WAIT_MS 1000		/* a standby's worker checks for promotion this often */
#define DECODE_RUN 256				/* messages per decode job while collecting */

/*
 * A micro-batch. Collected (raw messages, positions) on the main thread, decoded by the
 * decode thread, then absorbed (rows and dead letters) and committed on the main thread.
 * Each batch owns a memory context and a decoder arena; both are reset when it is done.
 */
typedef struct Batch
{
	MemoryContext cxt;
	DecodeArena *arena;
	/* collected */
	rd_kafka_message_t **msgs;
	int		   *msg_part;		/* index into parts[] */
	bool	   *msg_refill;		/* below the durable position: staging only */
	int			messages;
	int			capmsgs;
	int64		bytes;
	bool	   *in_batch;		/* per part: read something in this batch */
	int64	   *first;
	int64	   *last;
	/* decoding: runs of messages handed to the decode thread while collecting */
	DecodeJob **jobs;
	int			njobs;
	int			capjobs;
	int			submitted_upto; /* messages before this index are in a job */
	/* absorbed */
	StagedRow  *rows[DECODE_NSTREAMS];
	int			nrows[DECODE_NSTREAMS];
	int			caprows[DECODE_NSTREAMS];
	DeadLetter *dead;
	int			ndead;
	int			capdead;
	int			total_rows;
} Batch;

static Batch batches[2];
static Batch *ready = NULL;		/* decoded, waiting to be committed */
static double rows_per_message = 50;	/* running average, for max_batch_rows */
static KafkaSource source;
static bool source_open = false;
static PartState *parts = NULL;
static int	nparts = 0;
static int	backoff_ms = 0;
static Oid	known_extension = InvalidOid;	/* extension OID at the first setup */

static bool setup(void);
static void teardown(void);
static void batch_reset(Batch *b);
static void collect_batch(Batch *b, bool may_wait);
static void decode_batch(Batch *b);
static void absorb_batch(Batch *b);
static void commit_batch(Batch *b);
static void run_retention(void);
static void publish_parts(void);
static void wait_ms(long ms);

/*
 * Register the worker when the library is preloaded.
 */
void
anomstream_worker_register(void)
{
	BackgroundWorker worker;

	if (!process_shared_preload_libraries_in_progress)
		return;
	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* Started on a hot standby too: it waits there (visibly) and runs once promoted. */
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	/* After a crash the postmaster restarts everything; restart us soon, not at once. */
	worker.bgw_restart_time = RESTART_SECONDS;
	strlcpy(worker.bgw_library_name, "anomstream", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "anomstream_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "anomstream worker", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "anomstream worker", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/*
 * Sleep on the latch for up to ms, handling interrupts and reloads.
 */
static void
wait_ms(long ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, ms,
					 PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/*
 * Apply a pending configuration reload; true if the Kafka source must be rebuilt.
 */
static bool
reload_config(void)
{
	char	   *old_brokers;
	char	   *old_topics;
	char	   *old_options;
	char	   *old_partitions;
	bool		changed;

	if (!ConfigReloadPending)
		return false;
	ConfigReloadPending = false;
	old_brokers = pstrdup(anomstream_brokers);
	old_topics = pstrdup(anomstream_topics);
	old_options = pstrdup(anomstream_kafka_options);
	old_partitions = pstrdup(anomstream_partitions);
	ProcessConfigFile(PGC_SIGHUP);
	changed = strcmp(old_brokers, anomstream_brokers) != 0 ||
		strcmp(old_topics, anomstream_topics) != 0 ||
		strcmp(old_options, anomstream_kafka_options) != 0 ||
		strcmp(old_partitions, anomstream_partitions) != 0;
	pfree(old_brokers);
	pfree(old_topics);
	pfree(old_options);
	pfree(old_partitions);
	return changed;
}

/*
 * Worker entry point.
 */
void
anomstream_worker_main(Datum arg)
{
	sigjmp_buf	local_sigjmp_buf;
	volatile bool need_setup = true;
	volatile TimestampTz last_retention = 0;
	volatile TimestampTz last_metadata = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(anomstream_database,
										 anomstream_role[0] ? anomstream_role : NULL, 0);
	pgstat_report_appname("anomstream worker");
	ops_harden_session();		/* ops: search_path = pg_catalog, pg_temp */

	LWLockAcquire(anomstream_shared->lock, LW_EXCLUSIVE);
	anomstream_shared->worker_pid = MyProcPid;
	anomstream_shared->npartitions = 0;
	anomstream_shared->batches = 0;
	anomstream_shared->bootstrap[0] = '\0';
	LWLockRelease(anomstream_shared->lock);
	anomstream_set_state(WORKER_STARTING, NULL);

	/*
	 * A micro-batch allocates tens of MB and frees them again: keep that memory in the
	 * process (this is the worker's own process) instead of mapping fresh zeroed pages for
	 * every batch.
	 */
	mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
	for (int i = 0; i < 2; i++)
	{
		batches[i].cxt = AllocSetContextCreate(TopMemoryContext, "anomstream batch",
											   0, 1024 * 1024, 8 * 1024 * 1024);
		batches[i].arena = decode_arena_create();
		if (batches[i].arena == NULL)
			ereport(FATAL, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	}
	if (!decode_thread_start())
		ereport(LOG, (errmsg("anomstream: no decode thread, decoding on the main thread")));

	/*
	 * Error recovery: abort the batch, drop everything in memory (after the decode thread
	 * let go of it), back off, and start over from the positions in PostgreSQL.
	 */
	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		ErrorData  *edata;

		/*
		 * Not PG_TRY: reset the error context stack by hand. The longjmp skipped the pops
		 * of the error context callbacks the failed code pushed (SPI, the executor), and
		 * the next ereport, even a LOG, would walk those stale frames: the SIGSEGV seen
		 * after the extension was dropped and created again under the worker, or a loop
		 * in errfinish.
		 */
		error_context_stack = NULL;
		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		EmitErrorReport();
		AbortOutOfAnyTransaction();
		FlushErrorState();
		anomstream_set_state(WORKER_ERROR, edata->message);
		FreeErrorData(edata);
		decode_thread_wait();
		batch_reset(&batches[0]);
		batch_reset(&batches[1]);
		ready = NULL;
		teardown();
		need_setup = true;
		RESUME_INTERRUPTS();
		backoff_ms = Min(Max(backoff_ms * 2, BACKOFF_MIN_MS), BACKOFF_MAX_MS);
		wait_ms(backoff_ms);
	}
	PG_exception_stack = &local_sigjmp_buf;

	for (;;)
	{
		Batch	   *next;
		bool		committed;
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		if (reload_config())
		{
			if (ready)
			{
				commit_batch(ready);
				ready = NULL;
			}
			teardown();
			need_setup = true;
		}
		/* ops: anomstream.pause() holds the worker here; nothing more is consumed */
		if (ops_paused())
		{
			if (ready)
				commit_batch(ready);	/* already collected before the pause */
			ready = NULL;
			anomstream_set_state(WORKER_PAUSED, NULL);
			wait_ms(EXTENSION_WAIT_MS);
			continue;
		}
		/* ops: anomstream.accept_gap() moved a position: re-read positions, re-assign */
		if (ops_reassign_requested() && !need_setup)
		{
			if (ready)
				commit_batch(ready);
			ready = NULL;
			need_setup = true;
		}
		/* ops: a library of another schema version consumes nothing (checked once a second) */
		if (!need_setup && !ops_schema_version_ok(false))
		{
			if (ready)
			{
				batch_reset(ready);	/* collected, not committed: read again after the update */
				ready = NULL;
			}
			teardown();
			need_setup = true;
		}
		if (need_setup)
		{
			if (!setup())
				continue;		/* setup waited; try again */
			need_setup = false;
		}
		/* rebuild: carry out anomstream.rebuild(), then set up again from PostgreSQL */
		if (rebuild_requested())
		{
			batch_reset(&batches[0]);
			batch_reset(&batches[1]);
			ready = NULL;
			rebuild_execute(&source, parts, nparts);
			teardown();
			need_setup = true;
			continue;
		}

		/*
		 * Two-stage pipeline: collect batch N+1 and let the decode thread work on it while
		 * this thread inserts and commits batch N. With batch N waiting, collecting does
		 * not wait for data, so a trickle is committed at once.
		 */
		next = (ready == &batches[0]) ? &batches[1] : &batches[0];
		collect_batch(next, ready == NULL);
		if (next->messages > 0)
			decode_batch(next);
		committed = ready != NULL;
		if (ready)
			commit_batch(ready);
		ready = NULL;
		if (next->messages > 0)
		{
			decode_thread_wait();
			ready = next;
		}
		else
		{
			batch_reset(next);

			/*
			 * Time passed without data: idle partitions may stop holding the watermark and
			 * windows may close. Not while the brokers are unreachable: a partition is idle
			 * only when we know it is read to its end.
			 */
			if (!committed && !source.all_brokers_down)
				pipeline_tick(parts, nparts);
		}
		publish_parts();

		now = GetCurrentTimestamp();
		if (TimestampDifferenceExceeds(last_retention, now, RETENTION_INTERVAL_MS))
		{
			run_retention();
			last_retention = now;
		}
		if (TimestampDifferenceExceeds(last_metadata, now, METADATA_INTERVAL_MS))
		{
			/* New partitions: rebuild the assignment (positions come from PostgreSQL). */
			if (last_metadata != 0 && source_open)
			{
				PartState  *fresh;
				char		errbuf[512];
				int			n;
				MemoryContext tmp = AllocSetContextCreate(TopMemoryContext, "anomstream metadata",
														  ALLOCSET_SMALL_SIZES);
				MemoryContext old = MemoryContextSwitchTo(tmp);

				n = kafka_list_partitions(&source, &fresh, errbuf, sizeof(errbuf));
				MemoryContextSwitchTo(old);
				MemoryContextDelete(tmp);
				if (n > nparts)
				{
					ereport(LOG, (errmsg("anomstream: %d new partitions, reassigning", n - nparts)));
					if (ready)
					{
						commit_batch(ready);
						ready = NULL;
					}
					need_setup = true;
					teardown();
				}
			}
			last_metadata = now;
		}
	}
}

/*
 * The extension's OID in our database, InvalidOid if it is not installed. (Own transaction.)
 */
static Oid
extension_oid(void)
{
	Oid			oid;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	oid = get_extension_oid("anomstream", true);
	CommitTransactionCommand();
	return oid;
}

/*
 * Wait until the worker can run, then open Kafka, read positions and assign partitions.
 * Returns false (after waiting) if it should be retried.
 */
static bool
setup(void)
{
	char		errbuf[512];
	bool		refill;
	Oid			ext;

	/*
	 * A standby consumes nothing; after promotion its UNLOGGED staging is empty (no marker),
	 * so positions_prepare_start() refills it from staging_low. A promoted standby keeps
	 * the primary's system identifier, so the claim check below lets it run.
	 */
	if (RecoveryInProgress())
	{
		static bool recovery_logged = false;

		if (!recovery_logged)
			ereport(LOG,
					(errmsg("anomstream: the server is in recovery; waiting for promotion before consuming")));
		recovery_logged = true;
		anomstream_set_state(WORKER_WAITING_FOR_RECOVERY, NULL);
		wait_ms(RECOVERY_WAIT_MS);
		return false;
	}
	ext = extension_oid();
	if (!OidIsValid(ext))
	{
		anomstream_set_state(WORKER_WAITING_FOR_EXTENSION, NULL);
		wait_ms(EXTENSION_WAIT_MS);
		return false;
	}

	/*
	 * The extension was dropped and created again under us: caches in this process (models,
	 * compiled features, operators) describe objects that are gone. Start over in a fresh
	 * process; the postmaster restarts the worker after RESTART_SECONDS.
	 */
	if (OidIsValid(known_extension) && ext != known_extension)
	{
		ereport(LOG,
				(errmsg("anomstream: the extension was created again; restarting the worker")));
		proc_exit(1);
	}
	known_extension = ext;

	/* ops: the tables must have the shape this library writes */
	if (!ops_schema_version_ok(true))
	{
		anomstream_set_state(WORKER_SCHEMA_MISMATCH, NULL);
		wait_ms(EXTENSION_WAIT_MS);
		return false;
	}

	/* ops: a restored copy consumes nothing until anomstream.claim() */
	if (!ops_claim_ok())
	{
		anomstream_set_state(WORKER_CLAIM_REQUIRED, NULL);
		wait_ms(EXTENSION_WAIT_MS);
		return false;
	}

	if (anomstream_brokers == NULL || anomstream_brokers[0] == '\0')
	{
		anomstream_set_state(WORKER_IDLE_NO_BROKERS, NULL);
		wait_ms(10000);
		return false;
	}

	if (!source_open)
	{
		if (!kafka_open(&source, errbuf, sizeof(errbuf)))
		{
			kafka_close(&source);
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("anomstream: cannot create the Kafka consumer"),
					 errdetail("%s", errbuf)));
		}
		source_open = true;
		LWLockAcquire(anomstream_shared->lock, LW_EXCLUSIVE);
		strlcpy(anomstream_shared->bootstrap, source.bootstrap, ANOMSTREAM_MSG_LEN);
		anomstream_shared->embedded = source.embedded;
		LWLockRelease(anomstream_shared->lock);
	}

	MemoryContextSwitchTo(TopMemoryContext);
	if (parts)
	{
		pfree(parts);
		parts = NULL;
	}
	nparts = kafka_list_partitions(&source, &parts, errbuf, sizeof(errbuf));
	if (nparts < 0)
	{
		nparts = 0;
		anomstream_set_state(WORKER_WAITING_FOR_BROKER, errbuf);
		backoff_ms = Min(Max(backoff_ms * 2, BACKOFF_MIN_MS), BACKOFF_MAX_MS);
		wait_ms(backoff_ms);
		return false;
	}

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	refill = positions_prepare_start(parts, nparts);
	rebuild_adjust_start(parts, nparts, refill);	/* rebuild: replay positions */
	sinks_recover_at_start();	/* sinks: finish renames, drop uncommitted parts */
	ops_skips_load();			/* ops: messages anomstream.skip() named */
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(TopMemoryContext);
	if (refill)
		ereport(LOG, (errmsg("anomstream: staging is empty after a crash or first start; refilling it from Kafka")));

	if (!kafka_assign(&source, parts, nparts, errbuf, sizeof(errbuf)))
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("anomstream: cannot assign Kafka partitions"),
				 errdetail("%s", errbuf)));
	publish_parts();
	anomstream_set_state(WORKER_RUNNING, NULL);
	backoff_ms = 0;
	return true;
}

/*
 * Drop the Kafka source (it is rebuilt by setup()).
 */
static void
teardown(void)
{
	if (source_open)
	{
		kafka_close(&source);
		source_open = false;
	}
	if (parts)
	{
		pfree(parts);
		parts = NULL;
	}
	nparts = 0;
	LWLockAcquire(anomstream_shared->lock, LW_EXCLUSIVE);
	anomstream_shared->npartitions = 0;
	anomstream_shared->bootstrap[0] = '\0';
	LWLockRelease(anomstream_shared->lock);
}

/*
 * The worker's state for a message's topic-partition.
 */
static PartState *
part_for(rd_kafka_message_t *m)
{
	const char *topic = rd_kafka_topic_name(m->rkt);

	for (int i = 0; i < nparts; i++)
		if (parts[i].partition == m->partition && strcmp(parts[i].topic, topic) == 0)
			return &parts[i];
	return NULL;
}

/*
 * Remember a dead letter (bytes copied into batch memory).
 */
static void
add_dead_letter(Batch *b, PartState *p, rd_kafka_message_t *m, int32 row_index,
				const char *value, size_t value_len, const char *error)
{
	DeadLetter *dl;

	if (b->ndead == b->capdead)
	{
		b->capdead = b->capdead ? b->capdead * 2 : 16;
		b->dead = b->dead ? repalloc(b->dead, sizeof(DeadLetter) * b->capdead)
			: palloc(sizeof(DeadLetter) * b->capdead);
	}
	dl = &b->dead[b->ndead++];
	dl->topic = p->topic;
	dl->partition = p->partition;
	dl->offset = m->offset;
	dl->row_index = row_index;
	dl->key = m->key ? memcpy(palloc(m->key_len), m->key, m->key_len) : NULL;
	dl->key_len = m->key_len;
	dl->value = value_len ? memcpy(palloc(value_len), value, value_len) : "";
	dl->value_len = value_len;
	dl->error = pstrdup(error);
	p->dead_letters++;
}

/*
 * Give a batch's messages back to librdkafka and forget everything it held.
 */
static void
batch_reset(Batch *b)
{
	MemoryContext cxt = b->cxt;
	DecodeArena *arena = b->arena;

	for (int i = 0; i < b->messages; i++)
		rd_kafka_message_destroy(b->msgs[i]);
	MemoryContextReset(cxt);
	decode_arena_reset(arena);
	memset(b, 0, sizeof(*b));
	b->cxt = cxt;
	b->arena = arena;
}

/*
 * Collect a batch of raw messages: until it is full, the consumer queue is empty, or the
 * trigger interval passed. Without may_wait it takes only what is already there. Batches grow
 * by themselves under load: while one batch commits, the next one's messages queue up. max_batch_rows is applied through the running average of rows per message
 * (rows are only known once decoded); max_batch_bytes exactly.
 */
static void
collect_batch(Batch *b, bool may_wait)
{
	TimestampTz start = GetCurrentTimestamp();
	int64		max_bytes = (int64) anomstream_max_batch_bytes * 1024;
	int			max_msgs = Max(1, (int) (anomstream_max_batch_rows / Max(rows_per_message, 1.0)));
	MemoryContext old = MemoryContextSwitchTo(b->cxt);

	if (b->in_batch == NULL)
	{
		b->in_batch = palloc0(sizeof(bool) * Max(nparts, 1));
		b->first = palloc0(sizeof(int64) * Max(nparts, 1));
		b->last = palloc0(sizeof(int64) * Max(nparts, 1));
	}
	for (;;)
	{
		rd_kafka_message_t *m;
		TimestampTz now = GetCurrentTimestamp();
		long		elapsed_ms;
		int			timeout;
		int			idx;
		PartState  *p;

		if (ConfigReloadPending || ProcDiePending || !PostmasterIsAlive())
			break;
		elapsed_ms = TimestampDifferenceMilliseconds(start, now);
		if (elapsed_ms >= anomstream_trigger_interval)
			break;
		if (b->messages > 0)
			timeout = 0;		/* the queue ran dry: the batch is ready */
		else if (may_wait)
			timeout = (int) Min(anomstream_poll_timeout, anomstream_trigger_interval - elapsed_ms);
		else
			timeout = 0;
		m = rd_kafka_consumer_poll(source.rk, timeout);
		if (m == NULL)
		{
			if (b->messages > 0 || !may_wait)
				break;
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		p = m->rkt ? part_for(m) : NULL;
		if (m->err)
		{
			if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
			{
				if (p)
					p->caught_up = true;
				source.all_brokers_down = false;
			}
			else if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
					 m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)
			{
				if (p && !p->gap)
				{
					p->gap = true;
					p->gap_low = -1;
					ereport(LOG,
							(errmsg("anomstream: partition %s/%d: position %lld is no longer in Kafka",
									p->topic, p->partition, (long long) p->next_offset),
							 errdetail("%s", rd_kafka_message_errstr(m))));
					ops_gap_find_earliest(source.rk, p);	/* ops */
				}
			}
			else
				snprintf(source.last_error, sizeof(source.last_error), "%s",
						 rd_kafka_message_errstr(m));
			rd_kafka_message_destroy(m);
			continue;
		}
		source.all_brokers_down = false;
		if (p == NULL || m->offset < p->next_offset)
		{
			rd_kafka_message_destroy(m);	/* not ours, or already read */
			continue;
		}
		idx = (int) (p - parts);
		if (b->messages == b->capmsgs)
		{
			b->capmsgs = b->capmsgs ? b->capmsgs * 2 : 256;
			b->msgs = b->msgs ? repalloc(b->msgs, sizeof(*b->msgs) * b->capmsgs)
				: palloc(sizeof(*b->msgs) * b->capmsgs);
			b->msg_part = b->msg_part ? repalloc(b->msg_part, sizeof(int) * b->capmsgs)
				: palloc(sizeof(int) * b->capmsgs);
			b->msg_refill = b->msg_refill ? repalloc(b->msg_refill, sizeof(bool) * b->capmsgs)
				: palloc(sizeof(bool) * b->capmsgs);
		}
		b->msgs[b->messages] = m;
		b->msg_part[b->messages] = idx;
		b->msg_refill[b->messages] = m->offset < p->refill_until;
		b->messages++;
		b->bytes += m->len;
		if (!b->in_batch[idx])
		{
			b->in_batch[idx] = true;
			b->first[idx] = m->offset;
		}
		b->last[idx] = m->offset;
		p->next_offset = m->offset + 1;
		p->messages++;
		p->caught_up = false;
		p->last_message_at = now;
		if (b->messages - b->submitted_upto >= DECODE_RUN)
			decode_batch(b);	/* decoding starts while we keep polling */
		if (b->messages >= max_msgs || b->bytes >= max_bytes)
			break;
	}
	MemoryContextSwitchTo(old);
	anomstream_set_state(source.all_brokers_down ? WORKER_WAITING_FOR_BROKER :
						 ops_any_gap(parts, nparts) ? WORKER_GAP : WORKER_RUNNING,
						 source.all_brokers_down ? source.last_error : NULL);
}

/*
 * Hand the batch's messages not yet submitted to the decode thread, as one job.
 */
static void
decode_batch(Batch *b)
{
	MemoryContext old = MemoryContextSwitchTo(b->cxt);
	int			n = b->messages - b->submitted_upto;
	DecodeJob  *job;
	const char **bufs;
	size_t	   *lens;
	DecodeStream *streams;
	int64_t    *kts;

	if (n <= 0)
	{
		MemoryContextSwitchTo(old);
		return;
	}
	job = palloc0(sizeof(DecodeJob));
	bufs = palloc(sizeof(char *) * n);
	lens = palloc(sizeof(size_t) * n);
	streams = palloc(sizeof(DecodeStream) * n);
	kts = palloc(sizeof(int64_t) * n);
	for (int k = 0; k < n; k++)
	{
		int			i = b->submitted_upto + k;
		rd_kafka_message_t *m = b->msgs[i];
		rd_kafka_timestamp_type_t tstype;
		int64		ms = rd_kafka_message_timestamp(m, &tstype);

		bufs[k] = m->payload ? (const char *) m->payload : "";
		lens[k] = m->payload ? m->len : 0;
		streams[k] = parts[b->msg_part[i]].stream;
		kts[k] = (tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE || ms < 0) ? INT64_MIN : ms * 1000;
	}
	job->first = b->submitted_upto;
	job->nmsgs = n;
	job->bufs = bufs;
	job->lens = lens;
	job->streams = streams;
	job->kafka_ts_usec = kts;
	job->max_future_usec = decode_max_future_usec();
	job->arena = b->arena;
	job->out = palloc(sizeof(DecodedMessage) * n);
	if (b->njobs == b->capjobs)
	{
		b->capjobs = b->capjobs ? b->capjobs * 2 : 16;
		b->jobs = b->jobs ? repalloc(b->jobs, sizeof(DecodeJob *) * b->capjobs)
			: palloc(sizeof(DecodeJob *) * b->capjobs);
	}
	b->jobs[b->njobs++] = job;
	b->submitted_upto = b->messages;
	MemoryContextSwitchTo(old);
	decode_thread_submit(job);
}

/*
 * Turn a decoded batch into staged rows and dead letters (main thread: it may check the
 * database encoding and allocate).
 */
static void
absorb_batch(Batch *b)
{
	MemoryContext old = MemoryContextSwitchTo(b->cxt);

	for (int j = 0; j < b->njobs; j++)
		if (b->jobs[j]->oom)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory in decoder")));
	for (int j = 0; j < b->njobs; j++)
	{
		DecodeJob  *job = b->jobs[j];

		for (int k = 0; k < job->nmsgs; k++)
		{
			int			i = job->first + k;
			rd_kafka_message_t *m = b->msgs[i];
			DecodedMessage *msg = &job->out[k];
			PartState  *p = &parts[b->msg_part[i]];
			bool		refill = b->msg_refill[i];
			TimestampTz event_time;
			TimestampTz kafka_timestamp = DT_NOBEGIN;
			const char *skipped = ops_skip_reason(p->topic, p->partition, m->offset);

			/* ops: anomstream.skip() named this message: the raw message is a dead letter */
			if (skipped)
			{
				if (!refill)
					add_dead_letter(b, p, m, -1, job->bufs[k], job->lens[k], skipped);
				continue;
			}
			if (msg->error)
			{
				if (!refill)
					add_dead_letter(b, p, m, -1, job->bufs[k], job->lens[k], msg->error);
				continue;
			}
			decode_check_encoding(msg, p->stream);
			event_time = decode_event_time(msg);
			/* Kafka's clock (Unix microseconds) to timestamptz */
			if (job->kafka_ts_usec[k] != INT64_MIN)
				kafka_timestamp = (TimestampTz) (job->kafka_ts_usec[k] - decode_kafka_ts_usec(0));
			for (int r = 0; r < msg->nrows; r++)
			{
				DecodedRow *row = &msg->rows[r];
				int			s = p->stream;
				StagedRow  *sr;

				if (row->error)
				{
					if (!refill)
						add_dead_letter(b, p, m, row->row_index, row->raw, row->raw_len,
										row->error);
					continue;
				}
				if (b->nrows[s] == b->caprows[s])
				{
					b->caprows[s] = b->caprows[s] ? b->caprows[s] * 2 : 1024;
					b->rows[s] = b->rows[s]
						? repalloc_huge(b->rows[s], sizeof(StagedRow) * b->caprows[s])
						: palloc(sizeof(StagedRow) * b->caprows[s]);
				}
				sr = &b->rows[s][b->nrows[s]++];
				sr->row = row;
				sr->partition = p->partition;
				sr->offset = m->offset;
				sr->event_time = event_time;
				sr->kafka_timestamp = kafka_timestamp;
				b->total_rows++;
				p->rows++;
			}
		}
	}
	rows_per_message = 0.9 * rows_per_message +
		0.1 * ((double) (b->total_rows + b->ndead) / Max(b->messages, 1));
	MemoryContextSwitchTo(old);
}

/*
 * Write the batch in one transaction, then tell Kafka, then let the batch go.
 */
static void
commit_batch(Batch *b)
{
	TimestampTz start = GetCurrentTimestamp();
	int64		batch_id;
	double		ms;
	StagedSlots staged[DECODE_NSTREAMS];

	ops_skips_refresh();		/* ops: skips requested since the last batch */
	absorb_batch(b);
	for (int i = 0; i < nparts; i++)
	{
		parts[i].in_batch = b->in_batch[i];
		parts[i].batch_first = b->first[i];
		parts[i].batch_last = b->last[i];
	}

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "anomstream micro-batch");
	ops_claim_verify();			/* ops: still our cluster's database? */

	batch_id = positions_next_batch_id();
	{
		MemoryContext old = MemoryContextSwitchTo(b->cxt);

		for (int s = 0; s < DECODE_NSTREAMS; s++)
			staging_insert((DecodeStream) s, b->rows[s], b->nrows[s], batch_id, &staged[s]);
		MemoryContextSwitchTo(old);
	}
	pipeline_process_batch(batch_id, parts, nparts, staged);	/* windows, join, late rows */
	keyed_state_process_batch(batch_id, parts, nparts);
	positions_insert_dead_letters(b->dead, b->ndead);
	positions_record_batch(parts, nparts, batch_id);
	sinks_process_batch(batch_id, parts, nparts);	/* sinks: take over rows, roll parts */
	ops_skips_apply(batch_id);	/* ops: after the positions, so no skip() slips past */

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);

	for (int i = 0; i < nparts; i++)
		if (parts[i].in_batch && parts[i].batch_last + 1 > parts[i].durable_offset)
			parts[i].durable_offset = parts[i].batch_last + 1;
	kafka_commit_offsets(&source, parts, nparts);
	for (int i = 0; i < nparts; i++)
		parts[i].in_batch = false;

	ms = (double) (GetCurrentTimestamp() - start) / 1000.0;
	LWLockAcquire(anomstream_shared->lock, LW_EXCLUSIVE);
	{
		double		secs = Max(ms / 1000.0, 0.001);
		double		rate = b->total_rows / secs;

		anomstream_shared->batches++;
		anomstream_shared->last_batch_id = batch_id;
		anomstream_shared->last_batch_ms = ms;
		anomstream_shared->rows_per_sec = anomstream_shared->rows_per_sec == 0 ? rate
			: 0.8 * anomstream_shared->rows_per_sec + 0.2 * rate;
	}
	LWLockRelease(anomstream_shared->lock);
	MemoryContextSwitchTo(TopMemoryContext);
	batch_reset(b);
}

/*
 * Expire staging rows in their own short transaction.
 */
static void
run_retention(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "anomstream staging retention");
	positions_apply_retention();
	(void) ops_apply_retention();	/* ops: results, dead letters, late rows */
	sinks_roll_due();			/* sinks: parts due by age while no data arrives */
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Copy per-partition figures to shared memory.
 */
static void
publish_parts(void)
{
	int			n = Min(nparts, ANOMSTREAM_MAX_PARTITIONS);

	for (int i = 0; i < n; i++)
	{
		int64		low,
					high;

		if (source_open &&
			rd_kafka_get_watermark_offsets(source.rk, parts[i].topic, parts[i].partition,
										   &low, &high) == RD_KAFKA_RESP_ERR_NO_ERROR &&
			high >= 0)
			parts[i].high_watermark = high;
		if (source_open)
			ops_gap_find_earliest(source.rk, &parts[i]);	/* ops: still unknown */
	}
	LWLockAcquire(anomstream_shared->lock, LW_EXCLUSIVE);
	anomstream_shared->npartitions = n;
	for (int i = 0; i < n; i++)
	{
		PartitionStatus *s = &anomstream_shared->parts[i];
		PartState  *p = &parts[i];

		strlcpy(s->topic, p->topic, ANOMSTREAM_NAME_LEN);
		s->partition = p->partition;
		s->next_offset = p->next_offset;
		s->high_watermark = p->high_watermark;
		s->messages = p->messages;
		s->rows = p->rows;
		s->dead_letters = p->dead_letters;
		s->caught_up = p->caught_up;
		s->last_message_at = p->last_message_at;
		s->gap = p->gap;
		s->gap_low = p->gap_low;
	}
	LWLockRelease(anomstream_shared->lock);
}
