/*-------------------------------------------------------------------------
 *
 * sink_part.c
 *	  One part file of a continuous Parquet sink, committed in two phases (DESIGN.md §8).
 *
 * Phase one, inside the worker's transaction: the part's rows are read with a query (staging
 * by offset range, or detected_attacks by batch range) and written to
 * "<directory>/.<name>.inprogress", which is fsynced; then its manifest row is inserted.
 * Phase two, after the transaction committed (transaction callback): the file is renamed to
 * "<name>.parquet" and the directory fsynced. An aborted transaction deletes its in-progress
 * files. After a crash, sinks_recover_at_start() finishes both cases from the directory and
 * the manifest: an in-progress file with a manifest row is renamed, one without is deleted.
 *
 * Invariants:
 *	- A manifest row exists iff its file is complete and fsynced (in-progress or final name).
 *	- A file under its final name always has a committed manifest row.
 *	- Each part's memory (writer, row buffers) lives in a context deleted when the part is
 *	  done; only the list of pending renames lives in TopMemoryContext, emptied at the end of
 *	  every transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/portal.h"

#include "parquet/copy.h"
#include "parquet/format.h"
#include "parquet/sink.h"
#include "parquet/writer.h"
#include "util/plan_settings.h"

#define SINK_FETCH_ROWS 10000
#define INPROGRESS_SUFFIX ".inprogress"

/* A part written in the current transaction: renamed at commit, deleted at abort. */
typedef struct PendingPart
{
	char	   *tmp_path;
	char	   *final_path;
	struct PendingPart *next;
} PendingPart;

static PendingPart *pending = NULL;
static bool callback_registered = false;

/* Output of one part: the file and the running checksum. */
typedef struct PartOutput
{
	int			fd;
	const char *path;
	pg_cryptohash_ctx *hash;
	uint64		bytes;
} PartOutput;

/*
 * After commit: give each part its final name (durable_rename fsyncs the directory). A
 * failure is logged, not raised (the transaction is committed): the next start of the worker
 * completes the rename from the manifest. After abort: delete the in-progress files.
 */
static void
sink_xact_callback(XactEvent event, void *arg)
{
	if (pending == NULL)
		return;
	if (event == XACT_EVENT_COMMIT)
	{
		for (PendingPart *p = pending; p; p = p->next)
			(void) durable_rename(p->tmp_path, p->final_path, LOG);
	}
	else if (event == XACT_EVENT_ABORT)
	{
		for (PendingPart *p = pending; p; p = p->next)
			if (unlink(p->tmp_path) != 0 && errno != ENOENT)
				ereport(LOG,
						(errcode_for_file_access(),
						 errmsg("anomstream: could not remove file \"%s\": %m", p->tmp_path)));
	}
	else
		return;
	while (pending)
	{
		PendingPart *next = pending->next;

		pfree(pending->tmp_path);
		pfree(pending->final_path);
		pfree(pending);
		pending = next;
	}
}

/*
 * Remember a part of this transaction (before its file is created, so an error while
 * writing it still deletes the file).
 */
static void
add_pending(const char *tmp_path, const char *final_path)
{
	PendingPart *p = MemoryContextAlloc(TopMemoryContext, sizeof(PendingPart));

	if (!callback_registered)
	{
		RegisterXactCallback(sink_xact_callback, NULL);
		callback_registered = true;
	}
	p->tmp_path = MemoryContextStrdup(TopMemoryContext, tmp_path);
	p->final_path = MemoryContextStrdup(TopMemoryContext, final_path);
	p->next = pending;
	pending = p;
}

/*
 * The writer's output: append to the file and to the checksum.
 */
static void
part_write(void *arg, const void *data, size_t len)
{
	PartOutput *out = (PartOutput *) arg;

	if (pg_cryptohash_update(out->hash, (const uint8 *) data, len) < 0)
		elog(ERROR, "anomstream: could not update the checksum of \"%s\"", out->path);
	out->bytes += len;
	pq_write_fd(out->fd, out->path, data, len);
}

/*
 * Base name of a part: "process-p3-<first:020>-<last:020>", "detected-b<first>-<last>".
 */
static char *
part_base_name(const SinkPart *part)
{
	if (part->partition < 0)
		return psprintf("%s-b%020lld-%020lld", part->sink, (long long) part->first,
						(long long) part->last);
	return psprintf("%s-p%d-%020lld-%020lld", part->sink, part->partition,
					(long long) part->first, (long long) part->last);
}

