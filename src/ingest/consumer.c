/*-------------------------------------------------------------------------
 *
 * consumer.c
 *	  librdkafka inside a backend: consumer setup, static assignment, offset commits,
 *	  and the embedded mock cluster.
 *
 * Invariants:
 *	- Positions come from PostgreSQL: partitions are assigned with rd_kafka_assign() at the
 *	  offsets positions.c computed, never subscribe(); the Kafka group only receives offset
 *	  commits after PostgreSQL committed, for lag tools. auto.offset.reset=error, so a
 *	  position Kafka no longer has is reported, never silently skipped.
 *	- librdkafka's threads must never run PostgreSQL code: all signals are blocked while
 *	  handles (and so their threads) are created, and logs and errors are routed to the
 *	  consumer queue, whose callbacks run on the worker's own thread inside
 *	  rd_kafka_consumer_poll(). Only then do the callbacks call ereport.
 *	- 'embedded' starts librdkafka's mock cluster in this process: in-memory, gone when the
 *	  worker exits, for demos and tests only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <pthread.h>
#include <signal.h>

#include "utils/timestamp.h"

#include "guc.h"
#include "ingest/consumer.h"
#include "ops/ops.h"

#define METADATA_TIMEOUT_MS 5000
#define LOG_INTERVAL_MS 10000		/* at most one log line per kind per interval */

static TimestampTz last_log_at = 0;
static TimestampTz last_error_log_at = 0;
static KafkaSource *current_source = NULL;	/* for the callbacks */

/*
 * librdkafka log callback (runs on the worker thread: logs go through the queue).
 */
static void
log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	TimestampTz now = GetCurrentTimestamp();

	if (level > 4 && !TimestampDifferenceExceeds(last_log_at, now, LOG_INTERVAL_MS))
		return;
	last_log_at = now;
	ereport(LOG, (errmsg("anomstream: librdkafka %s: %s", fac, buf)));
}

/*
 * librdkafka error callback (worker thread).
 */
static void
error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	TimestampTz now = GetCurrentTimestamp();

	if (current_source)
	{
		snprintf(current_source->last_error, sizeof(current_source->last_error), "%s: %s",
				 rd_kafka_err2name(err), reason);
		if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
			current_source->all_brokers_down = true;
	}
	if (TimestampDifferenceExceeds(last_error_log_at, now, LOG_INTERVAL_MS))
	{
		last_error_log_at = now;
		ereport(LOG, (errmsg("anomstream: kafka error %s: %s", rd_kafka_err2name(err), reason)));
	}
}

/*
 * Set one property, reporting failure.
 */
static bool
conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errbuf, size_t errlen)
{
	return rd_kafka_conf_set(conf, key, value, errbuf, errlen) == RD_KAFKA_CONF_OK;
}

/*
 * Apply anomstream.kafka_options: "key=value; key=value".
 */
static bool
apply_options(rd_kafka_conf_t *conf, const char *options, char *errbuf, size_t errlen)
{
	char	   *copy = pstrdup(options ? options : "");
	char	   *save = NULL;

	for (char *item = strtok_r(copy, ";", &save); item; item = strtok_r(NULL, ";", &save))
	{
		char	   *eq = strchr(item, '=');
		char	   *key = item;
		char	   *value;

		while (*key == ' ')
			key++;
		if (*key == '\0')
			continue;
		if (eq == NULL)
		{
			snprintf(errbuf, errlen, "anomstream.kafka_options: \"%s\" is not key=value", key);
			return false;
		}
		*eq = '\0';
		value = eq + 1;
		for (char *e = eq - 1; e >= key && *e == ' '; e--)
			*e = '\0';
		while (*value == ' ')
			value++;
		if (!conf_set(conf, key, value, errbuf, errlen))
			return false;
	}
	pfree(copy);
	return true;
}

/*
 * Create a handle with every signal blocked, so librdkafka's threads never take one.
 */
static rd_kafka_t *
new_handle(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errbuf, size_t errlen)
{
	sigset_t	all,
				old;
	rd_kafka_t *rk;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rk = rd_kafka_new(type, conf, errbuf, errlen);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rk;
}

/*
 * Split anomstream.topics into the two stream topics.
 */
static bool
parse_topics(KafkaSource *src, char *errbuf, size_t errlen)
{
	const char *list = anomstream_topics ? anomstream_topics : "";
	const char *comma = strchr(list, ',');

	if (comma == NULL || comma == list || comma[1] == '\0' || strchr(comma + 1, ',') != NULL)
	{
		snprintf(errbuf, errlen,
				 "anomstream.topics must name two topics, process then memory (got \"%s\")", list);
		return false;
	}
	src->topics[STREAM_PROCESS] = strndup(list, comma - list);
	src->topics[STREAM_MEMORY] = strdup(comma + 1);
	return src->topics[0] && src->topics[1];
}

