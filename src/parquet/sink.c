/*-------------------------------------------------------------------------
 *
 * sink.c
 *	  Continuous Parquet sinks as durable consumers (DESIGN.md §7, §8): which rows each sink
 *	  has taken over, when a part is due, and what staging must keep for it.
 *
 * Sinks: "process" and "memory" (staging rows, one part per Kafka partition and offset
 * range) and "detected" (detected_attacks, one part per batch-id range). A sink is on while
 * anomstream.sinks has its row. anomstream.sink_positions holds, per sink and partition, the
 * committed boundary next_position and the open part [next_position, end_position) with its
 * row count; it moves only in the micro-batch transaction, together with the durable position.
 *
 * Invariants:
 *	- Each micro-batch adds to the open part exactly its rows at or after both the durable
 *	  position before the batch and the open part's end: refill rows (staging refilled after
 *	  a crash) were taken over already, so nothing is exported twice.
 *	- The rows of an open part are not kept in memory: they are in staging, and staging keeps
 *	  them (retention stops at the oldest batch holding a row at or after next_position, and
 *	  staging_low is held at next_position), so after a crash the worker's refill from
 *	  staging_low brings them back from Kafka.
 *	- A part is written only when staging holds its whole range again (staged position at or
 *	  past its end), and the rows written must equal open_rows, or the transaction fails.
 *	- A part rolls when open_rows reaches anomstream.sink_roll_rows or its first row is
 *	  anomstream.sink_roll_interval old; never per micro-batch. A part without rows is never
 *	  written. The detected sink's parts tile the batch ids; a process or memory sink's open
 *	  part without rows moves its start along (so it holds no staging), so its parts tile the
 *	  offsets except ranges that hold no row (messages that were all dead letters).
 *	- Every function runs inside the worker's transaction with SPI connected.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "guc.h"
#include "ingest/staging.h"
#include "parquet/sink.h"
#include "pipeline/pipeline_int.h"	/* pl_exec, pl_array */
#include "util/plan_settings.h"

static const char *const stream_sinks[DECODE_NSTREAMS] = {"process", "memory"};

/*
 * Which sinks are on: on[0..2] for process, memory, detected.
 */
static bool
sinks_enabled(bool *on)
{
	bool		any = false;

	on[0] = on[1] = on[2] = false;
	pl_exec("SELECT name FROM anomstream.sinks", 0, NULL, NULL, NULL, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		for (int s = 0; s < 3; s++)
			if (strcmp(name, s < DECODE_NSTREAMS ? stream_sinks[s] : "detected") == 0)
				on[s] = any = true;
	}
	return any;
}

/*
 * A process or memory sink takes over the batch's rows of its stream, per partition.
 */
