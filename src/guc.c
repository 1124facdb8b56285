/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Registration of every anomstream.* setting.
 *
 * Invariants: this is the only file that calls DefineCustom*Variable; settings the worker
 * needs before it starts (database, role) are PGC_POSTMASTER and are only defined when the
 * library is preloaded; everything else can be changed with a reload. Semantic settings
 * (window, lateness, join_bound, new_attack_retention) are also stored by the pipeline at
 * first start, so a changed value waits for anomstream.rebuild() (DESIGN.md §7).
 * anomstream.kafka_options may hold broker secrets and is visible to superusers only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "miscadmin.h"
#include "utils/guc.h"

#include "guc.h"

char	   *anomstream_database = NULL;
char	   *anomstream_role = NULL;
char	   *anomstream_brokers = NULL;
char	   *anomstream_topics = NULL;
char	   *anomstream_partitions = NULL;
char	   *anomstream_group_id = NULL;
char	   *anomstream_kafka_options = NULL;
int			anomstream_embedded_partitions = 4;
int			anomstream_trigger_interval = 1000;
int			anomstream_poll_timeout = 100;
int			anomstream_max_batch_rows = 100000;
int			anomstream_max_batch_bytes = 65536;
int			anomstream_lateness = 20000;
int			anomstream_window = 120000;
int			anomstream_join_bound = 30000;
int			anomstream_new_attack_retention = 86400;
int			anomstream_idle_timeout = 60000;
int			anomstream_max_future = 3600;
int			anomstream_staging_retention = 900;
int			anomstream_result_retention = -1;
int			anomstream_dead_letters_retention = 7 * 86400;
int			anomstream_late_rows_retention = 7 * 86400;
int			anomstream_sink_roll_rows = 1000000;
int			anomstream_sink_roll_interval = 60;
int			anomstream_xgboost_threads = 1;
int			anomstream_model_cache_size = 16;

/*
 * Define an integer setting; the wrapper keeps the list below one line per setting.
 */
static void
define_int(const char *name, const char *desc, int *var, int def, int min, int max,
		   GucContext ctx, int flags)
{
	DefineCustomIntVariable(name, desc, NULL, var, def, min, max, ctx, flags,
							NULL, NULL, NULL);
}

/*
 * Define a string setting.
 */
static void
define_string(const char *name, const char *desc, char **var, const char *def,
			  GucContext ctx, int flags)
{
	DefineCustomStringVariable(name, desc, NULL, var, def, ctx, flags,
							   NULL, NULL, NULL);
}

/*
 * Register all settings. Called from _PG_init in every backend that loads the library.
 */
