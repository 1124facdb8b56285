/*-------------------------------------------------------------------------
 *
 * model_io.c
 *	  anomstream.import_model (bytes or server file) and the shipped default models.
 *
 * Invariants: bytes are stored exactly as given (export_model returns them unchanged), after
 * XGBoost has loaded them, their objective gives probabilities, and the features (with their
 * encodings) produce exactly the number of input columns the booster expects; with a stream,
 * the features must also compile against that stream's staging table. Missing features,
 * encoding, threshold, stream or metrics are taken from the attributes anomstream.train stores
 * in the booster (anomstream_features, ...), then from the booster's own feature names. Reading
 * a server file needs the privileges of pg_read_server_files, as COPY FROM a file does.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port.h"
#include "storage/fd.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "score/model_io.h"
#include "score/registry.h"

PG_FUNCTION_INFO_V1(anomstream_import_model);
PG_FUNCTION_INFO_V1(anomstream_import_model_file);
PG_FUNCTION_INFO_V1(anomstream_load_default_model);

/*
 * Objectives whose output is a probability.
 */
static void
check_objective(ScoreBooster *b)
{
	char	   *obj = booster_objective(b);

	if (strcmp(obj, "binary:logistic") != 0 && strcmp(obj, "reg:logistic") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model objective \"%s\" does not give probabilities", obj),
				 errhint("Train the model with objective \"binary:logistic\".")));
}

/*
 * The booster's own feature names as a JSON array, or NULL.
 */
static char *
booster_feature_names(ScoreBooster *b)
{
	bst_ulong	n = 0;
	const char **names = NULL;
	StringInfoData buf;

	if (XGB(XGBoosterGetStrFeatureInfo) (b->handle, "feature_name", &n, &names) != 0 || n == 0)
		return NULL;
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (bst_ulong i = 0; i < n; i++)
	{
		if (i)
			appendStringInfoChar(&buf, ',');
		escape_json(&buf, names[i]);
	}
	appendStringInfoChar(&buf, ']');
	return buf.data;
}

/*
 * Validate and insert one version; returns it. Any argument may be NULL (Datum 0 + isnull).
 */
int32
import_model_bytes(const char *name, bytea *bytes, ArrayType *features, const char *stream,
				   Jsonb *encoding, bool has_threshold, float8 threshold, Jsonb *metrics,
				   bool activate, const char *origin)
{
	const char *data = VARDATA_ANY(bytes);
	size_t		len = VARSIZE_ANY_EXHDR(bytes);
	const char *format = booster_sniff_format(data, len);
	ScoreBooster *b;
	char	   *attr_features,
			   *attr_encoding,
			   *attr_threshold,
			   *attr_stream,
			   *attr_metrics;
	Oid			types[14] = {TEXTOID, TEXTOID, BYTEAOID, TEXTOID, TEXTARRAYOID, TEXTOID, JSONBOID,
	TEXTOID, FLOAT8OID, TEXTOID, INT4OID, JSONBOID, TEXTOID, TEXTOID};
	Datum		values[14];
	char		nulls[14];
	int32		version;
	bool		isnull;
	ScoreModel *m;
	ScoreStream s;

	if (name == NULL || name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model name must not be empty")));
	if (has_threshold && !(threshold >= 0.0 && threshold <= 1.0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("threshold must be between 0 and 1")));
	if (format == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model bytes are neither XGBoost JSON nor UBJSON"),
				 errhint("Save the model with XGBoost's save_model to a file ending in .json or .ubj.")));

	b = booster_load(data, len);
	check_objective(b);
	attr_features = booster_get_attr(b, "anomstream_features");
	attr_encoding = booster_get_attr(b, "anomstream_encoding");
	attr_threshold = booster_get_attr(b, "anomstream_threshold");
	attr_stream = booster_get_attr(b, "anomstream_stream");
	attr_metrics = booster_get_attr(b, "anomstream_metrics");
	if (features == NULL && attr_features == NULL)
		attr_features = booster_feature_names(b);
	if (features == NULL && attr_features == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the model does not name its features"),
				 errhint("Pass features => ARRAY[...] in the order the model was trained with.")));
	if (stream == NULL)
		stream = attr_stream;
	s = stream_from_name(stream, stream == NULL);

	/*
	 * $1 name, $2 stream, $3 booster, $4 format, $5 features[], $6 features attr (JSON),
	 * $7 encoding, $8 encoding attr, $9 threshold, $10 threshold attr, $11 num_features,
	 * $12 metrics, $13 metrics attr, $14 origin.
	 */
	memset(nulls, ' ', sizeof(nulls));