/*
 * Start the embedded mock cluster and create both topics.
 */
static bool
start_embedded(KafkaSource *src, char *errbuf, size_t errlen)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	conf_set(conf, "log_level", "3", errbuf, errlen);
	src->mock_rk = new_handle(RD_KAFKA_PRODUCER, conf, errbuf, errlen);
	if (src->mock_rk == NULL)
		return false;
	{
		sigset_t	all,
					old;

		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		src->mcluster = rd_kafka_mock_cluster_new(src->mock_rk, 1);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	if (src->mcluster == NULL)
	{
		snprintf(errbuf, errlen, "could not start the embedded mock cluster");
		return false;
	}
	for (int s = 0; s < DECODE_NSTREAMS; s++)
	{
		rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(src->mcluster, src->topics[s],
															 anomstream_embedded_partitions, 1);

		if (err)
		{
			snprintf(errbuf, errlen, "embedded cluster: cannot create topic %s: %s",
					 src->topics[s], rd_kafka_err2str(err));
			return false;
		}
	}
	src->bootstrap = strdup(rd_kafka_mock_cluster_bootstraps(src->mcluster));
	src->embedded = true;
	return true;
}

/*
 * Create the consumer (and the embedded cluster if anomstream.brokers = 'embedded').
 */
bool
kafka_open(KafkaSource *src, char *errbuf, size_t errlen)
{
	rd_kafka_conf_t *conf;

	memset(src, 0, sizeof(*src));
	current_source = src;
	if (!parse_topics(src, errbuf, errlen))
		return false;
	if (strcmp(anomstream_brokers, "embedded") == 0)
	{
		if (!start_embedded(src, errbuf, errlen))
			return false;
	}
	else
		src->bootstrap = strdup(anomstream_brokers);

	conf = rd_kafka_conf_new();
	if (!conf_set(conf, "bootstrap.servers", src->bootstrap, errbuf, errlen) ||
		!conf_set(conf, "group.id", anomstream_group_id, errbuf, errlen) ||
		!conf_set(conf, "client.id", "anomstream", errbuf, errlen) ||
		!conf_set(conf, "enable.auto.commit", "false", errbuf, errlen) ||
		!conf_set(conf, "enable.auto.offset.store", "false", errbuf, errlen) ||
		!conf_set(conf, "auto.offset.reset", "error", errbuf, errlen) ||
		!conf_set(conf, "enable.partition.eof", "true", errbuf, errlen) ||
		!conf_set(conf, "fetch.wait.max.ms", "50", errbuf, errlen) ||
		/*
		 * Prefetch more than a second of consumption: librdkafka 2.0 looks at a full
		 * prefetch queue again only about once a second, so with the default 64 MB a
		 * backlog is read in bursts with idle gaps (measured: 20-30 % of the catch-up time).
		 * A limit, not an allocation; anomstream.kafka_options can lower it.
		 */
		!conf_set(conf, "queued.max.messages.kbytes", "262144", errbuf, errlen) ||
		!conf_set(conf, "log.queue", "true", errbuf, errlen) ||
		!conf_set(conf, "reconnect.backoff.ms", "1000", errbuf, errlen) ||
		!conf_set(conf, "reconnect.backoff.max.ms", "60000", errbuf, errlen) ||
		!apply_options(conf, anomstream_kafka_options, errbuf, errlen))
	{
		rd_kafka_conf_destroy(conf);
		return false;
	}
	rd_kafka_conf_set_log_cb(conf, log_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);

	src->rk = new_handle(RD_KAFKA_CONSUMER, conf, errbuf, errlen);
	if (src->rk == NULL)
		return false;			/* rd_kafka_new destroyed conf only on success */
	rd_kafka_set_log_queue(src->rk, NULL);	/* logs to the main queue ... */
	rd_kafka_poll_set_consumer(src->rk);	/* ... which the consumer poll serves */
	return true;
}

/*
 * Destroy handles; safe on a partly opened source.
 */
void
kafka_close(KafkaSource *src)
{
	if (src->rk)
	{
		rd_kafka_assign(src->rk, NULL);
		rd_kafka_consumer_close(src->rk);
		rd_kafka_destroy(src->rk);
	}
	if (src->mcluster)
		rd_kafka_mock_cluster_destroy(src->mcluster);
	if (src->mock_rk)
		rd_kafka_destroy(src->mock_rk);
	free(src->bootstrap);
	for (int s = 0; s < DECODE_NSTREAMS; s++)
		free(src->topics[s]);
	if (current_source == src)
		current_source = NULL;
	memset(src, 0, sizeof(*src));
}

/*
 * Does anomstream.partitions include p? '' = all; else a list like "0-3,8".
 */
