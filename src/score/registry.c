/*-------------------------------------------------------------------------
 *
 * registry.c
 *	  Reading anomstream.models / anomstream.active_models, and the per-backend model cache.
 *
 * A model version is immutable (a trigger forbids changing what scoring reads) and version
 * numbers come from one sequence, so a cached version stays right until its row is deleted.
 * The cache is a hash table keyed by version, bounded by anomstream.model_cache_size (least
 * recently used versions are evicted; each version's memory context, whose reset callback frees
 * its XGBoost booster, is deleted). Statement triggers on both tables send a relcache
 * invalidation for the table at commit; the callback below only sets flags (it can run inside
 * any lock acquisition), and the next registry call re-reads which version is active and
 * re-checks each cached version once (same created_at) before using it again. So a change
 * committed by any backend is seen at the next transaction (the pipeline: the next micro-batch)
 * without a restart, and a backend sees its own uncommitted changes at once.
 *
 * registry_epoch changes whenever a cached answer (a name's version, a model pointer) may have
 * become stale; SQL functions that remember answers in fn_extra compare it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "guc.h"
#include "score/registry.h"

typedef struct CacheEntry
{
	int32		version;		/* hash key */
	ScoreModel *model;
} CacheEntry;

uint64		registry_epoch = 1;

static HTAB *model_cache = NULL;
static MemoryContext cache_cxt = NULL;
static uint64 use_clock = 0;

static bool registry_stale = true;
static Oid	models_relid = InvalidOid;
static Oid	active_relid = InvalidOid;
static int32 active_version[STREAM_COUNT];
static bool active_known[STREAM_COUNT];

/*
 * 'process' / 'memory' to a stream.
 */
ScoreStream
stream_from_name(const char *name, bool missing_ok)
{
	if (name != NULL && strcmp(name, "process") == 0)
		return STREAM_PROCESS;
	if (name != NULL && strcmp(name, "memory") == 0)
		return STREAM_MEMORY;
	if (!missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown stream \"%s\"", name ? name : ""),
				 errhint("The streams are \"process\" and \"memory\".")));
	return STREAM_NONE;
}

/*
 * A stream's name, or NULL.
 */
const char *
stream_name(ScoreStream s)
{
	return s == STREAM_PROCESS ? "process" : s == STREAM_MEMORY ? "memory" : NULL;
}

/*
 * Relcache invalidation: flag the registry if it concerns our tables (or everything).
 */
static void
registry_relcache_cb(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == models_relid || relid == active_relid)
	{
		registry_stale = true;
		registry_epoch++;
	}
}

/*
 * Set up the cache once per backend.
 */
static void
registry_init(void)
{
	HASHCTL		ctl;

	if (model_cache != NULL)
		return;
	cache_cxt = AllocSetContextCreate(TopMemoryContext, "anomstream model cache",
									  ALLOCSET_SMALL_SIZES);
	ctl.keysize = sizeof(int32);
	ctl.entrysize = sizeof(CacheEntry);
	ctl.hcxt = cache_cxt;
	model_cache = hash_create("anomstream models", 16, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	CacheRegisterRelcacheCallback(registry_relcache_cb, (Datum) 0);
}

/*
 * Drop one version from the cache (its context callback frees the booster).
 */
static void
cache_evict(CacheEntry *e)
{
	MemoryContext cxt = e->model->cxt;

	hash_search(model_cache, &e->version, HASH_REMOVE, NULL);
	MemoryContextDelete(cxt);
	registry_epoch++;
}

/*
 * After an invalidation: find our tables again and distrust what we remember.
 */
static void
registry_refresh(void)
{
	Oid			nsp;
	HASH_SEQ_STATUS seq;
	CacheEntry *e;

	registry_init();
	if (!registry_stale)
		return;
	registry_stale = false;
	nsp = get_namespace_oid("anomstream", true);
	models_relid = OidIsValid(nsp) ? get_relname_relid("models", nsp) : InvalidOid;
	active_relid = OidIsValid(nsp) ? get_relname_relid("active_models", nsp) : InvalidOid;
	if (!OidIsValid(models_relid) || !OidIsValid(active_relid))
	{
		registry_stale = true;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"anomstream\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION anomstream.")));
	}
	for (int s = 0; s < STREAM_COUNT; s++)
		active_known[s] = false;
	hash_seq_init(&seq, model_cache);
	while ((e = hash_seq_search(&seq)) != NULL)
		e->model->verified = false;
}

/*
 * Run a one-parameter query through SPI (caller is connected); returns SPI_processed. Not
 * read-only, so it sees what the current transaction wrote just before (a new version).
 */
static uint64
spi_query(const char *sql, Oid argtype, Datum arg)
{
	int			rc = SPI_execute_with_args(sql, 1, &argtype, &arg, NULL, false, 0);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "anomstream registry query failed: %s", SPI_result_code_string(rc));
	return SPI_processed;
}

/*
 * A FeatureSet from parallel arrays (feature text, kind text, values text[] or NULL), in
 * CurrentMemoryContext.
 */
