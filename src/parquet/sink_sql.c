/*-------------------------------------------------------------------------
 *
 * sink_sql.c
 *	  anomstream.set_sink(name, directory): turn a continuous Parquet sink on or off.
 *
 * The worker writes part files as the server's operating-system user, so choosing where they
 * go is the privilege of writing server files (DESIGN.md §10): superuser or
 * pg_write_server_files, checked for the calling role. The function is not SECURITY DEFINER
 * (the check must see the caller); after the check it writes anomstream.sinks and
 * anomstream.sink_positions as the owner of anomstream.sinks, in a restricted security
 * context, with fully qualified names.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(anomstream_set_sink);

Datum
anomstream_set_sink(PG_FUNCTION_ARGS)
{
	char	   *name;
	char	   *directory = NULL;
	Oid			rel;
	Oid			owner;
	Oid			save_userid;
	int			save_sec;
	Oid			types[3] = {TEXTOID, TEXTOID, NAMEOID};
	Datum		values[3];

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("sink name must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (strcmp(name, "process") != 0 && strcmp(name, "memory") != 0 &&
		strcmp(name, "detected") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown Parquet sink \"%s\"", name),
				 errhint("The sinks are \"process\", \"memory\" and \"detected\".")));

	if (!superuser() && !has_privs_of_role(GetUserId(), ROLE_PG_WRITE_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to set the directory of a Parquet sink"),
				 errdetail("Only roles with privileges of the \"pg_write_server_files\" role may choose where the server writes files.")));

	if (!PG_ARGISNULL(1))
	{
		struct stat st;
		size_t		len;

		directory = text_to_cstring(PG_GETARG_TEXT_PP(1));
		if (!is_absolute_path(directory))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("directory of a Parquet sink must be an absolute path")));
		canonicalize_path(directory);
		len = strlen(directory);
		if (len >= MAXPGPATH - 128)
			ereport(ERROR,
					(errcode(ERRCODE_NAME_TOO_LONG),
					 errmsg("directory of a Parquet sink is too long")));
		if (stat(directory, &st) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not access directory \"%s\": %m", directory),
					 errhint("Create the directory first; the server's operating-system user must be able to write to it.")));
		if (!S_ISDIR(st.st_mode))
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("\"%s\" is not a directory", directory)));
	}

	rel = get_relname_relid("sinks", get_namespace_oid("anomstream", false));
	if (!OidIsValid(rel))
		elog(ERROR, "anomstream: table anomstream.sinks is missing");
	{
		HeapTuple	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));

		if (!HeapTupleIsValid(tp))
			elog(ERROR, "anomstream: cache lookup failed for relation %u", rel);
		owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
		ReleaseSysCache(tp);
	}

	values[0] = CStringGetTextDatum(name);
	values[1] = directory ? CStringGetTextDatum(directory) : (Datum) 0;
	values[2] = DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(GetUserId(), false)));

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	SPI_connect();
	if (directory)
	{
		if (SPI_execute_with_args("INSERT INTO anomstream.sinks AS s (name, directory, set_at, set_by) "
								  "VALUES ($1, $2, pg_catalog.now(), $3) "
								  "ON CONFLICT (name) DO UPDATE SET directory = excluded.directory, "
								  "set_at = excluded.set_at, set_by = excluded.set_by",
								  3, types, values, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "anomstream: cannot record Parquet sink \"%s\"", name);
	}
	else
	{
		/* off: the open part is dropped, committed parts and their manifest rows stay */
		if (SPI_execute_with_args("DELETE FROM anomstream.sinks WHERE name = $1",
								  1, types, values, NULL, false, 0) != SPI_OK_DELETE ||
			SPI_execute_with_args("DELETE FROM anomstream.sink_positions WHERE sink = $1",
								  1, types, values, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "anomstream: cannot turn off Parquet sink \"%s\"", name);
	}
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec);
	PG_RETURN_VOID();
}