static bool
partition_selected(int32 p)
{
	const char *s = anomstream_partitions ? anomstream_partitions : "";
	char	   *end;

	if (*s == '\0')
		return true;
	while (*s)
	{
		long		lo,
					hi;

		while (*s == ' ' || *s == ',')
			s++;
		if (*s == '\0')
			break;
		lo = strtol(s, &end, 10);
		if (end == s)
			return false;
		s = end;
		hi = lo;
		if (*s == '-')
		{
			s++;
			hi = strtol(s, &end, 10);
			if (end == s)
				return false;
			s = end;
		}
		if (p >= lo && p <= hi)
			return true;
	}
	return false;
}

/*
 * Ask the brokers for both topics' partitions. Returns the number of selected partitions
 * (*parts palloc'd in CurrentMemoryContext) or -1 on error. Raises an error when
 * anomstream.partitions is set and the topics have different partition counts.
 */
int
kafka_list_partitions(KafkaSource *src, PartState **parts, char *errbuf, size_t errlen)
{
	int			n = 0;
	int			counts[DECODE_NSTREAMS];
	PartState  *out = palloc0(sizeof(PartState) * ANOMSTREAM_MAX_PARTITIONS);

	for (int s = 0; s < DECODE_NSTREAMS; s++)
	{
		const struct rd_kafka_metadata *md;
		rd_kafka_topic_t *rkt = rd_kafka_topic_new(src->rk, src->topics[s], NULL);
		rd_kafka_resp_err_t err;

		err = rd_kafka_metadata(src->rk, 0, rkt, &md, METADATA_TIMEOUT_MS);
		rd_kafka_topic_destroy(rkt);
		if (err)
		{
			snprintf(errbuf, errlen, "metadata for topic %s: %s", src->topics[s],
					 rd_kafka_err2str(err));
			return -1;
		}
		if (md->topic_cnt < 1 || md->topics[0].err)
		{
			snprintf(errbuf, errlen, "topic %s: %s", src->topics[s],
					 md->topic_cnt < 1 ? "not found" : rd_kafka_err2str(md->topics[0].err));
			rd_kafka_metadata_destroy(md);
			return -1;
		}
		counts[s] = md->topics[0].partition_cnt;
		for (int i = 0; i < md->topics[0].partition_cnt; i++)
		{
			int32		p = md->topics[0].partitions[i].id;

			if (!partition_selected(p))
				continue;
			if (n >= ANOMSTREAM_MAX_PARTITIONS)
			{
				snprintf(errbuf, errlen, "more than %d partitions assigned",
						 ANOMSTREAM_MAX_PARTITIONS);
				rd_kafka_metadata_destroy(md);
				return -1;
			}
			out[n].topic = pstrdup(src->topics[s]);
			out[n].partition = p;
			out[n].stream = (DecodeStream) s;
			out[n].high_watermark = -1;
			n++;
		}
		rd_kafka_metadata_destroy(md);
	}

	/* ops: servers splitting the partitions need equal partition counts (DESIGN.md §11) */
	if (anomstream_partitions && anomstream_partitions[0] != '\0' &&
		counts[STREAM_PROCESS] != counts[STREAM_MEMORY])
	{
		pfree(out);
		ops_check_partition_counts(src->topics[STREAM_PROCESS], counts[STREAM_PROCESS],
								   src->topics[STREAM_MEMORY], counts[STREAM_MEMORY]);
	}
	*parts = out;
	return n;
}

/*
 * Assign every partition at its next_offset (-1: the beginning).
 */
bool
kafka_assign(KafkaSource *src, PartState *parts, int nparts, char *errbuf, size_t errlen)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(nparts);
	rd_kafka_resp_err_t err;

	for (int i = 0; i < nparts; i++)
	{
		rd_kafka_topic_partition_t *tp =
			rd_kafka_topic_partition_list_add(list, parts[i].topic, parts[i].partition);

		tp->offset = parts[i].next_offset >= 0 ? parts[i].next_offset : RD_KAFKA_OFFSET_BEGINNING;
	}
	err = rd_kafka_assign(src->rk, list);
	rd_kafka_topic_partition_list_destroy(list);
	if (err)
	{
		snprintf(errbuf, errlen, "assign: %s", rd_kafka_err2str(err));
		return false;
	}
	return true;
}

/*
 * Tell the Kafka group how far PostgreSQL has committed for the partitions the committed
 * batch read (asynchronous, best effort: lag tools read it, anomstream never does).
 */
void
kafka_commit_offsets(KafkaSource *src, PartState *parts, int nparts)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(nparts);

	for (int i = 0; i < nparts; i++)
		if (parts[i].in_batch)
			rd_kafka_topic_partition_list_add(list, parts[i].topic, parts[i].partition)->offset =
				parts[i].batch_last + 1;
	if (list->cnt > 0)
		rd_kafka_commit(src->rk, list, 1);
	rd_kafka_topic_partition_list_destroy(list);
}