#define ARG(i, isnull_, datum) (nulls[i] = (isnull_) ? 'n' : ' ', values[i] = (isnull_) ? (Datum) 0 : (datum))
	ARG(0, false, CStringGetTextDatum(name));
	ARG(1, s == STREAM_NONE, CStringGetTextDatum(stream_name(s)));
	ARG(2, false, PointerGetDatum(bytes));
	ARG(3, false, CStringGetTextDatum(format));
	ARG(4, features == NULL, PointerGetDatum(features));
	ARG(5, attr_features == NULL, CStringGetTextDatum(attr_features));
	ARG(6, encoding == NULL, PointerGetDatum(encoding));
	ARG(7, attr_encoding == NULL, CStringGetTextDatum(attr_encoding));
	ARG(8, !has_threshold, Float8GetDatum(threshold));
	ARG(9, attr_threshold == NULL, CStringGetTextDatum(attr_threshold));
	ARG(10, false, Int32GetDatum(b->nfeatures));
	ARG(11, metrics == NULL, PointerGetDatum(metrics));
	ARG(12, attr_metrics == NULL, CStringGetTextDatum(attr_metrics));
	ARG(13, false, CStringGetTextDatum(origin));
#undef ARG

	SPI_connect();
	if (SPI_execute_with_args("INSERT INTO anomstream.models"
							  " (name, stream, booster, format, features, encoding, threshold,"
							  "  num_features, metrics, origin)"
							  " VALUES ($1, $2, $3, $4,"
							  "  COALESCE($5, ARRAY(SELECT pg_catalog.jsonb_array_elements_text($6::jsonb))),"
							  "  COALESCE($7, $8::jsonb, '{}'), COALESCE($9, $10::float8, 0.5),"
							  "  $11, COALESCE($12, $13::jsonb), $14)"
							  " RETURNING version",
							  14, types, values, nulls, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not insert into anomstream.models");
	version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();

	/* Load it as scoring will: checks the encoding and the number of input columns. */
	m = registry_model(version);
	if (s != STREAM_NONE)
	{
		Relation	rel = table_open(staging_relid(s), AccessShareLock);

		(void) registry_program(m, RelationGetDescr(rel), RelationGetRelid(rel));
		table_close(rel, AccessShareLock);
	}
	if (activate)
		activate_version(name, version);
	return version;
}

/*
 * The staging table of a stream.
 */
Oid
staging_relid(ScoreStream s)
{
	Oid			nsp = get_namespace_oid("anomstream", false);
	const char *rel = (s == STREAM_PROCESS) ? "process_events" : "memory_events";
	Oid			relid = get_relname_relid(rel, nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"anomstream.%s\" does not exist", rel)));
	return relid;
}

/*
 * anomstream.activate(name, version) through SPI.
 */
void
activate_version(const char *name, int32 version)
{
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2] = {CStringGetTextDatum(name), Int32GetDatum(version)};

	SPI_connect();
	if (SPI_execute_with_args("SELECT anomstream.activate($1, $2)", 2, types, values, NULL,
							  false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not activate model \"%s\"", name);
	SPI_finish();
}

/*
 * Arguments shared by both import_model variants: (name, model, features, stream, encoding,
 * threshold, metrics, activate).
 */
static int32
import_from_args(FunctionCallInfo fcinfo, bytea *bytes, const char *origin)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model name must not be NULL")));
	return import_model_bytes(text_to_cstring(PG_GETARG_TEXT_PP(0)), bytes,
							  PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2),
							  PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3)),
							  PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4),
							  !PG_ARGISNULL(5), PG_ARGISNULL(5) ? 0.5 : PG_GETARG_FLOAT8(5),
							  PG_ARGISNULL(6) ? NULL : PG_GETARG_JSONB_P(6),
							  !PG_ARGISNULL(7) && PG_GETARG_BOOL(7), origin);
}