void
anomstream_guc_init(void)
{
	/* Only meaningful for the worker, which exists only when preloaded. */
	if (process_shared_preload_libraries_in_progress)
	{
		define_string("anomstream.database",
					  "Database the anomstream pipeline worker connects to.",
					  &anomstream_database, "postgres", PGC_POSTMASTER, 0);
		define_string("anomstream.role",
					  "Role the pipeline worker runs as (empty: the bootstrap superuser).",
					  &anomstream_role, "", PGC_POSTMASTER, 0);
	}

	define_string("anomstream.brokers",
				  "Kafka bootstrap servers; 'embedded' starts an in-memory mock cluster for demos and tests; empty keeps the worker idle.",
				  &anomstream_brokers, "", PGC_SIGHUP, 0);
	define_string("anomstream.topics",
				  "Kafka topics of the process and memory streams, in that order.",
				  &anomstream_topics, "process,memory", PGC_SIGHUP, 0);
	define_string("anomstream.partitions",
				  "Partitions this server consumes (e.g. '0-3,8'); empty means all.",
				  &anomstream_partitions, "", PGC_SIGHUP, 0);
	define_string("anomstream.group_id",
				  "Kafka consumer group that receives offset commits (for lag tools only).",
				  &anomstream_group_id, "anomstream", PGC_SIGHUP, 0);
	define_string("anomstream.kafka_options",
				  "Extra librdkafka properties, 'key=value' separated by semicolons (security.protocol, sasl.*, ssl.*).",
				  &anomstream_kafka_options, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY);
	define_int("anomstream.embedded_partitions",
			   "Partitions per topic of the embedded mock Kafka cluster.",
			   &anomstream_embedded_partitions, 4, 1, 256, PGC_SIGHUP, 0);

	define_int("anomstream.trigger_interval",
			   "Longest time a micro-batch collects messages before it commits.",
			   &anomstream_trigger_interval, 1000, 1, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS);
	define_int("anomstream.poll_timeout",
			   "Longest single wait inside librdkafka before the worker checks for interrupts.",
			   &anomstream_poll_timeout, 100, 1, 10000, PGC_SIGHUP, GUC_UNIT_MS);
	define_int("anomstream.max_batch_rows",
			   "Most input rows in one micro-batch.",
			   &anomstream_max_batch_rows, 100000, 1, 10000000, PGC_SIGHUP, 0);
	define_int("anomstream.max_batch_bytes",
			   "Most message bytes in one micro-batch.",
			   &anomstream_max_batch_bytes, 65536, 64, 1024 * 1024, PGC_SIGHUP, GUC_UNIT_KB);

	define_int("anomstream.lateness",
			   "Allowed lateness: the watermark trails the largest event time by this much.",
			   &anomstream_lateness, 20000, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS);
	define_int("anomstream.window",
			   "Length of the tumbling windows of potential_attacks.",
			   &anomstream_window, 120000, 1000, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS);
	define_int("anomstream.join_bound",
			   "Largest event-time distance (exclusive) of a process and a memory row that are joined.",
			   &anomstream_join_bound, 30000, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS);
	define_int("anomstream.new_attack_retention",
			   "How far back a key counts as already seen for new_attacks.",
			   &anomstream_new_attack_retention, 86400, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_S);
	define_int("anomstream.idle_timeout",
			   "A caught-up partition that received nothing for this long stops holding the watermark.",
			   &anomstream_idle_timeout, 60000, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS);
	define_int("anomstream.max_future",
			   "A ts further than this after the Kafka message timestamp is a dead letter.",
			   &anomstream_max_future, 3600, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_S);

	define_int("anomstream.staging_retention",
			   "How long processed rows stay in the staging tables.",
			   &anomstream_staging_retention, 900, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_S);
	define_int("anomstream.result_retention",
			   "How long result rows are kept (-1: forever).",
			   &anomstream_result_retention, -1, -1, INT_MAX, PGC_SIGHUP, GUC_UNIT_S);
	define_int("anomstream.dead_letters_retention",
			   "How long dead letters are kept (-1: forever).",
			   &anomstream_dead_letters_retention, 7 * 86400, -1, INT_MAX, PGC_SIGHUP, GUC_UNIT_S);
	define_int("anomstream.late_rows_retention",
			   "How long late rows are listed (-1: forever).",
			   &anomstream_late_rows_retention, 7 * 86400, -1, INT_MAX, PGC_SIGHUP, GUC_UNIT_S);

	define_int("anomstream.sink_roll_rows",
			   "Rows after which a continuous Parquet sink starts a new part file.",
			   &anomstream_sink_roll_rows, 1000000, 1, INT_MAX, PGC_SIGHUP, 0);
	define_int("anomstream.sink_roll_interval",
			   "Time after which a continuous Parquet sink starts a new part file.",
			   &anomstream_sink_roll_interval, 60, 1, INT_MAX, PGC_SIGHUP, GUC_UNIT_S);

	define_int("anomstream.xgboost_threads",
			   "Threads XGBoost may use in one backend.",
			   &anomstream_xgboost_threads, 1, 1, 64, PGC_USERSET, 0);
	define_int("anomstream.model_cache_size",
			   "Model versions one backend keeps loaded (least recently used ones are unloaded).",
			   &anomstream_model_cache_size, 16, 1, 1000, PGC_USERSET, 0);

	MarkGUCPrefixReserved("anomstream");
}
