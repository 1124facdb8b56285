/*-------------------------------------------------------------------------
 *
 * positions.c
 *	  Reading and writing the worker's positions (DESIGN.md §7); all through SPI, a few rows
 *	  per micro-batch, never per input row.
 *
 * Tables: anomstream.positions (logged: durable_offset, staging_low),
 * anomstream.staged_positions (UNLOGGED: staged_offset), anomstream.staging_marker
 * (UNLOGGED: present while staging is intact), anomstream.batch_ranges (logged: offsets each
 * batch staged, for retention and staging_low).
 *
 * Invariants:
 *	- staged_offset moves in the transaction that inserts the staging rows below it.
 *	- durable_offset moves in the transaction in which every durable consumer (dead letters
 *	  now; operator state, results and sinks as they join) has taken over the rows below it,
 *	  and it never moves backwards.
 *	- After a crash (marker gone), staging is refilled from staging_low; rows below
 *	  durable_offset then feed staging only, so no durable consumer sees them twice.
 *	- Every function here runs inside a transaction with SPI connected.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "guc.h"
#include "ingest/positions.h"
#include "parquet/sink.h"
#include "util/stmt_cache.h"

/*
 * Run a statement with arguments, failing loudly on anything but the expected result.
 */
static void
run(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int expect)
{
	(void) stmt_exec(sql, nargs, types, values, nulls, expect);
}

/*
 * Find the part for (topic, partition).
 */
static PartState *
find_part(PartState *parts, int nparts, const char *topic, int32 partition)
{
	for (int i = 0; i < nparts; i++)
		if (parts[i].partition == partition && strcmp(parts[i].topic, topic) == 0)
			return &parts[i];
	return NULL;
}

/*
 * Decide where each partition starts. parts[] lists the assigned partitions with topic and
 * partition set; this fills next_offset, refill_until, durable_offset and known. Returns
 * true if staging had been emptied by a crash (or this is the first start), in which case
 * staging was reset and the marker re-inserted.
 */
bool
positions_prepare_start(PartState *parts, int nparts)
{
	bool		marker;
	uint64		n;

	run("SELECT 1 FROM anomstream.staging_marker", 0, NULL, NULL, NULL, SPI_OK_SELECT);
	marker = SPI_processed > 0;

	if (!marker)
	{
		/* Staging is gone (or never was): start it anew and refill from staging_low. */
		run("TRUNCATE anomstream.process_events, anomstream.memory_events, anomstream.staged_positions",
			0, NULL, NULL, NULL, SPI_OK_UTILITY);
		run("DELETE FROM anomstream.batch_ranges", 0, NULL, NULL, NULL, SPI_OK_DELETE);
		run("INSERT INTO anomstream.staging_marker DEFAULT VALUES", 0, NULL, NULL, NULL,
			SPI_OK_INSERT);
	}

	for (int i = 0; i < nparts; i++)
	{
		parts[i].next_offset = -1;
		parts[i].refill_until = 0;
		parts[i].durable_offset = -1;
		parts[i].known = false;
	}

	run("SELECT p.topic, p.kafka_partition, p.durable_offset, p.staging_low, s.staged_offset "
		"FROM anomstream.positions p LEFT JOIN anomstream.staged_positions s "
		"USING (topic, kafka_partition)", 0, NULL, NULL, NULL, SPI_OK_SELECT);
	n = SPI_processed;
	for (uint64 r = 0; r < n; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *topic = SPI_getvalue(tup, desc, 1);
		int32		partition = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		int64		durable = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		int64		low = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
		Datum		staged = SPI_getbinval(tup, desc, 5, &isnull);
		PartState  *p = find_part(parts, nparts, topic, partition);

		if (p == NULL)
			continue;			/* not assigned to this server (any more) */
		p->known = true;
		p->durable_offset = durable;
		p->refill_until = durable;
		p->next_offset = (marker && !isnull) ? DatumGetInt64(staged) : Min(low, durable);
	}
	return !marker;
}

/*
 * Record the micro-batch's progress: staged and durable positions, and batch ranges, for
 * every partition the batch read, in one statement (arrays, not one statement per partition:
 * a batch may touch hundreds of partitions).
 */
