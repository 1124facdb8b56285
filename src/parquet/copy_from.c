/*-------------------------------------------------------------------------
 *
 * copy_from.c
 *	  COPY table [(cols)] FROM 'file' WITH (FORMAT parquet [, MATCH_BY
 *	  name|position] [, FREEZE]): the PostgreSQL wrapper around reader.c.
 *
 * The file is turned into PostgreSQL's binary COPY stream on the fly and fed
 * to core COPY FROM through its data-source callback, so defaults,
 * constraints, triggers, partition routing, generated columns, WHERE and
 * FREEZE behave exactly as in core COPY. The preparation mirrors core
 * DoCopy: INSERT privilege on the copied columns, no row-level security,
 * no read-only transaction (except into a temporary table).
 *
 * Columns: by position (the default), file field i goes to the i-th copied
 * column (the column list, or every non-generated column) and the counts
 * must agree; by name, each file field goes to the column of the same name
 * and columns absent from the file get their defaults (unless listed).
 *
 * Errors from reader.c are strings; they become ERRORs here. Memory: the
 * footer lives in a per-COPY context, cursors in a per-row-group context,
 * and each row's Datums in a per-row context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/table.h"
#include "access/xact.h"
#include "commands/copy.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "parser/parse_collate.h"
#include "parser/parse_expr.h"
#include "parser/parse_relation.h"
#include "storage/fd.h"
#include "tcop/utility.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"

#include "parquet/copy.h"
#include "parquet/reader.h"
#include "parquet/types.h"
#include "parquet/writer.h"

typedef struct FromState
{
	const char *path;
	int			fd;
	PqFile	   *file;
	MemoryContext cxt;
	MemoryContext rg_cxt;
	MemoryContext row_cxt;
	const PqAllocator *rg_mem;
	int			ncols;			/* columns in the binary stream */
	int		   *field;			/* file field of each stream column */
	PqFieldReader **readers;
	PqCursor  **cursors;
	int			rg;				/* current row group, -1 before the first */
	int64		rows_left;
	int64		row_no;
	StringInfoData buf;
	int			bufpos;
	bool		header_done;
	bool		trailer_done;
} FromState;

/* core COPY's data-source callback takes no argument */
static FromState *current = NULL;

static void
file_error(FromState *st, const char *err)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("invalid Parquet file \"%s\": %s", st->path, err)));
}

static const char *
read_at(void *arg, uint64_t offset, size_t len, uint8_t *dst)
{
	FromState  *st = (FromState *) arg;

	while (len > 0)
	{
		ssize_t		n = pg_pread(st->fd, dst, len, (off_t) offset);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read file \"%s\": %m", st->path)));
		if (n == 0)
			return "file ended early";
		dst += n;
		len -= n;
		offset += n;
	}
	return NULL;
}

/* Close the cursors of the current row group and open the next one's. */
static bool
next_row_group(FromState *st)
{
	const char *err;

	for (;;)
	{
		if (st->rg >= 0)
		{
			/* every column must end with the row group */
			for (int j = 0; j < st->ncols; j++)
			{
				bool		done;
				uint32_t	rep;

				if ((err = pq_cursor_peek_rep(st->cursors[j], &done, &rep)) != NULL)
					file_error(st, err);
				if (!done)
					file_error(st, "a column holds more rows than its row group");
			}
		}
		MemoryContextReset(st->rg_cxt);
		st->rg_mem = pq_palloc_allocator(st->rg_cxt);
		st->file->mem = st->rg_mem;
		st->rg++;
		if (st->rg >= st->file->meta.n_row_groups)
			return false;
		for (int j = 0; j < st->ncols; j++)
		{
			if ((err = pq_cursor_open(st->file, st->rg, st->file->fields[st->field[j]].leaf,
									  &st->cursors[j])) != NULL)
				file_error(st, err);
		}
		st->rows_left = st->file->meta.row_groups[st->rg].num_rows;
		if (st->rows_left > 0)
			return true;
	}
}

static void
append_int16(StringInfo b, int16 v)
{
	uint16		n = pg_hton16((uint16) v);

	appendBinaryStringInfo(b, (char *) &n, 2);
}