static void
take_over_stream(DecodeStream stream, int64 batch_id, PartState *parts, int nparts)
{
	Oid			types[7] = {TEXTARRAYOID, INT4ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
	INT8OID, TEXTOID};
	Datum		values[7];
	Datum	   *topics = palloc(sizeof(Datum) * Max(nparts, 1));
	Datum	   *partitions = palloc(sizeof(Datum) * Max(nparts, 1));
	Datum	   *firsts = palloc(sizeof(Datum) * Max(nparts, 1));
	Datum	   *lasts = palloc(sizeof(Datum) * Max(nparts, 1));
	Datum	   *durables = palloc(sizeof(Datum) * Max(nparts, 1));
	int			n = 0;
	int			nestlevel;
	char	   *sql;

	for (int i = 0; i < nparts; i++)
	{
		PartState  *p = &parts[i];

		if (!p->in_batch || p->stream != stream)
			continue;
		topics[n] = CStringGetTextDatum(p->topic);
		partitions[n] = Int32GetDatum(p->partition);
		firsts[n] = Int64GetDatum(p->batch_first);
		lasts[n] = Int64GetDatum(p->batch_last);
		durables[n] = Int64GetDatum(p->durable_offset);	/* before this batch */
		n++;
	}
	if (n == 0)
		return;
	values[0] = pl_array(topics, NULL, n, TEXTOID);
	values[1] = pl_array(partitions, NULL, n, INT4OID);
	values[2] = pl_array(firsts, NULL, n, INT8OID);
	values[3] = pl_array(lasts, NULL, n, INT8OID);
	values[4] = pl_array(durables, NULL, n, INT8OID);
	values[5] = Int64GetDatum(batch_id);
	values[6] = CStringGetTextDatum(stream_sinks[stream]);

	/*
	 * from_offset: the first offset this sink has not taken over yet. Rows of the batch at or
	 * after it join the open part; an open part without rows moves its start along. The
	 * batch's rows are counted on their own first (e: the BRIN index on batch_id), so the
	 * join never tempts the planner into scanning all of staging.
	 */
	sql = psprintf("WITH b AS (SELECT * FROM unnest($1, $2, $3, $4, $5) "
				   "             AS b(topic, kafka_partition, first_offset, last_offset, durable_offset)), "
				   "c AS (SELECT b.topic, b.kafka_partition, b.last_offset, "
				   "             GREATEST(b.durable_offset, b.first_offset, sp.end_position) AS from_offset "
				   "      FROM b LEFT JOIN anomstream.sink_positions sp "
				   "        ON sp.sink = $7 AND sp.topic = b.topic AND sp.kafka_partition = b.kafka_partition), "
				   "e AS MATERIALIZED (SELECT kafka_partition, kafka_offset, count(*) AS rows "
				   "      FROM anomstream.%s WHERE batch_id = $6 GROUP BY 1, 2), "
				   "n AS (SELECT e.kafka_partition, sum(e.rows) AS rows FROM e "
				   "      JOIN c ON c.kafka_partition = e.kafka_partition "
				   "      WHERE e.kafka_offset >= c.from_offset GROUP BY e.kafka_partition) "
				   "INSERT INTO anomstream.sink_positions AS sp "
				   "  (sink, topic, kafka_partition, next_position, end_position, open_rows, open_since) "
				   "SELECT $7, c.topic, c.kafka_partition, "
				   "       CASE WHEN COALESCE(n.rows, 0) = 0 THEN c.last_offset + 1 ELSE c.from_offset END, "
				   "       c.last_offset + 1, COALESCE(n.rows, 0), "
				   "       CASE WHEN n.rows > 0 THEN pg_catalog.now() END "
				   "FROM c LEFT JOIN n ON n.kafka_partition = c.kafka_partition "
				   "WHERE c.last_offset + 1 > c.from_offset "
				   "ON CONFLICT (sink, topic, kafka_partition) DO UPDATE SET "
				   "  end_position = excluded.end_position, "
				   "  open_rows = sp.open_rows + excluded.open_rows, "
				   "  next_position = CASE WHEN sp.open_rows + excluded.open_rows = 0 "
				   "                  THEN excluded.end_position ELSE sp.next_position END, "
				   "  open_since = CASE WHEN sp.open_rows + excluded.open_rows = 0 THEN NULL "
				   "                ELSE COALESCE(sp.open_since, excluded.open_since) END",
				   staging_table_name(stream));
	nestlevel = plan_settings_index_scans_begin();	/* see sink_write_part */
	pl_exec(sql, 7, types, values, NULL, SPI_OK_INSERT);
	AtEOXact_GUC(true, nestlevel);
	pfree(sql);
}

/*
 * The detected sink takes over the batch's pairs. Its parts tile the batch ids: a batch
 * without pairs still joins the open part (detected_attacks is logged, so holding the range
 * costs nothing).
 */
static void
take_over_detected(int64 batch_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(batch_id)};

	pl_exec("WITH c AS (SELECT pg_catalog.count(*) AS rows FROM anomstream.detected_attacks "
		"           WHERE batch_id = $1) "
		"INSERT INTO anomstream.sink_positions AS sp "
		"  (sink, topic, kafka_partition, next_position, end_position, open_rows, open_since) "
		"SELECT 'detected', '', -1, $1, $1 + 1, c.rows, "
		"       CASE WHEN c.rows > 0 THEN pg_catalog.now() END "
		"FROM c "
		"ON CONFLICT (sink, topic, kafka_partition) DO UPDATE SET "
		"  end_position = GREATEST(sp.end_position, excluded.end_position), "
		"  open_rows = sp.open_rows + excluded.open_rows, "
		"  open_since = COALESCE(sp.open_since, excluded.open_since)",
		1, types, values, NULL, SPI_OK_INSERT);
}