FeatureSet *
featureset_build(int n, Datum *features, Datum *kinds, Datum *values, bool *values_null)
{
	FeatureSet *set = palloc0(sizeof(FeatureSet));

	set->nfeatures = n;
	set->specs = palloc0(sizeof(FeatureSpec) * n);
	for (int i = 0; i < n; i++)
	{
		FeatureSpec *s = &set->specs[i];

		s->text = TextDatumGetCString(features[i]);
		s->kind = feature_kind_from_name(TextDatumGetCString(kinds[i]));
		if (s->kind != FEATURE_NUMERIC && !values_null[i])
		{
			Datum	   *elems;
			bool	   *nulls;
			int			nelems;

			deconstruct_array(DatumGetArrayTypeP(values[i]), TEXTOID, -1, false, TYPALIGN_INT,
							  &elems, &nulls, &nelems);
			s->nvalues = nelems;
			s->values = palloc(sizeof(char *) * Max(nelems, 1));
			s->lens = palloc(sizeof(int) * Max(nelems, 1));
			for (int v = 0; v < nelems; v++)
			{
				if (nulls[v])
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("encoding of feature \"%s\" lists a NULL value", s->text)));
				s->values[v] = TextDatumGetCString(elems[v]);
				s->lens[v] = strlen(s->values[v]);
			}
		}
	}
	featureset_index(set);
	return set;
}

/*
 * Read one version from the table and load it (caller is connected to SPI). The model is built
 * in a context under parent (the caller's context, which outlives the SPI connection), so an
 * ERROR frees it; the caller moves it into the cache.
 */
static ScoreModel *
load_model(int32 version, MemoryContext parent)
{
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	ScoreModel *m;
	MemoryContext cxt;
	MemoryContext old;
	bytea	   *bytes;
	uint64		n;
	Datum	   *features,
			   *kinds,
			   *values;
	bool	   *values_null;

	if (spi_query("SELECT name, stream, booster, threshold, created_at"
				  " FROM anomstream.models WHERE version OPERATOR(pg_catalog.=) $1",
				  INT4OID, Int32GetDatum(version)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model version %d does not exist", version)));

	cxt = AllocSetContextCreate(parent, "anomstream model",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	m = palloc0(sizeof(ScoreModel));
	m->cxt = cxt;
	m->version = version;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	m->name = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
	{
		Datum		s = SPI_getbinval(tup, desc, 2, &isnull);

		m->stream = isnull ? STREAM_NONE : stream_from_name(TextDatumGetCString(s), true);
	}
	m->threshold = DatumGetFloat8(SPI_getbinval(tup, desc, 4, &isnull));
	m->created_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));
	bytes = DatumGetByteaPP(SPI_getbinval(tup, desc, 3, &isnull));
	m->booster = booster_load(VARDATA_ANY(bytes), VARSIZE_ANY_EXHDR(bytes));
	MemoryContextSwitchTo(old);

	n = spi_query("SELECT f.feature, COALESCE(e.value OPERATOR(pg_catalog.->>) 'kind', 'numeric'),"
				  " CASE WHEN e.value IS NOT NULL THEN ARRAY(SELECT pg_catalog.jsonb_array_elements_text("
				  "   COALESCE(e.value OPERATOR(pg_catalog.->) 'values', '[]'))) END"
				  " FROM anomstream.models m,"
				  " pg_catalog.unnest(m.features) WITH ORDINALITY AS f(feature, ord)"
				  " LEFT JOIN pg_catalog.jsonb_each(m.encoding) AS e"
				  "   ON e.key OPERATOR(pg_catalog.=) f.feature"
				  " WHERE m.version OPERATOR(pg_catalog.=) $1 ORDER BY f.ord",
				  INT4OID, Int32GetDatum(version));
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model version %d has no features", version)));
	old = MemoryContextSwitchTo(cxt);
	features = palloc(sizeof(Datum) * n);
	kinds = palloc(sizeof(Datum) * n);
	values = palloc(sizeof(Datum) * n);
	values_null = palloc(sizeof(bool) * n);
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];

		features[i] = SPI_getbinval(t, SPI_tuptable->tupdesc, 1, &isnull);
		kinds[i] = SPI_getbinval(t, SPI_tuptable->tupdesc, 2, &isnull);
		values[i] = SPI_getbinval(t, SPI_tuptable->tupdesc, 3, &values_null[i]);
	}
	m->features = featureset_build((int) n, features, kinds, values, values_null);
	MemoryContextSwitchTo(old);

	if (m->features->width != m->booster->nfeatures)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("model \"%s\" version %d expects %d input columns but its features give %d",
						m->name, version, m->booster->nfeatures, m->features->width),
				 errdetail("Each numeric or dictionary feature gives one column, each one-hot feature one per value.")));
	m->verified = true;
	return m;
}

/*
 * Make room for one more version: evict least recently used ones beyond the bound.
 */
static void
cache_make_room(void)
{
	while (hash_get_num_entries(model_cache) >= anomstream_model_cache_size)
	{
		HASH_SEQ_STATUS seq;
		CacheEntry *e;
		CacheEntry *oldest = NULL;

		hash_seq_init(&seq, model_cache);
		while ((e = hash_seq_search(&seq)) != NULL)
			if (oldest == NULL || e->model->last_used < oldest->model->last_used)
				oldest = e;
		if (oldest == NULL)
			break;
		cache_evict(oldest);
	}
}

