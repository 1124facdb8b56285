/*-------------------------------------------------------------------------
 *
 * copy_to.c
 *	  COPY table [(cols)] | (query) TO 'file' | STDOUT WITH (FORMAT parquet).
 *
 * The table form becomes SELECT cols FROM ONLY table (core COPY TO reads no
 * child tables either); either way the query is analysed, rewritten,
 * planned and run by the executor into a DestReceiver that feeds the
 * writer, so privileges, row-level security and parallel plans apply as for
 * any query. The command tag is COPY n.
 *
 * Files are atomic: the writer writes to a hidden temporary file in the
 * target's directory (".<name>.<pid>.tmp"), which is fsynced and renamed over
 * the target only after the footer is written (durable_rename also syncs the
 * directory). An error or cancel unlinks the temporary file (PG_CATCH), and
 * so does a FATAL exit (a before_shmem_exit callback), so no partial file is
 * left. STDOUT streams the bytes as CopyData messages while writing: Parquet
 * needs no seeking, since the footer comes last.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/table.h"
#include "executor/executor.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "parquet/copy.h"
#include "parquet/writer.h"

#define STDOUT_CHUNK	(64 * 1024)

typedef struct ToState
{
	const PqCopyOptions *opts;
	MemoryContext cxt;
	PqWriter   *writer;
	bool		to_stdout;
	int			fd;
	const char *tmp_path;
} ToState;

typedef struct ParquetDest
{
	DestReceiver pub;
	ToState    *st;
} ParquetDest;

/* The temporary file to remove if the backend exits in the middle of a COPY. */
static char pending_tmp[MAXPGPATH];
static bool exit_callback_registered = false;

static void
remove_pending_tmp(int code, Datum arg)
{
	if (pending_tmp[0] != '\0')
		(void) unlink(pending_tmp);
	pending_tmp[0] = '\0';
}

/* ---------- output ---------- */

/*
 * Write all of data to fd (path names it in errors); shared with the continuous sinks.
 */
void
pq_write_fd(int fd, const char *path, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0)
	{
		ssize_t		n;

		errno = 0;
		n = write(fd, p, len);
		if (n <= 0)
		{
			if (n < 0 && errno == EINTR)
				continue;
			if (errno == 0)
				errno = ENOSPC;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write to file \"%s\": %m", path)));
		}
		p += n;
		len -= n;
	}
}

static void
write_file(void *arg, const void *data, size_t len)
{
	ToState    *st = (ToState *) arg;

	pq_write_fd(st->fd, st->tmp_path, data, len);
}

static void
write_stdout(void *arg, const void *data, size_t len)
{
	const char *p = data;
	StringInfoData buf;

	initStringInfo(&buf);
	while (len > 0)
	{
		size_t		n = Min(len, STDOUT_CHUNK);

		pq_beginmessage_reuse(&buf, 'd');
		pq_sendbytes(&buf, p, n);
		pq_endmessage_reuse(&buf);
		p += n;
		len -= n;
	}
	pfree(buf.data);
}

/* CopyOutResponse: binary overall, natts binary columns. */
static void
send_copy_out_response(int natts)
{
	StringInfoData buf;

	pq_beginmessage(&buf, 'H');
	pq_sendbyte(&buf, 1);
	pq_sendint16(&buf, natts);
	for (int i = 0; i < natts; i++)
		pq_sendint16(&buf, 1);
	pq_endmessage(&buf);
}

/* ---------- DestReceiver ---------- */

static void
dest_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	ToState    *st = ((ParquetDest *) self)->st;
	PqWriterOptions wo;

	wo.codec = st->opts->codec;
	wo.level = st->opts->level;
	wo.row_group_size = st->opts->row_group_size;
	/* check every column's type before anything is sent or written */
	st->writer = pq_writer_create(st->cxt, typeinfo, &wo,
								  st->to_stdout ? write_stdout : write_file, st);
	if (st->to_stdout)
		send_copy_out_response(typeinfo->natts);
}

