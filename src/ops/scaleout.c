/*-------------------------------------------------------------------------
 *
 * scaleout.c
 *	  Start-up checks for running anomstream on several servers (DESIGN.md §11).
 *
 * Each server consumes a fixed list of partitions (anomstream.partitions) of both topics, and
 * producers key messages by machine. A machine's process and memory rows meet on one server
 * only if both topics split machines the same way, which needs equal partition counts: the
 * pipeline worker's kafka_list_partitions() calls ops_check_partition_counts() with both
 * counts before assigning, whenever anomstream.partitions is set. The union of the servers'
 * results is built in SQL (sql/install/92_scaleout.sql, postgres_fdw).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "ops/ops.h"

/*
 * Raise an error unless both topics have the same number of partitions.
 */
void
ops_check_partition_counts(const char *topic1, int count1, const char *topic2, int count2)
{
	if (count1 == count2)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("topics \"%s\" and \"%s\" have different partition counts (%d and %d)",
					topic1, topic2, count1, count2),
			 errdetail("Messages are keyed by machine, so a machine's process and memory rows only meet in one partition number, and on one server, when both topics have the same number of partitions."),
			 errhint("Give both topics the same number of partitions (kafka-topics --alter --partitions), then reload the configuration.")));
}

PG_FUNCTION_INFO_V1(anomstream_check_partition_counts);

/*
 * anomstream.check_partition_counts(topic1, count1, topic2, count2)
 */
Datum
anomstream_check_partition_counts(PG_FUNCTION_ARGS)
{
	ops_check_partition_counts(text_to_cstring(PG_GETARG_TEXT_PP(0)), PG_GETARG_INT32(1),
							   text_to_cstring(PG_GETARG_TEXT_PP(2)), PG_GETARG_INT32(3));
	PG_RETURN_VOID();
}