void
positions_record_batch(PartState *parts, int nparts, int64 batch_id)
{
	Oid			types[6] = {TEXTARRAYOID, INT4ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8OID};
	Datum		values[6];
	Datum	   *topics = palloc(sizeof(Datum) * Max(nparts, 1));
	Datum	   *partitions = palloc(sizeof(Datum) * Max(nparts, 1));
	Datum	   *firsts = palloc(sizeof(Datum) * Max(nparts, 1));
	Datum	   *lasts = palloc(sizeof(Datum) * Max(nparts, 1));
	Datum	   *nexts = palloc(sizeof(Datum) * Max(nparts, 1));
	int			n = 0;

	for (int i = 0; i < nparts; i++)
	{
		PartState  *p = &parts[i];

		if (!p->in_batch)
			continue;
		topics[n] = CStringGetTextDatum(p->topic);
		partitions[n] = Int32GetDatum(p->partition);
		firsts[n] = Int64GetDatum(p->batch_first);
		lasts[n] = Int64GetDatum(p->batch_last);
		nexts[n] = Int64GetDatum(p->batch_last + 1);
		n++;
	}
	if (n == 0)
		return;
	values[0] = PointerGetDatum(construct_array(topics, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(partitions, n, INT4OID, 4, true, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(firsts, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[3] = PointerGetDatum(construct_array(lasts, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[4] = PointerGetDatum(construct_array(nexts, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[5] = Int64GetDatum(batch_id);

	/* committed_at: as late as possible, so latency figures include the batch's work */
	run("WITH b AS (SELECT * FROM unnest($1, $2, $3, $4, $5) "
		"             AS b(topic, kafka_partition, first_offset, last_offset, next_offset)), "
		"s AS (INSERT INTO anomstream.staged_positions AS s (topic, kafka_partition, staged_offset) "
		"      SELECT topic, kafka_partition, next_offset FROM b "
		"      ON CONFLICT (topic, kafka_partition) DO UPDATE SET staged_offset = excluded.staged_offset), "
		"p AS (INSERT INTO anomstream.positions AS p (topic, kafka_partition, durable_offset, staging_low) "
		"      SELECT topic, kafka_partition, next_offset, first_offset FROM b "
		"      ON CONFLICT (topic, kafka_partition) DO UPDATE "
		"      SET durable_offset = GREATEST(p.durable_offset, excluded.durable_offset), "
		"          updated_at = pg_catalog.now()) "
		"INSERT INTO anomstream.batch_ranges (batch_id, topic, kafka_partition, first_offset, last_offset, committed_at) "
		"SELECT $6, topic, kafka_partition, first_offset, last_offset, pg_catalog.clock_timestamp() FROM b",
		6, types, values, NULL, SPI_OK_INSERT);
}

/*
 * Insert the batch's dead letters.
 */
void
positions_insert_dead_letters(const DeadLetter *dl, int n)
{
	Oid			types[7] = {TEXTOID, INT4OID, INT8OID, INT4OID, BYTEAOID, BYTEAOID, TEXTOID};
	Datum		values[7];
	char		nulls[7];

	for (int i = 0; i < n; i++)
	{
		bytea	   *value = palloc(VARHDRSZ + dl[i].value_len);

		SET_VARSIZE(value, VARHDRSZ + dl[i].value_len);
		memcpy(VARDATA(value), dl[i].value, dl[i].value_len);
		memset(nulls, ' ', sizeof(nulls));
		values[0] = CStringGetTextDatum(dl[i].topic);
		values[1] = Int32GetDatum(dl[i].partition);
		values[2] = Int64GetDatum(dl[i].offset);
		values[3] = Int32GetDatum(dl[i].row_index);
		if (dl[i].row_index < 0)
			nulls[3] = 'n';
		if (dl[i].key)
		{
			bytea	   *key = palloc(VARHDRSZ + dl[i].key_len);

			SET_VARSIZE(key, VARHDRSZ + dl[i].key_len);
			memcpy(VARDATA(key), dl[i].key, dl[i].key_len);
			values[4] = PointerGetDatum(key);
		}
		else
			nulls[4] = 'n';
		values[5] = PointerGetDatum(value);
		values[6] = CStringGetTextDatum(dl[i].error);
		run("INSERT INTO anomstream.dead_letters (topic, kafka_partition, kafka_offset, row_index, key, value, error) "
			"VALUES ($1, $2, $3, $4, $5, $6, $7)", 7, types, values, nulls, SPI_OK_INSERT);
	}
}

/*
 * A new micro-batch id.
 */
int64
positions_next_batch_id(void)
{
	bool		isnull;

	run("SELECT pg_catalog.nextval('anomstream.batch_id_seq')", 0, NULL, NULL, NULL,
		SPI_OK_SELECT);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
									   &isnull));
}

/*
 * Drop staging rows of batches older than anomstream.staging_retention and move
 * staging_low up to the oldest offset still staged.
 */
void
positions_apply_retention(void)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(anomstream_staging_retention)};
	bool		isnull;
	Datum		cut;

	run("SELECT max(batch_id) FROM anomstream.batch_ranges "
		"WHERE committed_at < pg_catalog.now() - pg_catalog.make_interval(secs => $1)",
		1, types, values, NULL, SPI_OK_SELECT);
	cut = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return;
	cut = Int64GetDatum(sinks_retention_cut(DatumGetInt64(cut)));	/* open sink parts stay */
	{
		Oid			ctypes[1] = {INT8OID};
		Datum		cvalues[1] = {cut};

		run("DELETE FROM anomstream.process_events WHERE batch_id <= $1", 1, ctypes, cvalues,
			NULL, SPI_OK_DELETE);
		run("DELETE FROM anomstream.memory_events WHERE batch_id <= $1", 1, ctypes, cvalues,
			NULL, SPI_OK_DELETE);
		run("DELETE FROM anomstream.batch_ranges WHERE batch_id <= $1", 1, ctypes, cvalues,
			NULL, SPI_OK_DELETE);
	}
	run("UPDATE anomstream.positions p SET staging_low = COALESCE("
		"(SELECT min(r.first_offset) FROM anomstream.batch_ranges r "
		" WHERE r.topic = p.topic AND r.kafka_partition = p.kafka_partition), p.durable_offset) "
		"WHERE staging_low IS DISTINCT FROM COALESCE("
		"(SELECT min(r.first_offset) FROM anomstream.batch_ranges r "
		" WHERE r.topic = p.topic AND r.kafka_partition = p.kafka_partition), p.durable_offset)",
		0, NULL, NULL, NULL, SPI_OK_UPDATE);
	sinks_hold_staging_low();
}