static bool
dest_receive(TupleTableSlot *slot, DestReceiver *self)
{
	ToState    *st = ((ParquetDest *) self)->st;

	slot_getallattrs(slot);
	pq_writer_append(st->writer, slot->tts_values, slot->tts_isnull);
	return true;
}

static void
dest_shutdown(DestReceiver *self)
{
}

static void
dest_destroy(DestReceiver *self)
{
}

/* ---------- the query ---------- */

static void
check_relation(Relation rel)
{
	const char *name = RelationGetRelationName(rel);

	switch (rel->rd_rel->relkind)
	{
		case RELKIND_RELATION:
			return;
		case RELKIND_VIEW:
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("cannot copy from view \"%s\"", name),
					 errhint("Try the COPY (SELECT ...) TO variant.")));
			break;
		case RELKIND_MATVIEW:
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("cannot copy from materialized view \"%s\"", name),
					 errhint("Try the COPY (SELECT ...) TO variant.")));
			break;
		case RELKIND_PARTITIONED_TABLE:
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("cannot copy from partitioned table \"%s\"", name),
					 errhint("Try the COPY (SELECT ...) TO variant.")));
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("cannot copy from non-table relation \"%s\"", name),
					 errhint("Try the COPY (SELECT ...) TO variant.")));
	}
}

/* SELECT cols FROM ONLY rel, as a raw parse tree. */
static Node *
table_query(CopyStmt *stmt)
{
	SelectStmt *sel = makeNode(SelectStmt);
	RangeVar   *from = copyObject(stmt->relation);
	ListCell   *lc;

	from->inh = false;
	sel->fromClause = list_make1(from);
	if (stmt->attlist == NIL)
	{
		ColumnRef  *cr = makeNode(ColumnRef);
		ResTarget  *rt = makeNode(ResTarget);

		cr->fields = list_make1(makeNode(A_Star));
		cr->location = -1;
		rt->val = (Node *) cr;
		rt->location = -1;
		sel->targetList = list_make1(rt);
	}
	else
	{
		foreach(lc, stmt->attlist)
		{
			ColumnRef  *cr = makeNode(ColumnRef);
			ResTarget  *rt = makeNode(ResTarget);

			cr->fields = list_make1(makeString(strVal(lfirst(lc))));
			cr->location = -1;
			rt->name = pstrdup(strVal(lfirst(lc)));
			rt->val = (Node *) cr;
			rt->location = -1;
			sel->targetList = lappend(sel->targetList, rt);
		}
	}
	return (Node *) sel;
}

static PlannedStmt *
plan_query(ParseState *pstate, Node *raw_query, int stmt_location, int stmt_len)
{
	RawStmt    *raw = makeNode(RawStmt);
	List	   *rewritten;
	Query	   *query;

	raw->stmt = raw_query;
	raw->stmt_location = stmt_location;
	raw->stmt_len = stmt_len;
	rewritten = pg_analyze_and_rewrite_fixedparams(raw, pstate->p_sourcetext, NULL, 0, NULL);
	if (list_length(rewritten) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("multi-statement DO INSTEAD rules are not supported for COPY")));
	query = linitial_node(Query, rewritten);
	if (query->commandType == CMD_UTILITY)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("COPY (SELECT INTO) is not supported")));
	if (query->commandType != CMD_SELECT && query->returningList == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("COPY query must have a RETURNING clause")));
	return pg_plan_query(query, pstate->p_sourcetext, CURSOR_OPT_PARALLEL_OK, NULL);
}