/*
 * The loaded model of a version, from the cache or the table. ERROR if it does not exist or
 * cannot be loaded.
 */
ScoreModel *
registry_model(int32 version)
{
	CacheEntry *e;
	bool		found;
	ScoreModel *m;

	registry_refresh();
	e = hash_search(model_cache, &version, HASH_FIND, NULL);
	if (e != NULL && !e->model->verified)
	{
		bool		same = false;

		SPI_connect();
		if (spi_query("SELECT created_at FROM anomstream.models"
					  " WHERE version OPERATOR(pg_catalog.=) $1",
					  INT4OID, Int32GetDatum(version)) == 1)
		{
			bool		isnull;

			same = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc, 1, &isnull))
				== e->model->created_at;
		}
		SPI_finish();
		if (same)
			e->model->verified = true;
		else
		{
			cache_evict(e);
			e = NULL;
		}
	}
	if (e == NULL)
	{
		MemoryContext caller = CurrentMemoryContext;

		SPI_connect();
		m = load_model(version, caller);
		SPI_finish();
		cache_make_room();
		MemoryContextSetParent(m->cxt, cache_cxt);
		e = hash_search(model_cache, &version, HASH_ENTER, &found);
		e->model = m;
		registry_epoch++;
	}
	e->model->last_used = ++use_clock;
	return e->model;
}

/*
 * The newest version of a named model; ERROR if there is none.
 */
int32
registry_latest_version(const char *name)
{
	int32		version = 0;
	bool		isnull = true;

	registry_refresh();
	SPI_connect();
	if (spi_query("SELECT max(version) FROM anomstream.models WHERE name OPERATOR(pg_catalog.=) $1",
				  TEXTOID, CStringGetTextDatum(name)) == 1)
		version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											  1, &isnull));
	SPI_finish();
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", name)));
	return version;
}

/*
 * The version active for a stream (anomstream.active_model: the activated one, else the newest
 * default), or 0 if the stream has none.
 */
int32
registry_active_version(ScoreStream stream)
{
	registry_refresh();
	if (!active_known[stream])
	{
		int32		version = 0;

		SPI_connect();
		if (spi_query("SELECT version FROM anomstream.active_model"
					  " WHERE stream OPERATOR(pg_catalog.=) $1",
					  TEXTOID, CStringGetTextDatum(stream_name(stream))) == 1)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

			version = isnull ? 0 : DatumGetInt32(d);
		}
		SPI_finish();
		active_version[stream] = version;
		active_known[stream] = true;
	}
	return active_version[stream];
}

/*
 * Does a program compiled for one row layout still fit this one?
 */
static bool
program_fits(FeatureProgram *p, TupleDesc compiled, TupleDesc desc)
{
	if (p->typid != desc->tdtypeid || p->typmod != desc->tdtypmod ||
		compiled->natts != desc->natts)
		return false;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(compiled, i);
		Form_pg_attribute b = TupleDescAttr(desc, i);

		if (a->attisdropped != b->attisdropped || a->atttypid != b->atttypid ||
			strcmp(NameStr(a->attname), NameStr(b->attname)) != 0)
			return false;
	}
	return true;
}

typedef struct ProgramSlot
{
	TupleDesc	desc;			/* copy of the layout compiled against */
	FeatureProgram *program;
} ProgramSlot;

/*
 * The model's feature program for rows of this layout, compiled on first use.
 */
FeatureProgram *
registry_program(ScoreModel *m, TupleDesc desc, Oid relid)
{
	ListCell   *lc;
	ProgramSlot *ps;
	MemoryContext old;
	MemoryContext tmp;

	foreach(lc, m->programs)
	{
		ps = (ProgramSlot *) lfirst(lc);
		if (program_fits(ps->program, ps->desc, desc))
			return ps->program;
	}

	/* Compile in a scratch context first, so an ERROR leaves nothing in the model's. */
	tmp = AllocSetContextCreate(m->cxt, "anomstream feature program", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(tmp);
	PG_TRY();
	{
		ps = palloc(sizeof(ProgramSlot));
		ps->desc = CreateTupleDescCopy(desc);
		ps->desc->tdtypeid = desc->tdtypeid;
		ps->desc->tdtypmod = desc->tdtypmod;
		ps->program = features_compile(m->features, desc, relid);
		if (ps->program->set->width != m->booster->nfeatures)
			elog(ERROR, "feature width changed while compiling");
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(tmp);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(m->cxt);
	m->programs = lappend(m->programs, ps);
	MemoryContextSwitchTo(old);
	return ps->program;
}

PG_FUNCTION_INFO_V1(anomstream_models_changed);

/*
 * Statement trigger on anomstream.models and anomstream.active_models: tell every backend
 * (at commit) and this one (at the next command) that the registry changed.
 */
Datum
anomstream_models_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "anomstream_models_changed: not called as a trigger");
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}
