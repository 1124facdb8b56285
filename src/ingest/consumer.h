/*-------------------------------------------------------------------------
 *
 * consumer.h
 *	  The worker's librdkafka consumer (and the embedded mock cluster).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_CONSUMER_H
#define ANOMSTREAM_CONSUMER_H

#include "postgres.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "ingest/positions.h"
#include "shmem.h"


typedef struct KafkaSource
{
	rd_kafka_t *rk;				/* the consumer */
	rd_kafka_t *mock_rk;		/* owner of the embedded cluster, or NULL */
	rd_kafka_mock_cluster_t *mcluster;
	char	   *bootstrap;		/* brokers in use (malloc'd) */
	bool		embedded;
	char	   *topics[DECODE_NSTREAMS];	/* malloc'd topic names, by stream */
	bool		all_brokers_down;	/* set by the error callback, cleared on data */
	char		last_error[256];
} KafkaSource;

extern bool kafka_open(KafkaSource *src, char *errbuf, size_t errlen);
extern void kafka_close(KafkaSource *src);
extern int	kafka_list_partitions(KafkaSource *src, PartState **parts, char *errbuf,
								  size_t errlen);
extern bool kafka_assign(KafkaSource *src, PartState *parts, int nparts, char *errbuf,
						 size_t errlen);
extern void kafka_commit_offsets(KafkaSource *src, PartState *parts, int nparts);

#endif							/* ANOMSTREAM_CONSUMER_H */