static uint64
run_query(ToState *st, PlannedStmt *plan, const char *source)
{
	ParquetDest *dest = palloc0(sizeof(ParquetDest));
	QueryDesc  *qd;

	dest->pub.receiveSlot = dest_receive;
	dest->pub.rStartup = dest_startup;
	dest->pub.rShutdown = dest_shutdown;
	dest->pub.rDestroy = dest_destroy;
	dest->pub.mydest = DestNone;
	dest->st = st;

	PushCopiedSnapshot(GetActiveSnapshot());
	UpdateActiveSnapshotCommandId();
	qd = CreateQueryDesc(plan, source, GetActiveSnapshot(), InvalidSnapshot,
						 (DestReceiver *) dest, NULL, NULL, 0);
	ExecutorStart(qd, 0);
	ExecutorRun(qd, ForwardScanDirection, 0, true);
	ExecutorFinish(qd);
	ExecutorEnd(qd);
	FreeQueryDesc(qd);
	PopActiveSnapshot();
	pq_writer_finish(st->writer);
	return pq_writer_rows(st->writer);
}

/* ".<name>.<pid>.tmp" next to path */
static char *
temp_path_for(const char *path)
{
	const char *slash = strrchr(path, '/');
	int			dirlen = slash ? (int) (slash - path + 1) : 0;

	return psprintf("%.*s.%s.%d.tmp", dirlen, path, path + dirlen, MyProcPid);
}

uint64
pq_copy_to(ParseState *pstate, CopyStmt *stmt, int stmt_location, int stmt_len,
		   const PqCopyOptions *opts)
{
	ToState		st = {0};
	Relation volatile rel = NULL;
	Node	   *raw_query;
	PlannedStmt *plan;
	volatile uint64 rows = 0;

	st.opts = opts;
	st.fd = -1;
	st.cxt = AllocSetContextCreate(CurrentMemoryContext, "anomstream COPY TO parquet",
								   ALLOCSET_DEFAULT_SIZES);
	if (stmt->relation)
	{
		rel = table_openrv(stmt->relation, AccessShareLock);
		check_relation(rel);
		raw_query = table_query(stmt);
	}
	else
		raw_query = copyObject(stmt->query);
	plan = plan_query(pstate, raw_query, stmt_location, stmt_len);

	if (stmt->filename == NULL)
	{
		st.to_stdout = true;
		rows = run_query(&st, plan, pstate->p_sourcetext);
		pq_putemptymessage('c');
	}
	else
	{
		char	   *path = stmt->filename;
		mode_t		oumask;

		if (!is_absolute_path(path))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_NAME),
					 errmsg("relative path not allowed for COPY to file")));
		st.tmp_path = temp_path_for(path);
		if (!exit_callback_registered)
		{
			before_shmem_exit(remove_pending_tmp, (Datum) 0);
			exit_callback_registered = true;
		}
		strlcpy(pending_tmp, st.tmp_path, sizeof(pending_tmp));
		PG_TRY();
		{
			/* like core COPY TO: a file others may read */
			oumask = umask(S_IWGRP | S_IWOTH);
			PG_TRY();
			{
				st.fd = OpenTransientFilePerm(st.tmp_path, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY,
											  S_IRUSR | S_IWUSR | S_IRGRP | S_IROTH);
			}
			PG_FINALLY();
			{
				umask(oumask);
			}
			PG_END_TRY();
			if (st.fd < 0)
				ereport(ERROR,
						(errcode_for_file_access(),
						 errmsg("could not open file \"%s\" for writing: %m", st.tmp_path)));
			rows = run_query(&st, plan, pstate->p_sourcetext);
			if (pg_fsync(st.fd) != 0)
				ereport(ERROR,
						(errcode_for_file_access(),
						 errmsg("could not fsync file \"%s\": %m", st.tmp_path)));
			if (CloseTransientFile(st.fd) != 0)
				ereport(ERROR,
						(errcode_for_file_access(),
						 errmsg("could not close file \"%s\": %m", st.tmp_path)));
			st.fd = -1;
			(void) durable_rename(st.tmp_path, path, ERROR);
			pending_tmp[0] = '\0';
		}
		PG_CATCH();
		{
			/* the descriptor is closed by the abort; the name goes now */
			(void) unlink(st.tmp_path);
			pending_tmp[0] = '\0';
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	if (rel)
		table_close(rel, NoLock);
	MemoryContextDelete(st.cxt);
	return rows;
}