/*
 * The columns a process or memory part carries: every staging column but batch_id (which
 * differs between the first staging of a row and its refill after a crash).
 */
static char *
stream_columns(DecodeStream stream)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	Datum		d;

	values[0] = CStringGetTextDatum(psprintf("anomstream.%s", staging_table_name(stream)));
	pl_exec("SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum) "
		"FROM pg_catalog.pg_attribute a "
		"WHERE a.attrelid = $1::pg_catalog.regclass AND a.attnum > 0 AND NOT a.attisdropped "
		"  AND a.attname <> 'batch_id'", 1, types, values, NULL, SPI_OK_SELECT);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		elog(ERROR, "anomstream: staging table %s has no columns", staging_table_name(stream));
	return TextDatumGetCString(d);
}

/*
 * Write one due part of a process or memory sink from staging.
 */
static void
roll_stream_part(DecodeStream stream, SinkPart *part, int64 end)
{
	Oid			rtypes[4] = {TEXTOID, INT4OID, INT8OID, INT8OID};
	Datum		rvalues[4];
	Oid			qtypes[5] = {INT8OID, INT8OID, INT4OID, INT8OID, INT8OID};
	Datum		qvalues[5];
	bool		isnull1,
				isnull2;
	char	   *query;

	/* the batches that staged the range (batch_ranges is small; staging has a BRIN on batch_id) */
	staging_summarize(0);
	rvalues[0] = CStringGetTextDatum(part->topic);
	rvalues[1] = Int32GetDatum(part->partition);
	rvalues[2] = Int64GetDatum(part->first);
	rvalues[3] = Int64GetDatum(end);
	pl_exec("SELECT min(batch_id), max(batch_id) FROM anomstream.batch_ranges "
		"WHERE topic = $1 AND kafka_partition = $2 AND last_offset >= $3 AND first_offset < $4",
		4, rtypes, rvalues, NULL, SPI_OK_SELECT);
	qvalues[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull1);
	qvalues[1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull2);
	if (isnull1 || isnull2)
		qvalues[0] = qvalues[1] = Int64GetDatum(-1);	/* nothing staged: the row check fails */
	qvalues[2] = Int32GetDatum(part->partition);
	qvalues[3] = Int64GetDatum(part->first);
	qvalues[4] = Int64GetDatum(end);
	query = psprintf("SELECT %s FROM anomstream.%s "
					 "WHERE batch_id BETWEEN $1 AND $2 AND kafka_partition = $3 "
					 "  AND kafka_offset >= $4 AND kafka_offset < $5 "
					 "ORDER BY kafka_offset, row_index",
					 stream_columns(stream), staging_table_name(stream));
	sink_write_part(part, query, 5, qtypes, qvalues);
}

/*
 * Write one due part of the detected sink from detected_attacks.
 */
static void
roll_detected_part(SinkPart *part, int64 end)
{
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(part->first), Int64GetDatum(end)};

	part->expected_rows = -1;	/* result retention may have expired pairs meanwhile */
	sink_write_part(part,
					"SELECT * FROM anomstream.detected_attacks "
					"WHERE batch_id >= $1 AND batch_id < $2 "
					"ORDER BY batch_id, p_kafka_partition, p_kafka_offset, p_row_index, "
					"         m_kafka_partition, m_kafka_offset, m_row_index",
					2, types, values);
}

/*
 * Write every part that is due (rows or age) and whose rows staging holds; each one moves
 * its sink's committed boundary to the end of the part.
 */
