/*-------------------------------------------------------------------------
 *
 * ops.h
 *	  Operations (DESIGN.md §7, §10, §11): pause/resume, restored-copy claims, retention of
 *	  results, dead letters and late rows, scale-out checks, the worker's session hardening.
 *
 * What the pipeline worker calls (each from one marked call site in src/ingest/worker.c):
 *	- ops_harden_session() once after connecting;
 *	- ops_paused() at the top of every loop iteration (outside any transaction);
 *	- ops_claim_ok() in setup() before Kafka is opened (outside any transaction);
 *	- ops_claim_verify() inside every micro-batch transaction, SPI connected;
 *	- ops_apply_retention() inside run_retention()'s transaction, SPI connected;
 *	- ops_check_partition_counts() from kafka_list_partitions() (src/ingest/consumer.c),
 *	  when anomstream.partitions is set and the topics' partition counts differ;
 *	- ops_skips_load() in setup()'s transaction, ops_skips_refresh() before a batch is
 *	  absorbed, ops_skip_reason() per message while absorbing, ops_skips_apply() inside the
 *	  micro-batch transaction after the positions are recorded;
 *	- ops_gap_find_earliest() when a partition stops at a gap (and while its earliest offset
 *	  is unknown), ops_any_gap() for the worker state, ops_reassign_requested() at the top
 *	  of every loop iteration (outside any transaction);
 *	- ops_schema_version_ok() in setup() and at the top of every loop iteration (outside any
 *	  transaction).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_OPS_H
#define ANOMSTREAM_OPS_H

#include <librdkafka/rdkafka.h>

#include "datatype/timestamp.h"
#include "ingest/positions.h"

/* session.c */
extern void ops_harden_session(void);

/* pause.c */
extern bool ops_paused(void);
extern void ops_pause_publish_at_commit(bool value);
extern void ops_wake_worker(void);

/* claim.c */
extern bool ops_claim_ok(void);
extern void ops_claim_verify(void);

/* retention.c */
extern int64 ops_apply_retention(void);

/* scaleout.c */
extern void ops_check_partition_counts(const char *topic1, int count1,
									   const char *topic2, int count2);

/* signal.c */
typedef enum OpsSignal
{
	OPS_SIGNAL_SKIPS = 1,		/* anomstream.skips changed: reload it */
	OPS_SIGNAL_REASSIGN = 2,	/* positions moved: re-read them and re-assign */
	OPS_SIGNAL_REBUILD = 4		/* anomstream.rebuild() requested (pipeline/rebuild.c) */
} OpsSignal;
extern void ops_signal_at_commit(OpsSignal which);

/* skip.c */
extern void ops_skips_load(void);
extern void ops_skips_refresh(void);
extern const char *ops_skip_reason(const char *topic, int32 partition, int64 offset);
extern void ops_skips_apply(int64 batch_id);

/* gap.c */
extern bool ops_reassign_requested(void);
extern bool ops_any_gap(const PartState *parts, int nparts);
extern void ops_gap_find_earliest(rd_kafka_t *rk, PartState *p);
/* schema_version.c */
extern bool ops_schema_version_ok(bool force);

#endif							/* ANOMSTREAM_OPS_H */