/* Append one row of binary COPY data; false when the file has no more rows. */
static bool
produce_row(FromState *st)
{
	MemoryContext old;
	const char *err;

	while (st->rows_left == 0)
		if (!next_row_group(st))
			return false;
	old = MemoryContextSwitchTo(st->row_cxt);
	st->row_no++;
	append_int16(&st->buf, (int16) st->ncols);
	for (int j = 0; j < st->ncols; j++)
	{
		const PqField *fd = &st->file->fields[st->field[j]];
		int			max_def = st->file->leaves[fd->leaf].max_def;
		PqCursor   *c = st->cursors[j];
		bool		done;
		uint32_t	def,
					rep;
		PqValue		v;

		if ((err = pq_cursor_next(c, &done, &def, &rep, &v)) != NULL)
			file_error(st, err);
		if (done)
			file_error(st, "a column holds fewer rows than its row group");
		if (rep != 0)
			file_error(st, "a row does not start at repetition level 0");
		if (def < (uint32_t) fd->null_below)
		{
			static const uint32 null_len = 0xFFFFFFFF;

			appendBinaryStringInfo(&st->buf, (const char *) &null_len, 4);
		}
		else if (!fd->is_list)
			pq_field_value_send(st->readers[j], &v, &st->buf);
		else if (def < (uint32_t) fd->elem_below)
			pq_field_array_send(st->readers[j], true, &st->buf);
		else
		{
			pq_field_array_begin(st->readers[j]);
			pq_field_array_add(st->readers[j], &v, def < (uint32_t) max_def);
			for (;;)
			{
				if ((err = pq_cursor_peek_rep(c, &done, &rep)) != NULL)
					file_error(st, err);
				if (done || rep == 0)
					break;
				if ((err = pq_cursor_next(c, &done, &def, &rep, &v)) != NULL)
					file_error(st, err);
				if (def < (uint32_t) fd->elem_below)
					file_error(st, "an empty or NULL list inside a list");
				pq_field_array_add(st->readers[j], &v, def < (uint32_t) max_def);
			}
			pq_field_array_send(st->readers[j], false, &st->buf);
		}
	}
	st->rows_left--;
	MemoryContextSwitchTo(old);
	MemoryContextReset(st->row_cxt);
	return true;
}

/* Fill st->buf with the next piece of the binary COPY stream. */
static bool
produce(FromState *st)
{
	static const char sig[11] = "PGCOPY\n\377\r\n\0";

	if (!st->header_done)
	{
		uint32		zero = 0;

		appendBinaryStringInfo(&st->buf, sig, 11);
		appendBinaryStringInfo(&st->buf, (char *) &zero, 4);	/* flags */
		appendBinaryStringInfo(&st->buf, (char *) &zero, 4);	/* extension */
		st->header_done = true;
		return true;
	}
	if (st->trailer_done)
		return false;
	for (int i = 0; i < 64; i++)
	{
		if (!produce_row(st))
		{
			append_int16(&st->buf, -1);
			st->trailer_done = true;
			break;
		}
	}
	return true;
}

/* Core COPY's data source: at least minread bytes unless the stream ended. */
static int
data_source(void *outbuf, int minread, int maxread)
{
	FromState  *st = current;
	int			copied = 0;

	while (copied < minread)
	{
		int			n;

		if (st->bufpos >= st->buf.len)
		{
			resetStringInfo(&st->buf);
			st->bufpos = 0;
			if (!produce(st))
				break;
		}
		n = Min(maxread - copied, st->buf.len - st->bufpos);
		memcpy((char *) outbuf + copied, st->buf.data + st->bufpos, n);
		copied += n;
		st->bufpos += n;
	}
	return copied;
}

static int
find_field(PqFile *f, const char *name)
{
	for (int i = 0; i < f->n_fields; i++)
		if (strcmp(f->fields[i].name, name) == 0)
			return i;
	return -1;
}

/* Which file field feeds each copied column; returns the column names for core COPY. */
static List *
match_columns(FromState *st, Relation rel, CopyStmt *stmt, const PqCopyOptions *opts)
{
	TupleDesc	td = RelationGetDescr(rel);
	List	   *attnums = CopyGetAttnums(td, rel, stmt->attlist);
	List	   *names = NIL;
	ListCell   *lc;
	int			j = 0;

	st->ncols = opts->match_by_name ? st->file->n_fields : list_length(attnums);
	st->field = palloc0(sizeof(int) * Max(st->ncols, 1));
	st->readers = palloc0(sizeof(PqFieldReader *) * Max(st->ncols, 1));
	st->cursors = palloc0(sizeof(PqCursor *) * Max(st->ncols, 1));
	if (!opts->match_by_name)
	{
		if (st->file->n_fields != list_length(attnums))
			ereport(ERROR,
					(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
					 errmsg("Parquet file \"%s\" has %d fields, but COPY expects %d columns",
							st->path, st->file->n_fields, list_length(attnums)),
					 errhint("Give a column list, or use MATCH_BY name.")));
		foreach(lc, attnums)
		{
			Form_pg_attribute att = TupleDescAttr(td, lfirst_int(lc) - 1);

			st->field[j] = j;
			st->readers[j] = pq_field_reader(st->file, &st->file->fields[j], att->atttypid,
											 att->atttypmod, NameStr(att->attname));
			j++;
		}
		return stmt->attlist;
	}
	/* by name: every listed column must be in the file, every field in the table */
	foreach(lc, attnums)
	{
		Form_pg_attribute att = TupleDescAttr(td, lfirst_int(lc) - 1);

		if (stmt->attlist != NIL && find_field(st->file, NameStr(att->attname)) < 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" is not in Parquet file \"%s\"",
							NameStr(att->attname), st->path)));
	}
	for (int i = 0; i < st->file->n_fields; i++)
	{
		const char *name = st->file->fields[i].name;
		Form_pg_attribute att = NULL;

		foreach(lc, attnums)
		{
			Form_pg_attribute a = TupleDescAttr(td, lfirst_int(lc) - 1);

			if (strcmp(NameStr(a->attname), name) == 0)
				att = a;
		}
		if (att == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("Parquet field \"%s\" matches no column of table \"%s\"",
							name, RelationGetRelationName(rel)),
					 errhint("Copy into a column list that names the file's fields, or use a table with these columns.")));
		for (int k = 0; k < i; k++)
			if (strcmp(st->file->fields[k].name, name) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_COLUMN),
						 errmsg("Parquet file \"%s\" has more than one field named \"%s\"",
								st->path, name)));
		st->field[i] = i;
		st->readers[i] = pq_field_reader(st->file, &st->file->fields[i], att->atttypid,
										 att->atttypmod, name);
		names = lappend(names, makeString(pstrdup(name)));
	}
	return names;
}

