/*-------------------------------------------------------------------------
 *
 * keyed.c
 *	  Keyed state operators run inside the micro-batch transaction (DESIGN.md §9).
 *
 * Invariants:
 * - Exactly once: every state change happens in the worker's micro-batch transaction, so a
 *   crash either keeps all of a batch's changes (with its durable position) or none.
 * - Only the current batch's staging rows are read (batch_id = $1), and of those only rows
 *   at or past their partition's durable position before the batch: rows below it are
 *   refills after a crash that keyed state has already taken over.
 * - Per operator and batch, the updater is called once per key with new values, the values
 *   in (event_time, topic, partition, offset, row_index) order (topic is fixed by the
 *   source table). Keys are visited in the order of their first value in that order (this
 *   decides which new keys a full operator with on_limit = skip_new admits).
 * - The operator's expressions and its updater run as the operator's owner; state is read
 *   and written as the worker's role.
 * - Each operator runs in a subtransaction: a deterministic error (a bug in a user updater
 *   or expression) rolls back that operator's changes for the batch, stops the operator
 *   (enabled = false, last_error) and lets the rest of the batch commit. Transient errors
 *   (cancel, out of memory, lock or serialization failures) abort the whole batch, which
 *   the worker retries.
 * - Late rows (listed in anomstream.late_rows for this batch, DESIGN.md §5) take part in
 *   nothing stateful: the worker reads their positions (as its own role; owners may not
 *   read late_rows) and the owner's query excludes them, so no expression, filter or
 *   updater ever sees them.
 * - TTL is measured against the pipeline watermark W (anomstream.pipeline_state, after the
 *   pipeline step of this batch): a key goes when its last event_time < W - ttl. Every
 *   enabled operator with a TTL evicts at the end of every micro-batch, with or without
 *   input, and keyed_state_evict() does the same when W moves in a tick (an idle partition
 *   stops holding W). W = -infinity (a partition that never delivered data and is not
 *   idle yet) evicts nothing.
 * - Memory: everything per batch lives in one context deleted at the end; user updaters
 *   run in a per-key context reset after each call.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "parser/parser.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "common/hashfn.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "ingest/staging.h"
#include "keyed/keyed.h"
#include "util/plan_settings.h"

PG_FUNCTION_INFO_V1(anomstream_keyed_single_statement);

#define KEYED_WORK_MEM "65536"	/* kB, for the operator's sorts and hashes */

/* One enabled operator, as read at the start of the batch */
typedef struct KeyedOp
{
	int32		id;
	char	   *name;
	Oid			owner;
	char	   *source;			/* regclass text, e.g. anomstream.process_events */
	DecodeStream stream;
	char	   *filter;			/* NULL: none */
	char	   *key_expr;
	char	   *value_expr;
	Oid			updater;		/* InvalidOid for a built-in */
	char	   *builtin;
	int			builtin_arg;	/* 0: default */
	bool		has_ttl;
	int64		max_keys;		/* 0: unbounded */
	bool		skip_new;
	bool		has_max;
	TimestampTz max_event_time;
	int64		nkeys;
} KeyedOp;

/* What one operator did in this batch */
typedef struct OpProgress
{
	int64		updates;
	int64		evicted_ttl;
	int64		evicted_limit;
	int64		skipped_new;
	KeyedCounts counts;
	int64		nkeys;
	TimestampTz max_event_time;
	TimestampTz started;
	double		updater_ms;
} OpProgress;

/* Positions of one stream's late rows in this batch, as array datums (NULL: none) */
typedef struct LateRows
{
	Datum		partitions;		/* int4[] */
	Datum		offsets;		/* int8[] */
	Datum		row_indexes;	/* int4[] */
	bool		any;
} LateRows;

static int	load_operators(KeyedOp **ops);
static char *refill_condition(DecodeStream stream, PartState *parts, int nparts);
static TimestampTz pipeline_watermark(void);
static void late_rows_of_batch(DecodeStream stream, int64 batch_id, PartState *parts,
							   int nparts, LateRows *late);
static void process_operator(KeyedOp *op, int64 batch_id, const char *refill,
							 const LateRows *late, TimestampTz watermark);
static int64 evict_ttl(KeyedOp *op, TimestampTz watermark);
static Datum make_array(Datum *elems, int n, Oid elemtype);
static bool transient_error(int sqlerrcode);
static void stop_operator(KeyedOp *op, ErrorData *edata);

/*
 * Read the enabled operators, locking their rows so alter/drop wait for this batch.
 */
