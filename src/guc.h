/*-------------------------------------------------------------------------
 *
 * guc.h
 *	  Every anomstream.* setting, as C globals.
 *
 * All settings are registered by anomstream_guc_init() in guc.c and nowhere else.
 * Durations are stored in the unit named by the variable's comment.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_GUC_H
#define ANOMSTREAM_GUC_H

/* connection of the pipeline worker (PGC_POSTMASTER) */
extern char *anomstream_database;		/* database the worker connects to */
extern char *anomstream_role;			/* role the worker runs as; empty = bootstrap superuser */

/* Kafka source (PGC_SIGHUP: the worker reconnects when they change) */
extern char *anomstream_brokers;		/* bootstrap servers, 'embedded', or '' = idle */
extern char *anomstream_topics;			/* "process_topic,memory_topic" */
extern char *anomstream_partitions;		/* partition list for scale-out; '' = all */
extern char *anomstream_group_id;		/* Kafka group that receives offset commits */
extern char *anomstream_kafka_options;	/* librdkafka pass-through, superuser only */
extern int	anomstream_embedded_partitions; /* partitions per topic of the embedded mock */

/* micro-batches */
extern int	anomstream_trigger_interval;	/* ms */
extern int	anomstream_poll_timeout;	/* ms, longest single wait inside librdkafka */
extern int	anomstream_max_batch_rows;
extern int	anomstream_max_batch_bytes; /* kB */

/* event time */
extern int	anomstream_lateness;		/* ms */
extern int	anomstream_window;			/* ms */
extern int	anomstream_join_bound;		/* ms */
extern int	anomstream_new_attack_retention;	/* s */
extern int	anomstream_idle_timeout;	/* ms */
extern int	anomstream_max_future;		/* s */

/* retention */
extern int	anomstream_staging_retention;	/* s */
extern int	anomstream_result_retention;	/* s, -1 = forever */
extern int	anomstream_dead_letters_retention;	/* s, -1 = forever */
extern int	anomstream_late_rows_retention; /* s, -1 = forever */

/* sinks */
extern int	anomstream_sink_roll_rows;
extern int	anomstream_sink_roll_interval;	/* s */

/* scoring */
extern int	anomstream_xgboost_threads;
extern int	anomstream_model_cache_size;	/* loaded model versions per backend */

extern void anomstream_guc_init(void);

#endif							/* ANOMSTREAM_GUC_H */