static void
open_file(FromState *st)
{
	struct stat sb;
	PqReadSource src;
	const char *err;

	st->fd = OpenTransientFile(st->path, O_RDONLY | PG_BINARY);
	if (st->fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\" for reading: %m", st->path)));
	if (fstat(st->fd, &sb) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", st->path)));
	if (S_ISDIR(sb.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is a directory", st->path)));
	src.size = (uint64_t) sb.st_size;
	src.read_at = read_at;
	src.arg = st;
	if ((err = pq_file_open(&src, pq_palloc_allocator(st->cxt), NULL, &st->file)) != NULL)
		file_error(st, err);
}

/* core DoCopy's WHERE handling */
static Node *
transform_where(ParseState *pstate, ParseNamespaceItem *nsitem, Node *where)
{
	Node	   *w;

	addNSItemToQuery(pstate, nsitem, false, true, true);
	w = transformExpr(pstate, where, EXPR_KIND_COPY_WHERE);
	w = coerce_to_boolean(pstate, w, "WHERE");
	assign_expr_collations(pstate, w);
	w = eval_const_expressions(NULL, w);
	w = (Node *) canonicalize_qual((Expr *) w, false);
	return (Node *) make_ands_implicit((Expr *) w);
}

/* core COPY FROM over our binary stream */
static uint64
run_core_copy(ParseState *pstate, Relation rel, Node *where, List *names, List *options)
{
	CopyFromState cstate;
	uint64		processed;

	cstate = BeginCopyFrom(pstate, rel, where, NULL, false, data_source, names, options);
	processed = CopyFrom(cstate);
	EndCopyFrom(cstate);
	return processed;
}

uint64
pq_copy_from(ParseState *pstate, CopyStmt *stmt, const PqCopyOptions *opts)
{
	FromState	st = {0};
	Relation	rel;
	ParseNamespaceItem *nsitem;
	RangeTblEntry *rte;
	Node	   *where = NULL;
	List	   *names;
	List	   *attnums;
	List	   *options;
	ListCell   *lc;
	uint64		processed;

	rel = table_openrv(stmt->relation, RowExclusiveLock);
	nsitem = addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL, false, false);
	rte = nsitem->p_rte;
	rte->requiredPerms = ACL_INSERT;
	if (stmt->whereClause)
		where = transform_where(pstate, nsitem, stmt->whereClause);

	st.path = stmt->filename;
	st.fd = -1;
	st.rg = -1;
	st.cxt = AllocSetContextCreate(CurrentMemoryContext, "anomstream COPY FROM parquet",
								   ALLOCSET_DEFAULT_SIZES);
	st.rg_cxt = AllocSetContextCreate(st.cxt, "anomstream parquet row group",
									  ALLOCSET_DEFAULT_SIZES);
	st.row_cxt = AllocSetContextCreate(st.cxt, "anomstream parquet row",
									   ALLOCSET_DEFAULT_SIZES);
	initStringInfo(&st.buf);
	open_file(&st);
	names = match_columns(&st, rel, stmt, opts);

	attnums = CopyGetAttnums(RelationGetDescr(rel), rel, names);
	foreach(lc, attnums)
		rte->insertedCols = bms_add_member(rte->insertedCols,
										   lfirst_int(lc) - FirstLowInvalidHeapAttributeNumber);
	ExecCheckRTPerms(pstate->p_rtable, true);
	if (check_enable_rls(rte->relid, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("COPY FROM not supported with row-level security"),
				 errhint("Use INSERT statements instead.")));
	if (XactReadOnly && !rel->rd_islocaltemp)
		PreventCommandIfReadOnly("COPY FROM");

	options = list_make1(makeDefElem("format", (Node *) makeString("binary"), -1));
	if (opts->freeze)
		options = lappend(options, makeDefElem("freeze", (Node *) makeBoolean(true), -1));
	/*
	 * BeginCopyFrom already reads the stream's header. After an error
	 * `current` is stale, but only this function's run of core COPY calls
	 * data_source, and it sets `current` first.
	 */
	current = &st;
	processed = run_core_copy(pstate, rel, where, names, options);
	current = NULL;
	if (CloseTransientFile(st.fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", st.path)));
	MemoryContextDelete(st.cxt);
	table_close(rel, NoLock);
	return processed;
}