static void
roll(void)
{
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2] = {Int64GetDatum(anomstream_sink_roll_rows),
	Int32GetDatum(anomstream_sink_roll_interval)};
	SPITupleTable *due;
	uint64		ndue;

	pl_exec("SELECT sp.sink, s.directory, sp.topic, sp.kafka_partition, sp.next_position, "
		"       sp.end_position, sp.open_rows "
		"FROM anomstream.sink_positions sp JOIN anomstream.sinks s ON s.name = sp.sink "
		"LEFT JOIN anomstream.staged_positions st "
		"  ON st.topic = sp.topic AND st.kafka_partition = sp.kafka_partition "
		"WHERE sp.open_rows > 0 "
		"  AND (sp.open_rows >= $1 "
		"       OR sp.open_since <= pg_catalog.now() - pg_catalog.make_interval(secs => $2)) "
		"  AND (sp.kafka_partition < 0 OR st.staged_offset >= sp.end_position) "
		"ORDER BY sp.sink, sp.kafka_partition",
		2, types, values, NULL, SPI_OK_SELECT);
	due = SPI_tuptable;
	ndue = SPI_processed;
	for (uint64 i = 0; i < ndue; i++)
	{
		HeapTuple	tup = due->vals[i];
		TupleDesc	desc = due->tupdesc;
		bool		isnull;
		SinkPart	part;
		char	   *topic;
		int64		end;
		Oid			utypes[3] = {TEXTOID, TEXTOID, INT4OID};
		Datum		uvalues[3];

		part.sink = SPI_getvalue(tup, desc, 1);
		part.directory = SPI_getvalue(tup, desc, 2);
		topic = SPI_getvalue(tup, desc, 3); /* "" for detected */
		part.topic = topic;
		part.partition = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		part.first = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
		end = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));
		part.last = end - 1;
		part.expected_rows = DatumGetInt64(SPI_getbinval(tup, desc, 7, &isnull));

		if (strcmp(part.sink, "detected") == 0)
		{
			part.topic = NULL;
			roll_detected_part(&part, end);
		}
		else
			roll_stream_part(strcmp(part.sink, "process") == 0 ? STREAM_PROCESS : STREAM_MEMORY,
							 &part, end);

		uvalues[0] = CStringGetTextDatum(part.sink);
		uvalues[1] = CStringGetTextDatum(topic);
		uvalues[2] = Int32GetDatum(part.partition);
		pl_exec("UPDATE anomstream.sink_positions "
			"SET next_position = end_position, open_rows = 0, open_since = NULL "
			"WHERE sink = $1 AND topic = $2 AND kafka_partition = $3",
			3, utypes, uvalues, NULL, SPI_OK_UPDATE);
	}
	SPI_freetuptable(due);
}

/*
 * In the micro-batch transaction, after positions_record_batch(): each sink that is on takes
 * over the batch's rows, then the parts that are due are written.
 */
void
sinks_process_batch(int64 batch_id, PartState *parts, int nparts)
{
	bool		on[3];

	if (!sinks_enabled(on))
		return;
	staging_summarize(batch_id);	/* the sinks read the batch by batch_id */
	for (int s = 0; s < DECODE_NSTREAMS; s++)
		if (on[s])
			take_over_stream((DecodeStream) s, batch_id, parts, nparts);
	if (on[2])
		take_over_detected(batch_id);
	roll();
}

/*
 * Parts due by age while no data arrives (the worker's retention transaction).
 */
void
sinks_roll_due(void)
{
	bool		on[3];

	if (sinks_enabled(on))
		roll();
}

/*
 * Staging retention may delete batches up to cut; return the largest cut that keeps every
 * batch holding a row of an open part (at or after its sink's next_position).
 */
int64
sinks_retention_cut(int64 cut)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(cut)};
	bool		isnull;
	Datum		d;

	pl_exec("SELECT min(r.batch_id) FROM anomstream.batch_ranges r "
		"JOIN anomstream.sink_positions sp "
		"  ON sp.topic = r.topic AND sp.kafka_partition = r.kafka_partition "
		"JOIN anomstream.sinks s ON s.name = sp.sink "
		"WHERE r.batch_id <= $1 AND r.last_offset >= sp.next_position",
		1, types, values, NULL, SPI_OK_SELECT);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull && DatumGetInt64(d) - 1 < cut)
		return DatumGetInt64(d) - 1;
	return cut;
}

/*
 * Keep staging_low at or before every open part's first offset, so a refill after a crash
 * brings the open parts' rows back.
 */
void
sinks_hold_staging_low(void)
{
	pl_exec("UPDATE anomstream.positions p SET staging_low = sp.next_position "
		"FROM anomstream.sink_positions sp JOIN anomstream.sinks s ON s.name = sp.sink "
		"WHERE sp.topic = p.topic AND sp.kafka_partition = p.kafka_partition "
		"  AND sp.next_position < p.staging_low",
		0, NULL, NULL, NULL, SPI_OK_UPDATE);
}