/*
 * anomstream.import_model(name, model bytea, ...)
 */
Datum
anomstream_import_model(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model bytes must not be NULL")));
	PG_RETURN_INT32(import_from_args(fcinfo, PG_GETARG_BYTEA_PP(1), "import"));
}

/*
 * The whole content of a server file as bytea.
 */
static bytea *
read_whole_file(const char *path, bool missing_ok)
{
	FILE	   *f;
	struct stat st;
	bytea	   *result;
	size_t		n;

	f = AllocateFile(path, PG_BINARY_R);
	if (f == NULL)
	{
		if (missing_ok && errno == ENOENT)
			return NULL;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\" for reading: %m", path)));
	}
	if (fstat(fileno(f), &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", path)));
	if (S_ISDIR(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is a directory", path)));
	if (st.st_size > (off_t) (MaxAllocSize - VARHDRSZ))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("file \"%s\" is too large for a model", path)));
	result = palloc(VARHDRSZ + st.st_size);
	n = fread(VARDATA(result), 1, st.st_size, f);
	if (n != (size_t) st.st_size || ferror(f))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read file \"%s\": %m", path)));
	FreeFile(f);
	SET_VARSIZE(result, VARHDRSZ + n);
	return result;
}

/*
 * anomstream.import_model(name, path text, ...): needs pg_read_server_files.
 */
Datum
anomstream_import_model_file(PG_FUNCTION_ARGS)
{
	char	   *path;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model file name must not be NULL")));
	if (!has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read a model from a file"),
				 errdetail("Only roles with privileges of the \"pg_read_server_files\" role may read server files."),
				 errhint("Pass the bytes instead: anomstream.import_model(name, model bytea, ...).")));
	path = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (!is_absolute_path(path))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("relative path not allowed for a model file")));
	PG_RETURN_INT32(import_from_args(fcinfo, read_whole_file(path, false), "import"));
}

/*
 * anomstream.load_default_model(stream): share/extension/anomstream_<stream>_default.json as a
 * new default version; NULL (with a WARNING) if the file is not installed.
 */
Datum
anomstream_load_default_model(PG_FUNCTION_ARGS)
{
	ScoreStream s = stream_from_name(PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0)),
									 false);
	char		sharedir[MAXPGPATH];
	char	   *path;
	char	   *name;
	bytea	   *bytes;

	get_share_path(my_exec_path, sharedir);
	path = psprintf("%s/extension/anomstream_%s_default.json", sharedir, stream_name(s));
	bytes = read_whole_file(path, true);
	if (bytes == NULL)
	{
		ereport(WARNING,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("default model file \"%s\" is not installed", path),
				 errdetail("Stream \"%s\" has no default model and is not scored until one is activated.",
						   stream_name(s))));
		PG_RETURN_NULL();
	}
	name = psprintf("%s_default", stream_name(s));
	PG_RETURN_INT32(import_model_bytes(name, bytes, NULL, stream_name(s), NULL, false, 0.5,
									   NULL, false, "default"));
}

PG_FUNCTION_INFO_V1(anomstream_convert_model);

/*
 * anomstream.convert_model(model bytea, format text): the model saved again by XGBoost.
 */
Datum
anomstream_convert_model(PG_FUNCTION_ARGS)
{
	bytea	   *bytes = PG_GETARG_BYTEA_PP(0);
	char	   *format = text_to_cstring(PG_GETARG_TEXT_PP(1));
	ScoreBooster *b;

	if (strcmp(format, "json") != 0 && strcmp(format, "ubj") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown model format \"%s\"", format),
				 errhint("Use \"json\" or \"ubj\".")));
	b = booster_load(VARDATA_ANY(bytes), VARSIZE_ANY_EXHDR(bytes));
	PG_RETURN_BYTEA_P(booster_save(b, format));
}
