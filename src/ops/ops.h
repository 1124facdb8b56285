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
 *	- ops_schema_version_ok() in setup() and at the top of every loop iteration (outside any
 *	  transaction).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_OPS_H
#define ANOMSTREAM_OPS_H

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

/* schema_version.c */
extern bool ops_schema_version_ok(bool force);

#endif							/* ANOMSTREAM_OPS_H */
