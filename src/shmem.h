/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  The shared status block: what the pipeline worker publishes for anomstream.status.
 *
 * One AnomstreamShared per server, allocated when the library is preloaded. The worker is
 * the only writer (except the pause fields, which anomstream.pause()/resume() also write at
 * commit, see src/ops/pause.c); SQL readers take a copy. Locking: every field is read and
 * written under the block's LWLock (shared for readers, exclusive for writers), held only
 * for copying. The block is a live view: positions that must survive crashes live in tables.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_SHMEM_H
#define ANOMSTREAM_SHMEM_H

#include "datatype/timestamp.h"
#include "storage/lwlock.h"

#define ANOMSTREAM_MAX_PARTITIONS	256 /* topic-partitions tracked in status */
#define ANOMSTREAM_NAME_LEN			64
#define ANOMSTREAM_MSG_LEN			256

/* Worker states as shown in anomstream.status */
typedef enum WorkerState
{
	WORKER_NOT_RUNNING = 0,
	WORKER_STARTING,
	WORKER_IDLE_NO_BROKERS,		/* anomstream.brokers is empty */
	WORKER_WAITING_FOR_EXTENSION,
	WORKER_WAITING_FOR_RECOVERY,
	WORKER_RUNNING,
	WORKER_WAITING_FOR_BROKER,
	WORKER_ERROR,
	WORKER_PAUSED,
	WORKER_CLAIM_REQUIRED,		/* ops: restored copy, waits for anomstream.claim() */
	WORKER_GAP,					/* ops: running, but a partition stopped at a Kafka gap */
	WORKER_SCHEMA_MISMATCH		/* ops: library and extension schema versions differ */
} WorkerState;

/* Per topic-partition live figures */
typedef struct PartitionStatus
{
	char		topic[ANOMSTREAM_NAME_LEN];
	int32		partition;
	int64		next_offset;	/* next offset the worker will read */
	int64		high_watermark; /* broker's high watermark, -1 unknown */
	int64		messages;		/* messages consumed since worker start */
	int64		rows;			/* rows staged since worker start */
	int64		dead_letters;	/* dead letters written since worker start */
	bool		caught_up;		/* read up to the high watermark */
	TimestampTz last_message_at;	/* wall-clock time of the last message */
	/* ops (src/ops/gap.c): stopped at a position Kafka no longer has */
	bool		gap;
	int64		gap_low;		/* earliest offset Kafka still has, -1 unknown */
} PartitionStatus;

typedef struct AnomstreamShared
{
	LWLock	   *lock;
	pid_t		worker_pid;
	WorkerState state;
	TimestampTz state_since;
	char		last_error[ANOMSTREAM_MSG_LEN];
	TimestampTz last_error_at;
	char		bootstrap[ANOMSTREAM_MSG_LEN];	/* brokers in use (embedded: its address) */
	bool		embedded;
	int64		batches;		/* micro-batches committed since worker start */
	int64		last_batch_id;
	double		last_batch_ms;	/* duration of the last micro-batch */
	double		rows_per_sec;	/* recent ingest rate (exponential average) */
	int			npartitions;
	PartitionStatus parts[ANOMSTREAM_MAX_PARTITIONS];
	/* ops (src/ops/pause.c): the pause flag, written at commit of pause()/resume() too */
	bool		pause_known;	/* paused mirrors anomstream.control */
	bool		paused;
	uint64		pause_gen;		/* bumped by every committed pause()/resume() */
	/* ops (src/ops/skip.c, gap.c): bumped at commit of skip() / accept_gap() */
	uint64		skip_gen;
	uint64		reassign_gen;
	/* rebuild (src/pipeline/rebuild.c, config.c) */
	uint64		rebuild_gen;	/* bumped by every committed anomstream.rebuild() */
	bool		rebuilding;		/* a rebuild replays: status shows 'rebuilding' */
	bool		config_pending; /* semantic settings differ from pipeline_config */
} AnomstreamShared;

extern AnomstreamShared *anomstream_shared;

extern void anomstream_shmem_init(void);
extern void anomstream_check_preloaded(void);
extern const char *anomstream_worker_state_name(WorkerState state);
extern void anomstream_set_state(WorkerState state, const char *error);

#endif							/* ANOMSTREAM_SHMEM_H */
