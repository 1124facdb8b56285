/*-------------------------------------------------------------------------
 *
 * copy_hook.c
 *	  The ProcessUtility hook that serves COPY ... (FORMAT parquet).
 *
 * A COPY is ours when it says FORMAT parquet, or when it names a server file
 * ending in ".parquet" and gives no FORMAT. Every other statement, and every
 * other COPY, goes to the previous hook or standard_ProcessUtility
 * unchanged. A COPY that is ours is never passed on: whatever we cannot do
 * (PROGRAM, an unknown option, FROM STDIN) gets our own error, never core's
 * 'COPY format "parquet" not recognized'.
 *
 * The hook exists in a backend once the library is loaded there: always with
 * shared_preload_libraries (or session_preload_libraries), otherwise after
 * LOAD 'anomstream' or the first call of an anomstream function.
 *
 * Privileges follow core COPY: a server file needs pg_read_server_files
 * (FROM) or pg_write_server_files (TO) (superusers have both); STDOUT needs
 * nothing; table privileges and row-level security are enforced by the
 * executor (TO) and by core COPY FROM.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/acl.h"

#include "parquet/copy.h"
#include "parquet/format.h"
#include "parquet/writer.h"

static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static bool hook_installed = false;

/* True if path ends in ".parquet" (any case). */
static bool
has_parquet_suffix(const char *path)
{
	size_t		n = strlen(path);

	return n > 8 && pg_strcasecmp(path + n - 8, ".parquet") == 0;
}

static DefElem *
find_option(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *d = lfirst_node(DefElem, lc);

		if (strcmp(d->defname, name) == 0)
			return d;
	}
	return NULL;
}

/* Is this COPY ours? */
static bool
is_parquet_copy(CopyStmt *stmt)
{
	DefElem    *fmt = find_option(stmt->options, "format");

	if (fmt != NULL)
		return fmt->arg != NULL && pg_strcasecmp(defGetString(fmt), "parquet") == 0;
	return stmt->filename != NULL && !stmt->is_program && has_parquet_suffix(stmt->filename);
}

static int
parse_codec(DefElem *d)
{
	const char *s = defGetString(d);

	if (pg_strcasecmp(s, "uncompressed") == 0 || pg_strcasecmp(s, "none") == 0)
		return PQ_CODEC_UNCOMPRESSED;
	if (pg_strcasecmp(s, "snappy") == 0)
		return PQ_CODEC_SNAPPY;
	if (pg_strcasecmp(s, "gzip") == 0)
		return PQ_CODEC_GZIP;
	if (pg_strcasecmp(s, "zstd") == 0)
		return PQ_CODEC_ZSTD;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unsupported Parquet compression \"%s\"", s),
			 errhint("Valid values are uncompressed, snappy, gzip and zstd.")));
	return 0;
}

static void
duplicate_option(DefElem *d)
{
	ereport(ERROR,
			(errcode(ERRCODE_SYNTAX_ERROR),
			 errmsg("conflicting or redundant options"),
			 errdetail("Option \"%s\" is given more than once.", d->defname)));
}