/*
 * Write one part: run query (a cursor, SINK_FETCH_ROWS rows at a time) into the in-progress
 * file, fsync it and insert the manifest row. Runs inside the worker's transaction with SPI
 * connected; the rename happens after the commit.
 */
void
sink_write_part(const SinkPart *part, const char *query, int nargs, Oid *types, Datum *values)
{
	MemoryContext cxt = AllocSetContextCreate(TopTransactionContext, "anomstream sink part",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	char	   *base = part_base_name(part);
	char	   *file = psprintf("%s.parquet", base);
	char	   *tmp_path = psprintf("%s/.%s%s", part->directory, base, INPROGRESS_SUFFIX);
	char	   *final_path = psprintf("%s/%s", part->directory, file);
	PartOutput	out = {0};
	PqWriterOptions wo = {PQ_CODEC_SNAPPY, 0, PQ_DEFAULT_ROW_GROUP_SIZE};
	PqWriter   *writer;
	Portal		portal;
	int			nestlevel;
	uint64		rows;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char		hex[PG_SHA256_DIGEST_LENGTH * 2 + 1];

	add_pending(tmp_path, final_path);
	out.path = tmp_path;
	out.hash = pg_cryptohash_create(PG_SHA256);
	if (out.hash == NULL || pg_cryptohash_init(out.hash) < 0)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	out.fd = OpenTransientFilePerm(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY,
								   S_IRUSR | S_IWUSR | S_IRGRP | S_IROTH);
	if (out.fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\" for writing: %m", tmp_path),
				 errhint("Check the directory of Parquet sink \"%s\" (anomstream.set_sink).",
						 part->sink)));

	/*
	 * Not read-only: the cursor must see this transaction's staging rows. Planned without
	 * sequential scans: staging has no statistics worth the name and only a BRIN index on
	 * batch_id, and a part must cost what its rows cost, not what staging holds.
	 */
	nestlevel = plan_settings_index_scans_begin();
	portal = SPI_cursor_open_with_args(NULL, query, nargs, types, values, NULL, false, 0);
	AtEOXact_GUC(true, nestlevel);
	writer = pq_writer_create(cxt, portal->tupDesc, &wo, part_write, &out);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, SINK_FETCH_ROWS);
		if (SPI_processed == 0)
			break;
		{
			TupleDesc	desc = SPI_tuptable->tupdesc;
			Datum	   *vals = palloc(sizeof(Datum) * desc->natts);
			bool	   *nulls = palloc(sizeof(bool) * desc->natts);

			for (uint64 i = 0; i < SPI_processed; i++)
			{
				heap_deform_tuple(SPI_tuptable->vals[i], desc, vals, nulls);
				pq_writer_append(writer, vals, nulls);
			}
			pfree(vals);
			pfree(nulls);
		}
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	pq_writer_finish(writer);
	rows = pq_writer_rows(writer);
	pq_writer_destroy(writer);

	if (part->expected_rows >= 0 && rows != (uint64) part->expected_rows)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("anomstream: Parquet sink \"%s\" found %llu rows for part \"%s\", expected %lld",
						part->sink, (unsigned long long) rows, file,
						(long long) part->expected_rows),
				 errdetail("Staging no longer holds every row of the open part.")));
	if (pg_fsync(out.fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fsync file \"%s\": %m", tmp_path)));
	if (CloseTransientFile(out.fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", tmp_path)));
	if (pg_cryptohash_final(out.hash, digest, sizeof(digest)) < 0)
		elog(ERROR, "anomstream: could not finish the checksum of \"%s\"", tmp_path);
	pg_cryptohash_free(out.hash);
	hex_encode((const char *) digest, sizeof(digest), hex);
	hex[sizeof(hex) - 1] = '\0';

	{
		Oid			mtypes[11] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, INT8OID, INT8OID,
		INT8OID, INT8OID, TEXTOID, BOOLOID};
		Datum		mvalues[11];
		char		mnulls[11];

		memset(mnulls, ' ', sizeof(mnulls));
		mvalues[0] = CStringGetTextDatum(part->sink);
		mvalues[1] = CStringGetTextDatum(part->directory);
		mvalues[2] = CStringGetTextDatum(file);
		if (part->topic)
			mvalues[3] = CStringGetTextDatum(part->topic);
		else
			mnulls[3] = 'n';
		mvalues[4] = Int32GetDatum(part->partition);
		if (part->partition < 0)
			mnulls[4] = 'n';
		mvalues[5] = Int64GetDatum(part->first);
		mvalues[6] = Int64GetDatum(part->last);
		mvalues[7] = Int64GetDatum((int64) rows);
		mvalues[8] = Int64GetDatum((int64) out.bytes);
		mvalues[9] = CStringGetTextDatum(hex);
		mvalues[10] = BoolGetDatum(part->partition < 0);
		if (SPI_execute_with_args("INSERT INTO anomstream.sink_manifest (sink, directory, file, topic, "
								  "kafka_partition, first_offset, last_offset, first_batch, last_batch, "
								  "rows, bytes, checksum) "
								  "VALUES ($1, $2, $3, $4, $5, "
								  "CASE WHEN NOT $11 THEN $6 END, CASE WHEN NOT $11 THEN $7 END, "
								  "CASE WHEN $11 THEN $6 END, CASE WHEN $11 THEN $7 END, $8, $9, $10)",
								  11, mtypes, mvalues, mnulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "anomstream: cannot insert the manifest row of \"%s\"", file);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

/*
 * Finish what a crash interrupted, in every directory a sink uses or used: an in-progress
 * file whose manifest row committed is renamed to its final name; one without a manifest row
 * is deleted (its transaction never committed). Inside setup()'s transaction, SPI connected.
 */
void
sinks_recover_at_start(void)
{
	uint64		ndirs;
	char	  **dirs;

	if (SPI_execute("SELECT directory FROM anomstream.sinks UNION "
					"SELECT DISTINCT directory FROM anomstream.sink_manifest", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "anomstream: cannot read the sink directories");
	ndirs = SPI_processed;
	dirs = palloc(sizeof(char *) * Max(ndirs, 1));
	for (uint64 i = 0; i < ndirs; i++)
		dirs[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

	for (uint64 d = 0; d < ndirs; d++)
	{
		DIR		   *dir = AllocateDir(dirs[d]);
		struct dirent *de;
		List	   *names = NIL;
		ListCell   *lc;
		size_t		slen = strlen(INPROGRESS_SUFFIX);

		if (dir == NULL)
		{
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("anomstream: cannot open Parquet sink directory \"%s\": %m", dirs[d])));
			continue;
		}
		while ((de = ReadDirExtended(dir, dirs[d], LOG)) != NULL)
		{
			size_t		len = strlen(de->d_name);

			if (de->d_name[0] == '.' && len > slen + 1 &&
				strcmp(de->d_name + len - slen, INPROGRESS_SUFFIX) == 0)
				names = lappend(names, pstrdup(de->d_name));
		}
		FreeDir(dir);

		foreach(lc, names)
		{
			char	   *name = lfirst(lc);
			char	   *base = pnstrdup(name + 1, strlen(name) - 1 - slen);
			char	   *file = psprintf("%s.parquet", base);
			char	   *tmp_path = psprintf("%s/%s", dirs[d], name);
			char	   *final_path = psprintf("%s/%s", dirs[d], file);
			Oid			types[2] = {TEXTOID, TEXTOID};
			Datum		values[2] = {CStringGetTextDatum(dirs[d]), CStringGetTextDatum(file)};

			if (SPI_execute_with_args("SELECT 1 FROM anomstream.sink_manifest "
									  "WHERE directory = $1 AND file = $2",
									  2, types, values, NULL, true, 0) != SPI_OK_SELECT)
				elog(ERROR, "anomstream: cannot read the sink manifest");
			if (SPI_processed > 0)
			{
				if (durable_rename(tmp_path, final_path, LOG) == 0)
					ereport(LOG,
							(errmsg("anomstream: completed Parquet part \"%s\" after a crash",
									final_path)));
			}
			else if (unlink(tmp_path) == 0)
				ereport(LOG,
						(errmsg("anomstream: removed uncommitted Parquet part \"%s\"", tmp_path)));
			else
				ereport(LOG,
						(errcode_for_file_access(),
						 errmsg("anomstream: could not remove file \"%s\": %m", tmp_path)));
		}
		if (names != NIL)
			fsync_fname_ext(dirs[d], true, true, LOG);
	}
}