static int
load_operators(KeyedOp **ops)
{
	int			n;

	if (SPI_execute("SELECT id, name, owner, source::text, filter, key_expr, value_expr,"
					" updater::oid, builtin, builtin_arg, ttl IS NOT NULL, max_keys,"
					" on_limit OPERATOR(pg_catalog.=) 'skip_new', max_event_time, nkeys"
					" FROM anomstream.keyed_operators WHERE enabled ORDER BY id"
					" FOR NO KEY UPDATE", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read anomstream.keyed_operators");
	n = (int) SPI_processed;
	*ops = palloc0(sizeof(KeyedOp) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		KeyedOp    *op = &(*ops)[i];
		bool		isnull;
		Datum		d;

		op->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		op->name = SPI_getvalue(tup, desc, 2);
		op->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
		op->source = SPI_getvalue(tup, desc, 4);
		op->stream = (strcmp(op->source, "anomstream.memory_events") == 0)
			? STREAM_MEMORY : STREAM_PROCESS;
		op->filter = SPI_getvalue(tup, desc, 5);
		op->key_expr = SPI_getvalue(tup, desc, 6);
		op->value_expr = SPI_getvalue(tup, desc, 7);
		d = SPI_getbinval(tup, desc, 8, &isnull);
		op->updater = isnull ? InvalidOid : DatumGetObjectId(d);
		op->builtin = SPI_getvalue(tup, desc, 9);
		d = SPI_getbinval(tup, desc, 10, &isnull);
		op->builtin_arg = isnull ? 0 : DatumGetInt32(d);
		op->has_ttl = DatumGetBool(SPI_getbinval(tup, desc, 11, &isnull));
		d = SPI_getbinval(tup, desc, 12, &isnull);
		op->max_keys = isnull ? 0 : DatumGetInt64(d);
		op->skip_new = DatumGetBool(SPI_getbinval(tup, desc, 13, &isnull));
		d = SPI_getbinval(tup, desc, 14, &isnull);
		op->has_max = !isnull;
		op->max_event_time = isnull ? 0 : DatumGetTimestampTz(d);
		op->nkeys = DatumGetInt64(SPI_getbinval(tup, desc, 15, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);
	return n;
}

/*
 * SQL condition keeping rows at or past their partition's durable position (before this
 * batch) for one stream's partitions.
 */
static char *
refill_condition(DecodeStream stream, PartState *parts, int nparts)
{
	StringInfoData buf;
	bool		any = false;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "s.kafka_offset OPERATOR(pg_catalog.>=) CASE s.kafka_partition");
	for (int i = 0; i < nparts; i++)
	{
		if (parts[i].stream != stream || parts[i].durable_offset <= 0)
			continue;
		appendStringInfo(&buf, " WHEN %d THEN " INT64_FORMAT, parts[i].partition,
						 parts[i].durable_offset);
		any = true;
	}
	appendStringInfoString(&buf, " ELSE 0 END");
	return any ? buf.data : "true";
}

/*
 * The pipeline watermark W, as the pipeline step left it (read as the worker).
 */
static TimestampTz
pipeline_watermark(void)
{
	bool		isnull;
	Datum		d;

	if (SPI_execute("SELECT watermark FROM anomstream.pipeline_state", false, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not read the pipeline watermark");	/* the pipeline step did */
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	SPI_freetuptable(SPI_tuptable);
	return isnull ? DT_NOBEGIN : DatumGetTimestampTz(d);
}

/*
 * The positions of one stream's rows that the pipeline listed as late in this batch, read
 * as the worker through late_rows' primary key (the batch's offset range per partition).
 * The arrays are copied into the current memory context.
 */
static void
late_rows_of_batch(DecodeStream stream, int64 batch_id, PartState *parts, int nparts,
				   LateRows *late)
{
	Oid			types[5] = {TEXTOID, INT4ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8OID};
	Datum		args[5];
	Datum	   *pd = palloc(sizeof(Datum) * Max(nparts, 1));
	Datum	   *lo = palloc(sizeof(Datum) * Max(nparts, 1));
	Datum	   *hi = palloc(sizeof(Datum) * Max(nparts, 1));
	const char *topic = NULL;
	int			n = 0;
	bool		isnull;

	memset(late, 0, sizeof(*late));
	for (int i = 0; i < nparts; i++)
	{
		if (parts[i].stream != stream || !parts[i].in_batch)
			continue;
		topic = parts[i].topic;
		pd[n] = Int32GetDatum(parts[i].partition);
		lo[n] = Int64GetDatum(parts[i].batch_first);
		hi[n] = Int64GetDatum(parts[i].batch_last);
		n++;
	}
	if (n == 0)
		return;
	args[0] = CStringGetTextDatum(topic);
	args[1] = make_array(pd, n, INT4OID);
	args[2] = make_array(lo, n, INT8OID);
	args[3] = make_array(hi, n, INT8OID);
	args[4] = Int64GetDatum(batch_id);
	if (SPI_execute_with_args("SELECT pg_catalog.array_agg(l.kafka_partition),"
							  " pg_catalog.array_agg(l.kafka_offset), pg_catalog.array_agg(l.row_index)"
							  " FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4)) AS b(p, lo, hi)"
							  " JOIN anomstream.late_rows l ON l.topic OPERATOR(pg_catalog.=) $1"
							  " AND l.kafka_partition OPERATOR(pg_catalog.=) b.p"
							  " AND l.kafka_offset OPERATOR(pg_catalog.>=) b.lo"
							  " AND l.kafka_offset OPERATOR(pg_catalog.<=) b.hi"
							  " WHERE l.batch_id OPERATOR(pg_catalog.=) $5",
							  5, types, args, NULL, false, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not read the late rows of micro-batch " INT64_FORMAT, batch_id);
	(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
	{
		late->any = true;
		late->partitions = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		late->offsets = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		late->row_indexes = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
		late->partitions = PointerGetDatum(DatumGetArrayTypePCopy(late->partitions));
		late->offsets = PointerGetDatum(DatumGetArrayTypePCopy(late->offsets));
		late->row_indexes = PointerGetDatum(DatumGetArrayTypePCopy(late->row_indexes));
	}
	SPI_freetuptable(SPI_tuptable);
}

/* Errors that say nothing about the operator: let the worker retry the whole batch */
static bool
transient_error(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_INSUFFICIENT_RESOURCES:	/* 53: disk full, out of memory */
		case ERRCODE_PROGRAM_LIMIT_EXCEEDED:	/* 54 */
		case ERRCODE_OPERATOR_INTERVENTION: /* 57: cancel, shutdown */
		case ERRCODE_SYSTEM_ERROR:	/* 58 */
		case ERRCODE_TRANSACTION_ROLLBACK:	/* 40: serialization, deadlock */
			return true;
		default:
			return sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
				sqlerrcode == ERRCODE_OUT_OF_MEMORY;
	}
}

/*
 * Is sql exactly one statement? (Raw parse only: nothing is looked up or run.)
 */
static bool
keyed_single_statement(const char *sql)
{
	return list_length(raw_parser(sql, RAW_PARSE_DEFAULT)) == 1;
}

/*
 * anomstream.keyed_single_statement(sql text) -> bool, for keyed_check: validating an
 * operator's expressions must not run a statement smuggled into them.
 */
Datum
anomstream_keyed_single_statement(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(keyed_single_statement(text_to_cstring(PG_GETARG_TEXT_PP(0))));
}

/*
 * Run one statement of an operator's batch (as the current user); an unexpected result is
 * an internal error. Returns the number of rows processed.
 */
static uint64
op_exec(KeyedOp *op, const char *sql, int nargs, Oid *types, Datum *args, int expected,
		const char *what)
{
	if (SPI_execute_with_args(sql, nargs, types, args, NULL, false, 0) != expected)
		elog(ERROR, "could not %s of keyed operator \"%s\"", what, op->name);
	return SPI_processed;
}

/*
 * Stop an operator whose updater or expressions failed (in the batch transaction).
 */
static void
stop_operator(KeyedOp *op, ErrorData *edata)
{
	Datum		args[2];
	Oid			types[2] = {INT4OID, TEXTOID};

	ereport(WARNING,
			(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
			 errmsg("anomstream: keyed operator \"%s\" stopped: %s", op->name, edata->message),
			 errhint("Fix the operator, then re-enable it with anomstream.keyed_alter('%s', enabled => true).",
					 op->name)));
	args[0] = Int32GetDatum(op->id);
	args[1] = CStringGetTextDatum(edata->message);
	op_exec(op, "UPDATE anomstream.keyed_operators SET enabled = false,"
							  " last_error = $2, last_error_at = pg_catalog.now()"
							  " WHERE id OPERATOR(pg_catalog.=) $1",
				2, types, args, SPI_OK_UPDATE, "stop");
}

/* Build a one-dimensional array from datums (no NULLs) */
static Datum
make_array(Datum *elems, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_array(elems, n, elemtype, typlen, typbyval, typalign));
}

/* A key of the batch while grouping: its text (hash key) and its index in keys[] */
typedef struct GroupEntry
{
	char	   *key;
	int			idx;
} GroupEntry;

static uint32
group_hash(const void *key, Size keysize)
{
	const char *k = *(char *const *) key;

	return hash_bytes((const unsigned char *) k, strlen(k));
}

static int
group_match(const void *a, const void *b, Size keysize)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * Group rows (key text, value jsonb, event_time), sorted in the values' order, by key: keys
 * in order of their first row. Returns the number of keys; fills keys[] (text datums),
 * values[] (a jsonb array per key), last_et[] (largest event_time per key) and raises
 * *max_et. Allocates in the current memory context.
 */
static int
group_rows(SPITupleTable *tt, int nrows, Datum **keys_out, Jsonb ***values_out,
		   TimestampTz **last_et_out, TimestampTz *max_et)
{
	HASHCTL		ctl;
	HTAB	   *groups;
	int		   *next;
	int		   *first;
	int		   *last;
	char	  **names;
	Datum	   *keys;
	Jsonb	  **values;
	TimestampTz *last_et;
	int			nkeys = 0;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(char *);
	ctl.entrysize = sizeof(GroupEntry);
	ctl.hash = group_hash;
	ctl.match = group_match;
	ctl.hcxt = CurrentMemoryContext;
	groups = hash_create("anomstream keyed batch keys", Max(nrows, 16), &ctl,
						 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	names = palloc(sizeof(char *) * Max(nrows, 1));
	first = palloc(sizeof(int) * Max(nrows, 1));
	last = palloc(sizeof(int) * Max(nrows, 1));
	next = palloc(sizeof(int) * Max(nrows, 1));
	last_et = palloc(sizeof(TimestampTz) * Max(nrows, 1));
	for (int r = 0; r < nrows; r++)
	{
		bool		knull,
					isnull;
		Datum		k = SPI_getbinval(tt->vals[r], tt->tupdesc, 1, &knull);
		TimestampTz et = DatumGetTimestampTz(SPI_getbinval(tt->vals[r], tt->tupdesc, 3, &isnull));
		char	   *name;
		GroupEntry *e;
		bool		found;

		next[r] = -1;
		if (knull)
			continue;			/* rows whose key is NULL take part in nothing */
		name = TextDatumGetCString(k);
		e = hash_search(groups, &name, HASH_ENTER, &found);
		if (!found)
		{
			e->key = name;
			e->idx = nkeys;
			names[nkeys] = name;
			first[nkeys] = r;
			last_et[nkeys] = et;
			nkeys++;
		}
		else
		{
			pfree(name);
			next[last[e->idx]] = r;
		}
		last[e->idx] = r;
		if (et > last_et[e->idx])
			last_et[e->idx] = et;
		if (et > *max_et)
			*max_et = et;
	}
	keys = palloc(sizeof(Datum) * Max(nkeys, 1));
	values = palloc(sizeof(Jsonb *) * Max(nkeys, 1));
	for (int i = 0; i < nkeys; i++)
	{
		JsonbParseState *ps = NULL;
		JsonbValue *res;

		keys[i] = CStringGetTextDatum(names[i]);
		pushJsonbValue(&ps, WJB_BEGIN_ARRAY, NULL);
		for (int r = first[i]; r >= 0; r = next[r])
		{
			bool		isnull;
			Datum		d = SPI_getbinval(tt->vals[r], tt->tupdesc, 2, &isnull);
			JsonbValue	jv;

			if (isnull)
				jv.type = jbvNull;
			else
			{
				Jsonb	   *v = DatumGetJsonbP(d);

				if (JB_ROOT_IS_SCALAR(v))
					(void) JsonbExtractScalar(&v->root, &jv);
				else
				{
					jv.type = jbvBinary;
					jv.val.binary.data = &v->root;
					jv.val.binary.len = VARSIZE(v) - VARHDRSZ;
				}
			}
			pushJsonbValue(&ps, WJB_ELEM, &jv);
		}
		res = pushJsonbValue(&ps, WJB_END_ARRAY, NULL);
		values[i] = JsonbValueToJsonb(res);
	}
	hash_destroy(groups);
	*keys_out = keys;
	*values_out = values;
	*last_et_out = last_et;
	return nkeys;
}

/*
 * Run one operator over the batch (in its own subtransaction, see the caller).
 */
static void
process_operator(KeyedOp *op, int64 batch_id, const char *refill, const LateRows *late,
				 TimestampTz watermark)
{
	MemoryContext cxt = CurrentMemoryContext;
	MemoryContext callcxt;
	Oid			save_uid;
	int			save_sec;
	StringInfoData q;
	int			nkeys;
	Datum	   *keys;
	Jsonb	  **values;
	TimestampTz *last_et;
	Jsonb	  **old;
	Datum	   *up_keys,
			   *up_states,
			   *up_times,
			   *del_keys;
	int			nup = 0,
				ndel = 0;
	OpProgress	pr;
	FmgrInfo	flinfo;
	int			nest = 0;
	int			outer_nest;
	TimestampTz loop_start;

	memset(&pr, 0, sizeof(pr));
	pr.started = GetCurrentTimestamp();

	/*
	 * Grouping a batch sorts up to max_batch_rows rows: give the operator's queries room
	 * to sort in memory (restored at the end, or by the subtransaction's abort). Staging's
	 * planner statistics lag behind its growth, and a sequential scan would make every
	 * batch cost as much as all of staging: the batch's rows come through the BRIN index
	 * on batch_id.
	 */
	outer_nest = NewGUCNestLevel();
	(void) set_config_option("work_mem", KEYED_WORK_MEM, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	plan_settings_index_scans();	/* sequential scans and JIT off */

	/*
	 * 1. The batch's rows in (event_time, partition, offset, row_index) order, read as the
	 * owner, then grouped per key here: keys in order of their first row, each key's values
	 * in row order. (One sort; grouping in SQL cost two more sorts and a window.) Late rows
	 * are excluded by their positions, passed as parameters: the owner reads no late_rows.
	 */
	initStringInfo(&q);
	appendStringInfo(&q,
					 "SELECT (%s)::text, pg_catalog.to_jsonb(%s), s.event_time FROM %s s"
					 " WHERE s.batch_id OPERATOR(pg_catalog.=) $1 AND s.event_time IS NOT NULL"
					 " AND %s%s AND (%s)"
					 " ORDER BY s.event_time, s.kafka_partition, s.kafka_offset, s.row_index",
					 op->key_expr, op->value_expr, op->source, refill,
					 late->any ?
					 " AND NOT EXISTS (SELECT FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3),"
					 " pg_catalog.unnest($4)) AS l(p, o, r)"
					 " WHERE l.p OPERATOR(pg_catalog.=) s.kafka_partition"
					 " AND l.o OPERATOR(pg_catalog.=) s.kafka_offset"
					 " AND l.r OPERATOR(pg_catalog.=) s.row_index)" : "",
					 op->filter ? op->filter : "true");
	/* The expressions are text from the owner: they must not smuggle in more statements. */
	if (!keyed_single_statement(q.data))
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("keyed operator \"%s\" has expressions that are not single expressions",
						op->name)));
	GetUserIdAndSecContext(&save_uid, &save_sec);
	SetUserIdAndSecContext(op->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	{
		Oid			types[4] = {INT8OID, INT4ARRAYOID, INT8ARRAYOID, INT4ARRAYOID};
		Datum		args[4] = {Int64GetDatum(batch_id), late->partitions, late->offsets,
		late->row_indexes};

		if (SPI_execute_with_args(q.data, late->any ? 4 : 1, types, args, NULL, false, 0) !=
			SPI_OK_SELECT)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("keyed operator \"%s\" does not select rows", op->name)));
	}
	SetUserIdAndSecContext(save_uid, save_sec);

	pr.max_event_time = op->has_max ? op->max_event_time : DT_NOBEGIN;
	nkeys = group_rows(SPI_tuptable, (int) SPI_processed, &keys, &values, &last_et,
					   &pr.max_event_time);
	SPI_freetuptable(SPI_tuptable);
	pr.nkeys = op->nkeys;
	if (nkeys == 0)
		goto bounds;			/* no input: W may still have moved */

	/*
	 * 2. The old states, aligned with keys[], read as the worker. When the batch touches a
	 * good part of the operator's keys, one hash join beats a probe per key.
	 */
	{
		Oid			types[2] = {INT4OID, TEXTARRAYOID};
		Datum		args[2];
		int			lookup_nest = NewGUCNestLevel();

		if (nkeys > 1000 && (int64) nkeys * 4 > op->nkeys)
			(void) set_config_option("enable_nestloop", "off", PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SAVE, true, 0, false);

		args[0] = Int32GetDatum(op->id);
		args[1] = make_array(keys, nkeys, TEXTOID);
		if (SPI_execute_with_args("SELECT s.state FROM pg_catalog.unnest($2) WITH ORDINALITY u(k, i)"
								  " LEFT JOIN anomstream.keyed_state_data s"
								  " ON s.op_id OPERATOR(pg_catalog.=) $1 AND s.key OPERATOR(pg_catalog.=) u.k"
								  " ORDER BY u.i", 2, types, args, NULL, false, 0) != SPI_OK_SELECT ||
			SPI_processed != (uint64) nkeys)
			elog(ERROR, "could not read the state of keyed operator \"%s\"", op->name);
		old = palloc(sizeof(Jsonb *) * nkeys);
		for (int i = 0; i < nkeys; i++)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

			old[i] = isnull ? NULL : DatumGetJsonbPCopy(d);
		}
		SPI_freetuptable(SPI_tuptable);
		AtEOXact_GUC(true, lookup_nest);
	}

	/* 3. New states: a built-in in C, or the updater as the owner. */
	up_keys = palloc(sizeof(Datum) * nkeys);
	up_states = palloc(sizeof(Datum) * nkeys);
	up_times = palloc(sizeof(Datum) * nkeys);
	del_keys = palloc(sizeof(Datum) * nkeys);
	callcxt = AllocSetContextCreate(cxt, "anomstream keyed updater call", ALLOCSET_DEFAULT_SIZES);
	loop_start = GetCurrentTimestamp();
	if (OidIsValid(op->updater))
	{
		if (pg_proc_aclcheck(op->updater, op->owner, ACL_EXECUTE) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("owner of keyed operator \"%s\" may not execute its updater", op->name)));
		fmgr_info_cxt(op->updater, &flinfo, cxt);
		SetUserIdAndSecContext(op->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
		nest = NewGUCNestLevel();
	}
	for (int i = 0; i < nkeys; i++)
	{
		Jsonb	   *ns;

		CHECK_FOR_INTERRUPTS();
		if (old[i] == NULL && op->max_keys > 0 && op->skip_new && pr.nkeys >= op->max_keys)
		{
			pr.skipped_new++;
			continue;
		}
		if (!OidIsValid(op->updater))
		{
			if (strcmp(op->builtin, "derivative") == 0)
				ns = keyed_derivative_apply(values[i], old[i],
											op->builtin_arg > 0 ? op->builtin_arg : KEYED_DERIVATIVE_HISTORY,
											&pr.counts);
			else
				ns = keyed_capped_apply(values[i], old[i],
										op->builtin_arg > 0 ? op->builtin_arg : KEYED_CAPPED_LIST_CAP);
		}
		else
		{
			LOCAL_FCINFO(fcinfo, 2);
			MemoryContext prev = MemoryContextSwitchTo(callcxt);
			Datum		r;

			InitFunctionCallInfoData(*fcinfo, &flinfo, 2, InvalidOid, NULL, NULL);
			fcinfo->args[0].value = JsonbPGetDatum(values[i]);
			fcinfo->args[0].isnull = false;
			fcinfo->args[1].value = old[i] ? JsonbPGetDatum(old[i]) : (Datum) 0;
			fcinfo->args[1].isnull = (old[i] == NULL);
			r = FunctionCallInvoke(fcinfo);
			MemoryContextSwitchTo(cxt);
			ns = fcinfo->isnull ? NULL : DatumGetJsonbPCopy(r);
			MemoryContextSwitchTo(prev);
			MemoryContextReset(callcxt);
		}
		pr.updates++;
		if (ns != NULL)
		{
			up_keys[nup] = keys[i];
			up_states[nup] = JsonbPGetDatum(ns);
			up_times[nup] = TimestampTzGetDatum(last_et[i]);
			nup++;
			if (old[i] == NULL)
				pr.nkeys++;
		}
		else if (old[i] != NULL)
		{
			del_keys[ndel++] = keys[i];
			pr.nkeys--;
		}
	}
	if (OidIsValid(op->updater))
	{
		AtEOXact_GUC(true, nest);
		SetUserIdAndSecContext(save_uid, save_sec);
	}
	pr.updater_ms = (GetCurrentTimestamp() - loop_start) / 1000.0;

	/* 4. Write the states as the worker. */
	if (nup > 0)
	{
		Oid			types[5] = {INT4OID, TEXTARRAYOID, JSONBARRAYOID, TIMESTAMPTZARRAYOID, INT8OID};
		Datum		args[5];

		args[0] = Int32GetDatum(op->id);
		args[1] = make_array(up_keys, nup, TEXTOID);
		args[2] = make_array(up_states, nup, JSONBOID);
		args[3] = make_array(up_times, nup, TIMESTAMPTZOID);
		args[4] = Int64GetDatum(batch_id);
		op_exec(op, "INSERT INTO anomstream.keyed_state_data AS t"
								  " (op_id, key, state, last_event_time, updated_at, updated_batch)"
								  " SELECT $1, u.k, u.s, u.t, pg_catalog.now(), $5"
								  " FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4)) u(k, s, t)"
								  " ON CONFLICT (op_id, key) DO UPDATE SET state = EXCLUDED.state,"
								  " last_event_time = GREATEST(t.last_event_time, EXCLUDED.last_event_time),"
								  " updated_at = EXCLUDED.updated_at, updated_batch = EXCLUDED.updated_batch",
				5, types, args, SPI_OK_INSERT, "write the state");
	}
	if (ndel > 0)
	{
		Oid			types[2] = {INT4OID, TEXTARRAYOID};
		Datum		args[2];

		args[0] = Int32GetDatum(op->id);
		args[1] = make_array(del_keys, ndel, TEXTOID);
		op_exec(op, "DELETE FROM anomstream.keyed_state_data"
								  " WHERE op_id OPERATOR(pg_catalog.=) $1"
								  " AND key OPERATOR(pg_catalog.=) ANY ($2)",
				2, types, args, SPI_OK_DELETE, "delete state");
	}

bounds:
	/* 5. TTL against the pipeline watermark W. */
	pr.evicted_ttl = evict_ttl(op, watermark);
	pr.nkeys -= pr.evicted_ttl;

	/* 6. The key limit, policy evict_oldest: drop the keys with the oldest events. */
	if (op->max_keys > 0 && !op->skip_new && pr.nkeys > op->max_keys)
	{
		Oid			types[2] = {INT4OID, INT8OID};
		Datum		args[2];

		args[0] = Int32GetDatum(op->id);
		args[1] = Int64GetDatum(pr.nkeys - op->max_keys);
		pr.evicted_limit = (int64) op_exec(op, "DELETE FROM anomstream.keyed_state_data d"
								  " WHERE d.op_id OPERATOR(pg_catalog.=) $1 AND d.key IN"
								  " (SELECT s.key FROM anomstream.keyed_state_data s"
								  " WHERE s.op_id OPERATOR(pg_catalog.=) $1"
								  " ORDER BY s.last_event_time, s.key COLLATE \"C\" LIMIT $2)",
				2, types, args, SPI_OK_DELETE, "evict state");
		pr.nkeys -= pr.evicted_limit;
	}

	/* 7. Progress (an operator without input only records its evictions). */
	if (nkeys == 0)
	{
		Oid			types[3] = {INT4OID, INT8OID, INT8OID};
		Datum		args[3];

		args[0] = Int32GetDatum(op->id);
		args[1] = Int64GetDatum(pr.nkeys);
		args[2] = Int64GetDatum(pr.evicted_ttl);
		if (pr.evicted_ttl > 0)
			op_exec(op, "UPDATE anomstream.keyed_operators SET nkeys = $2,"
					" evicted_ttl = evicted_ttl + $3 WHERE id OPERATOR(pg_catalog.=) $1",
					3, types, args, SPI_OK_UPDATE, "record progress");
	}
	else
	{
		Oid			types[12] = {INT4OID, TIMESTAMPTZOID, INT8OID, INT8OID, INT8OID, INT8OID,
		INT8OID, INT8OID, INT8OID, INT8OID, FLOAT8OID, FLOAT8OID};
		Datum		args[12];

		args[0] = Int32GetDatum(op->id);
		args[1] = TimestampTzGetDatum(pr.max_event_time);
		args[2] = Int64GetDatum(pr.nkeys);
		args[3] = Int64GetDatum(pr.updates);
		args[4] = Int64GetDatum(pr.evicted_ttl);
		args[5] = Int64GetDatum(pr.evicted_limit);
		args[6] = Int64GetDatum(pr.skipped_new);
		args[7] = Int64GetDatum(pr.counts.out_of_order);
		args[8] = Int64GetDatum(pr.counts.invalid);
		args[9] = Int64GetDatum(batch_id);
		args[10] = Float8GetDatum((GetCurrentTimestamp() - pr.started) / 1000.0);
		args[11] = Float8GetDatum(pr.updater_ms);
		op_exec(op, "UPDATE anomstream.keyed_operators SET max_event_time = $2,"
								  " nkeys = $3, batches = batches + 1, updates = updates + $4,"
								  " evicted_ttl = evicted_ttl + $5, evicted_limit = evicted_limit + $6,"
								  " skipped_new = skipped_new + $7, out_of_order = out_of_order + $8,"
								  " invalid_points = invalid_points + $9, last_batch_id = $10,"
								  " busy_ms = busy_ms + $11, updater_ms = updater_ms + $12"
								  " WHERE id OPERATOR(pg_catalog.=) $1",
				12, types, args, SPI_OK_UPDATE, "record progress");
	}
	AtEOXact_GUC(true, outer_nest);
}

/*
 * TTL: delete the operator's keys whose last event_time < W - ttl (as the worker). Returns
 * the number of keys evicted. W = -infinity evicts nothing.
 */
static int64
evict_ttl(KeyedOp *op, TimestampTz watermark)
{
	Oid			types[2] = {INT4OID, TIMESTAMPTZOID};
	Datum		args[2];

	if (!op->has_ttl || TIMESTAMP_IS_NOBEGIN(watermark))
		return 0;
	args[0] = Int32GetDatum(op->id);
	args[1] = TimestampTzGetDatum(watermark);
	return (int64) op_exec(op, "DELETE FROM anomstream.keyed_state_data s"
						   " USING anomstream.keyed_operators o"
						   " WHERE o.id OPERATOR(pg_catalog.=) $1 AND s.op_id OPERATOR(pg_catalog.=) $1"
						   " AND s.last_event_time OPERATOR(pg_catalog.<) ($2 OPERATOR(pg_catalog.-) o.ttl)",
						   2, types, args, SPI_OK_DELETE, "evict state");
}

/*
 * The pipeline watermark moved outside a micro-batch (a tick: a partition became idle):
 * evict by TTL in every enabled operator. Runs in the tick's transaction with SPI
 * connected, as the worker; no user code runs.
 */
void
keyed_state_evict(TimestampTz watermark)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "anomstream keyed eviction",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext outer = MemoryContextSwitchTo(cxt);
	KeyedOp    *ops;
	int			nops = load_operators(&ops);

	for (int i = 0; i < nops; i++)
	{
		int64		evicted = evict_ttl(&ops[i], watermark);
		Oid			types[2] = {INT4OID, INT8OID};
		Datum		args[2];

		if (evicted == 0)
			continue;
		args[0] = Int32GetDatum(ops[i].id);
		args[1] = Int64GetDatum(evicted);
		op_exec(&ops[i], "UPDATE anomstream.keyed_operators SET nkeys = nkeys - $2,"
				" evicted_ttl = evicted_ttl + $2 WHERE id OPERATOR(pg_catalog.=) $1",
				2, types, args, SPI_OK_UPDATE, "record evictions");
	}
	MemoryContextSwitchTo(outer);
	MemoryContextDelete(cxt);
}

void
keyed_state_process_batch(int64 batch_id, PartState *parts, int nparts)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "anomstream keyed state",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext outer = MemoryContextSwitchTo(cxt);
	ResourceOwner owner = CurrentResourceOwner;
	KeyedOp    *ops;
	int			nops;
	char	   *refill[DECODE_NSTREAMS];
	LateRows	late[DECODE_NSTREAMS];
	bool		used[DECODE_NSTREAMS] = {false};
	TimestampTz watermark;

	nops = load_operators(&ops);
	if (nops == 0)
	{
		MemoryContextSwitchTo(outer);
		MemoryContextDelete(cxt);
		return;
	}
	watermark = pipeline_watermark();
	staging_summarize(batch_id);	/* the operators read the batch by batch_id */
	for (int i = 0; i < nops; i++)
		used[ops[i].stream] = true;
	for (int s = 0; s < DECODE_NSTREAMS; s++)
	{
		refill[s] = refill_condition((DecodeStream) s, parts, nparts);
		memset(&late[s], 0, sizeof(LateRows));
		if (used[s])
			late_rows_of_batch((DecodeStream) s, batch_id, parts, nparts, &late[s]);
	}

	for (int i = 0; i < nops; i++)
	{
		KeyedOp    *op = &ops[i];

		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			process_operator(op, batch_id, refill[op->stream], &late[op->stream], watermark);
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
			if (transient_error(edata->sqlerrcode))
				ReThrowError(edata);
			stop_operator(op, edata);
		}
		PG_END_TRY();
	}
	MemoryContextSwitchTo(outer);
	MemoryContextDelete(cxt);
}