/* Parse and check the options of a Parquet COPY. */
static void
parse_options(CopyStmt *stmt, PqCopyOptions *o)
{
	ListCell   *lc;
	DefElem    *level = NULL,
			   *codec = NULL,
			   *rgs = NULL,
			   *match = NULL,
			   *freeze = NULL,
			   *format = NULL;

	memset(o, 0, sizeof(*o));
	o->codec = PQ_CODEC_SNAPPY;
	o->row_group_size = PQ_DEFAULT_ROW_GROUP_SIZE;
	foreach(lc, stmt->options)
	{
		DefElem    *d = lfirst_node(DefElem, lc);
		DefElem   **slot = NULL;

		if (strcmp(d->defname, "format") == 0)
			slot = &format;
		else if (!stmt->is_from && strcmp(d->defname, "compression") == 0)
			slot = &codec;
		else if (!stmt->is_from && strcmp(d->defname, "compression_level") == 0)
			slot = &level;
		else if (!stmt->is_from && strcmp(d->defname, "row_group_size") == 0)
			slot = &rgs;
		else if (stmt->is_from && strcmp(d->defname, "match_by") == 0)
			slot = &match;
		else if (stmt->is_from && strcmp(d->defname, "freeze") == 0)
			slot = &freeze;
		else
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("option \"%s\" is not supported by COPY %s with FORMAT parquet",
							d->defname, stmt->is_from ? "FROM" : "TO"),
					 errhint(stmt->is_from ?
							 "COPY FROM with FORMAT parquet accepts FORMAT, MATCH_BY and FREEZE." :
							 "COPY TO with FORMAT parquet accepts FORMAT, COMPRESSION, COMPRESSION_LEVEL and ROW_GROUP_SIZE.")));
		if (*slot != NULL)
			duplicate_option(d);
		*slot = d;
	}
	if (codec)
		o->codec = parse_codec(codec);
	switch (o->codec)
	{
		case PQ_CODEC_GZIP:
			o->level = 6;
			break;
		case PQ_CODEC_ZSTD:
			o->level = 3;
			break;
	}
	if (level)
	{
		int			lo = o->codec == PQ_CODEC_GZIP ? 0 : 1;
		int			hi = o->codec == PQ_CODEC_GZIP ? 9 : 22;
		int			v = defGetInt32(level);

		if (o->codec != PQ_CODEC_GZIP && o->codec != PQ_CODEC_ZSTD)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("COMPRESSION_LEVEL is not supported with compression %s",
							pq_codec_name(o->codec)),
					 errhint("Only gzip (0-9) and zstd (1-22) take a level.")));
		if (v < lo || v > hi)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("COMPRESSION_LEVEL %d is out of range for %s", v, pq_codec_name(o->codec)),
					 errhint("Valid levels are %d to %d.", lo, hi)));
		o->level = v;
	}
	if (rgs)
	{
		int64		v = defGetInt64(rgs);

		if (v < 1 || v > 64 * 1024 * 1024)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("ROW_GROUP_SIZE must be between 1 and 67108864 rows")));
		o->row_group_size = v;
	}
	if (match)
	{
		const char *s = defGetString(match);

		if (pg_strcasecmp(s, "name") == 0)
			o->match_by_name = true;
		else if (pg_strcasecmp(s, "position") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("MATCH_BY must be \"name\" or \"position\"")));
	}
	if (freeze)
		o->freeze = defGetBoolean(freeze);
}

/* Core COPY's file privilege rules, and what this format cannot do. */
static void
check_target(CopyStmt *stmt)
{
	if (stmt->is_program)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("COPY %s PROGRAM is not supported with FORMAT parquet",
						stmt->is_from ? "FROM" : "TO"),
				 errhint("Copy to or from a server file, or use COPY TO STDOUT.")));
	if (stmt->filename == NULL)
	{
		if (stmt->is_from)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("COPY FROM STDIN is not supported with FORMAT parquet"),
					 errdetail("A Parquet file is read from its footer backwards, so it cannot be streamed."),
					 errhint("Copy the file to the server and use COPY ... FROM 'path'.")));
		return;
	}
	if (stmt->is_from && !has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be superuser or have privileges of the pg_read_server_files role to COPY from a file"),
				 errhint("Anyone can COPY to stdout or from stdin. psql's \\copy command also works for anyone.")));
	if (!stmt->is_from && !has_privs_of_role(GetUserId(), ROLE_PG_WRITE_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be superuser or have privileges of the pg_write_server_files role to COPY to a file"),
				 errhint("Anyone can COPY to stdout or from stdin. psql's \\copy command also works for anyone.")));
}

/*
 * ProcessUtility hook: serve Parquet COPYs, pass everything else on.
 */
static void
parquet_ProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					   ProcessUtilityContext context, ParamListInfo params,
					   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	if (IsA(parsetree, CopyStmt) && is_parquet_copy((CopyStmt *) parsetree))
	{
		CopyStmt   *stmt = (CopyStmt *) parsetree;
		PqCopyOptions opts;
		ParseState *pstate;
		uint64		processed;

		if (readOnlyTree)
			stmt = copyObject(stmt);
		parse_options(stmt, &opts);
		check_target(stmt);
		pstate = make_parsestate(NULL);
		pstate->p_sourcetext = queryString;
		pstate->p_queryEnv = queryEnv;
		if (stmt->is_from)
			processed = pq_copy_from(pstate, stmt, &opts);
		else
			processed = pq_copy_to(pstate, stmt, pstmt->stmt_location, pstmt->stmt_len, &opts);
		free_parsestate(pstate);
		if (qc)
			SetQueryCompletion(qc, CMDTAG_COPY, processed);
		return;
	}
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv,
								dest, qc);
}

/* Install the hook (from _PG_init, once per backend). */
void
anomstream_parquet_init(void)
{
	if (hook_installed)
		return;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = parquet_ProcessUtility;
	hook_installed = true;
}
