/*-------------------------------------------------------------------------
 *
 * train.c
 *	  anomstream.train(): XGBoost training inside the backend on the rows of a query.
 *
 * Steps: run the query through an SPI cursor; compute each row's features with the same
 * feature programs scoring uses (text values kept as strings) and its label (0/1; rows with a
 * NULL label are skipped and counted); put each row in the held-out test split when a hash of
 * (seed, row number) falls below test_fraction, so the split is deterministic for a query with
 * a stable order; learn each text feature's values from the training split (most frequent
 * first, then alphabetical; at most 1000 for a dictionary, 64 for one-hot); encode; train with
 * tree_method=hist and anomstream.xgboost_threads threads, checking for interrupts between
 * rounds; score the test split through model_predict() and store AUC, accuracy, precision,
 * recall, F1, the confusion matrix and row counts; store features, encoding, threshold, stream
 * and metrics as attributes inside the booster too, so the exported bytes describe themselves.
 *
 * Invariants: XGBoost handles belong to the function's memory context (an ERROR or cancel
 * frees them); the stored model is inserted through import_model_bytes(), so it passes the same
 * checks as an imported one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "score/model_io.h"
#include "score/registry.h"

PG_FUNCTION_INFO_V1(anomstream_train);

#define DICTIONARY_MAX_VALUES 1000
#define ONEHOT_MAX_VALUES 64
#define FETCH_ROWS 10000

/* Distinct text values of one feature, with how often each occurs in the training split. */
typedef struct Interner
{
	int			n;
	int			cap;
	char	  **s;
	int		   *len;
	int64	   *train_count;
	int			tabsize;
	int		   *tab;			/* id + 1, 0 = empty */
} Interner;

typedef struct TrainParam
{
	char	   *key;
	char	   *value;
} TrainParam;

/*
 * splitmix64: the row-to-split hash.
 */
static inline uint64
mix64(uint64 x)
{
	x += UINT64CONST(0x9E3779B97F4A7C15);
	x = (x ^ (x >> 30)) * UINT64CONST(0xBF58476D1CE4E5B9);
	x = (x ^ (x >> 27)) * UINT64CONST(0x94D049BB133111EB);
	return x ^ (x >> 31);
}

/*
 * Rebuild the interner's hash table at a new size.
 */
static void
interner_rehash(Interner *in, int tabsize)
{
	in->tabsize = tabsize;
	in->tab = palloc0(sizeof(int) * tabsize);
	for (int id = 0; id < in->n; id++)
	{
		int			slot = hash_bytes((const unsigned char *) in->s[id], in->len[id]) & (tabsize - 1);

		while (in->tab[slot] != 0)
			slot = (slot + 1) & (tabsize - 1);
		in->tab[slot] = id + 1;
	}
}

/*
 * The id of a string, adding it if new.
 */
static int
intern(Interner *in, const char *s, int len)
{
	int			slot;

	if (in->tabsize == 0)
		interner_rehash(in, 64);
	slot = hash_bytes((const unsigned char *) s, len) & (in->tabsize - 1);
	while (in->tab[slot] != 0)
	{
		int			id = in->tab[slot] - 1;

		if (in->len[id] == len && memcmp(in->s[id], s, len) == 0)
			return id;
		slot = (slot + 1) & (in->tabsize - 1);
	}
	if (in->n == in->cap)
	{
		in->cap = in->cap ? in->cap * 2 : 64;
		in->s = in->s ? repalloc(in->s, sizeof(char *) * in->cap) : palloc(sizeof(char *) * in->cap);
		in->len = in->len ? repalloc(in->len, sizeof(int) * in->cap) : palloc(sizeof(int) * in->cap);
		in->train_count = in->train_count ? repalloc(in->train_count, sizeof(int64) * in->cap)
			: palloc(sizeof(int64) * in->cap);
	}
	in->s[in->n] = pnstrdup(s, len);
	in->len[in->n] = len;
	in->train_count[in->n] = 0;
	in->tab[slot] = in->n + 1;
	in->n++;
	if (in->n * 2 > in->tabsize)
		interner_rehash(in, in->tabsize * 2);
	return in->n - 1;
}

static Interner *sort_interner;

/*
 * Order of learned values: most frequent in the training split first, then by bytes.
 */
static int
value_order(const void *a, const void *b)
{
	int			x = *(const int *) a;
	int			y = *(const int *) b;
	int64		cx = sort_interner->train_count[x];
	int64		cy = sort_interner->train_count[y];
	int			c;

	if (cx != cy)
		return cx > cy ? -1 : 1;
	c = memcmp(sort_interner->s[x], sort_interner->s[y],
			   Min(sort_interner->len[x], sort_interner->len[y]));
	if (c != 0)
		return c;
	return sort_interner->len[x] - sort_interner->len[y];
}

/*
 * Learn a text feature's values from its interner.
 */
static void
learn_values(FeatureSpec *spec, Interner *in)
{
	int		   *ids = palloc(sizeof(int) * Max(in->n, 1));
	int			n = 0;
	int			max = spec->kind == FEATURE_ONEHOT ? ONEHOT_MAX_VALUES : DICTIONARY_MAX_VALUES;

	for (int id = 0; id < in->n; id++)
		if (in->train_count[id] > 0)
			ids[n++] = id;
	sort_interner = in;
	qsort(ids, n, sizeof(int), value_order);
	n = Min(n, max);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("text feature \"%s\" is NULL in every training row", spec->text)));
	spec->nvalues = n;
	spec->values = palloc(sizeof(char *) * n);
	spec->lens = palloc(sizeof(int) * n);
	for (int i = 0; i < n; i++)
	{
		spec->values[i] = in->s[ids[i]];
		spec->lens[i] = in->len[ids[i]];
	}
}

/*
 * Rows of a two-column query (key, value) over a jsonb argument, copied into cxt; SPI must be
 * connected.
 */
static TrainParam *
jsonb_pairs(const char *sql, Jsonb *arg, int *n, MemoryContext cxt)
{
	Oid			type = JSONBOID;
	Datum		value = PointerGetDatum(arg);
	TrainParam *out;

	if (SPI_execute_with_args(sql, 1, &type, &value, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read jsonb argument");
	*n = (int) SPI_processed;
	out = MemoryContextAlloc(cxt, sizeof(TrainParam) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
	{
		char	   *k = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *v = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);

		out[i].key = MemoryContextStrdup(cxt, k);
		out[i].value = v ? MemoryContextStrdup(cxt, v) : NULL;
	}
	return out;
}

/*
 * Append a double to JSON (null for NaN).
 */
static void
json_number(StringInfo buf, const char *key, double v, bool comma)
{
	if (comma)
		appendStringInfoChar(buf, ',');
	escape_json(buf, key);
	if (isnan(v) || isinf(v))
		appendStringInfoString(buf, ":null");
	else
		appendStringInfo(buf, ":%.6g", v);
}

static const float8 *train_prob_base;

/*
 * Order row indexes by probability.
 */
static int
train_prob_cmp(const void *a, const void *b)
{
	float8		x = train_prob_base[*(const int64 *) a];
	float8		y = train_prob_base[*(const int64 *) b];

	return (x < y) ? -1 : (x > y) ? 1 : 0;
}

/*
 * Area under the ROC curve of probabilities against labels (ties get their average rank);
 * NaN if one class is absent.
 */
static double
roc_auc(const float8 *prob, const float *label, int64 n)
{
	int64	   *order = palloc(sizeof(int64) * Max(n, 1));
	double		rank_sum = 0;
	int64		npos = 0;
	int64		i = 0;

	for (int64 k = 0; k < n; k++)
	{
		order[k] = k;
		if (label[k] > 0.5f)
			npos++;
	}
	if (npos == 0 || npos == n)
		return NAN;
	train_prob_base = prob;
	qsort(order, n, sizeof(int64), train_prob_cmp);
	while (i < n)
	{
		int64		j = i;
		double		avg;

		while (j + 1 < n && prob[order[j + 1]] == prob[order[i]])
			j++;
		avg = (i + j) / 2.0 + 1.0;
		for (int64 k = i; k <= j; k++)
			if (label[order[k]] > 0.5f)
				rank_sum += avg;
		i = j + 1;
	}
	return (rank_sum - (double) npos * (npos + 1) / 2.0) / ((double) npos * (double) (n - npos));
}

/*
 * Grow a huge array to hold at least need elements of size sz.
 */
static void *
grow(void *p, int64 *cap, int64 need, Size sz)
{
	if (need <= *cap)
		return p;
	while (*cap < need)
		*cap = *cap ? *cap * 2 : 4096;
	if (p == NULL)
		return MemoryContextAllocHuge(CurrentMemoryContext, *cap * sz);
	return repalloc_huge(p, *cap * sz);
}

/*
 * anomstream.train(name, query, label, features, params, stream, encoding, test_fraction,
 * threshold, activate) -> (version, metrics)
 */
Datum
anomstream_train(PG_FUNCTION_ARGS)
{
	MemoryContext fn_cxt = CurrentMemoryContext;
	char	   *name;
	char	   *query;
	char	   *label_expr;
	ArrayType  *features_arr;
	Jsonb	   *params_jb;
	char	   *stream = NULL;
	Jsonb	   *encoding_jb;
	double		test_fraction;
	double		threshold;
	bool		activate;
	Datum	   *fdatums;
	bool	   *fnulls;
	int			nf;
	FeatureSet *set;
	FeatureSet *label_set;
	Interner   *interners;
	TrainParam *params;
	int			nparams;
	TrainParam *enc;
	int			nenc;
	int			rounds = 100;
	uint64		seed = 0;
	bool		spw_auto = false;
	SPIPlanPtr	plan;
	Portal		portal;
	float	   *raw = NULL;
	float	   *labels = NULL;
	bool	   *is_test = NULL;
	int64		cap_raw = 0,
				cap_lab = 0,
				cap_test = 0;
	int64		nrows = 0,
				skipped = 0,
				ntrain = 0,
				ntest = 0,
				pos_train = 0,
				pos_test = 0;
	float	   *xtrain,
			   *xtest,
			   *ytrain,
			   *ytest;
	int			width;
	ScoreDMatrix *dtrain;
	ScoreBooster *booster;
	ScoreModel	tmp_model;
	float8	   *prob;
	int32	   *pred;
	int64		tp = 0,
				fp = 0,
				tn = 0,
				fn = 0;
	double		spw = 1.0;
	StringInfoData js,
				mj,
				fj;
	instr_time	t0,
				t1;
	bytea	   *bytes;
	int32		version;
	TupleDesc	rdesc;
	Datum		result[2];
	bool		rnulls[2] = {false, false};
	Jsonb	   *metrics_jb;
	char	   *attr_metrics;

	INSTR_TIME_SET_CURRENT(t0);
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name, query, label and features must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	query = text_to_cstring(PG_GETARG_TEXT_PP(1));
	label_expr = text_to_cstring(PG_GETARG_TEXT_PP(2));
	features_arr = PG_GETARG_ARRAYTYPE_P(3);
	params_jb = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	if (!PG_ARGISNULL(5))
		stream = text_to_cstring(PG_GETARG_TEXT_PP(5));
	encoding_jb = PG_ARGISNULL(6) ? NULL : PG_GETARG_JSONB_P(6);
	test_fraction = PG_ARGISNULL(7) ? 0.2 : PG_GETARG_FLOAT8(7);
	threshold = PG_ARGISNULL(8) ? 0.5 : PG_GETARG_FLOAT8(8);
	activate = !PG_ARGISNULL(9) && PG_GETARG_BOOL(9);

	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model name must not be empty")));
	if (!(test_fraction >= 0.0 && test_fraction <= 0.9))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("test_fraction must be between 0 and 0.9")));
	if (!(threshold >= 0.0 && threshold <= 1.0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("threshold must be between 0 and 1")));
	if (stream)
		(void) stream_from_name(stream, false);
	if (ARR_NDIM(features_arr) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("features must be a non-empty one-dimensional array")));
	deconstruct_array(features_arr, TEXTOID, -1, false, TYPALIGN_INT, &fdatums, &fnulls, &nf);
	for (int i = 0; i < nf; i++)
		if (fnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("features must not contain NULL")));

	/* Feature kinds from the encoding argument: {"feature": "dictionary" | "onehot"}. */
	set = palloc0(sizeof(FeatureSet));
	set->nfeatures = nf;
	set->specs = palloc0(sizeof(FeatureSpec) * nf);
	for (int i = 0; i < nf; i++)
	{
		set->specs[i].text = TextDatumGetCString(fdatums[i]);
		set->specs[i].kind = FEATURE_NUMERIC;
		for (int j = 0; j < i; j++)
			if (strcmp(set->specs[j].text, set->specs[i].text) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("feature \"%s\" is listed twice", set->specs[i].text)));
	}

	SPI_connect();
	nenc = 0;
	enc = NULL;
	if (encoding_jb)
		enc = jsonb_pairs("SELECT key, CASE pg_catalog.jsonb_typeof(value) WHEN 'string'"
						  " THEN value OPERATOR(pg_catalog.#>>) '{}' ELSE NULL END"
						  " FROM pg_catalog.jsonb_each($1)", encoding_jb, &nenc, fn_cxt);
	for (int e = 0; e < nenc; e++)
	{
		bool		found = false;

		if (enc[e].value == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("encoding of feature \"%s\" must be \"dictionary\" or \"onehot\"", enc[e].key)));
		for (int i = 0; i < nf; i++)
			if (strcmp(set->specs[i].text, enc[e].key) == 0)
			{
				set->specs[i].kind = feature_kind_from_name(enc[e].value);
				if (set->specs[i].kind == FEATURE_NUMERIC)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("encoding of feature \"%s\" must be \"dictionary\" or \"onehot\"", enc[e].key)));
				found = true;
			}
		if (!found)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("encoding names \"%s\", which is not one of the features", enc[e].key)));
	}
	nparams = 0;
	params = NULL;
	if (params_jb)
		params = jsonb_pairs("SELECT key, CASE pg_catalog.jsonb_typeof(value)"
							 " WHEN 'string' THEN value OPERATOR(pg_catalog.#>>) '{}'"
							 " WHEN 'number' THEN value::text"
							 " WHEN 'boolean' THEN CASE WHEN value::bool THEN '1' ELSE '0' END"
							 " END FROM pg_catalog.jsonb_each($1)", params_jb, &nparams, fn_cxt);
	for (int i = 0; i < nparams; i++)
	{
		if (params[i].value == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("parameter \"%s\" must be a string, number or boolean", params[i].key)));
		if (strcmp(params[i].key, "num_boost_round") == 0)
		{
			rounds = atoi(params[i].value);
			if (rounds < 1 || rounds > 100000)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("num_boost_round must be between 1 and 100000")));
		}
		else if (strcmp(params[i].key, "seed") == 0)
			seed = (uint64) strtoll(params[i].value, NULL, 10);
		else if (strcmp(params[i].key, "scale_pos_weight") == 0 &&
				 strcmp(params[i].value, "auto") == 0)
			spw_auto = true;
		else if (strcmp(params[i].key, "objective") == 0 &&
				 strcmp(params[i].value, "binary:logistic") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("objective \"%s\" is not supported", params[i].value),
					 errdetail("anomstream trains binary classifiers with objective \"binary:logistic\".")));
	}

	/* One pass over the query: raw features (text as interned ids), label, split. */
	label_set = palloc0(sizeof(FeatureSet));
	label_set->nfeatures = 1;
	label_set->specs = palloc0(sizeof(FeatureSpec));
	label_set->specs[0].text = label_expr;
	featureset_index(label_set);
	interners = palloc0(sizeof(Interner) * nf);

	plan = SPI_prepare(query, 0, NULL);
	if (plan == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("could not prepare the training query: %s", SPI_result_code_string(SPI_result))));
	if (!SPI_is_cursor_plan(plan))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("training query must be a single SELECT (or a statement returning rows)")));
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);
	{
		FeatureProgram *fp = NULL;
		FeatureProgram *lp = NULL;
		TupleTableSlot *slot = NULL;

		for (;;)
		{
			uint64		n;

			CHECK_FOR_INTERRUPTS();
			SPI_cursor_fetch(portal, true, FETCH_ROWS);
			n = SPI_processed;
			if (n == 0)
				break;
			if (fp == NULL)
			{
				MemoryContext old = MemoryContextSwitchTo(fn_cxt);
				TupleDesc	qdesc = CreateTupleDescCopy(SPI_tuptable->tupdesc);

				fp = features_compile(set, qdesc, InvalidOid);
				lp = features_compile(label_set, qdesc, InvalidOid);
				slot = MakeSingleTupleTableSlot(qdesc, &TTSOpsHeapTuple);
				MemoryContextSwitchTo(old);
			}
			for (uint64 r = 0; r < n; r++)
			{
				MemoryContext old;
				bool		isnull;
				Datum		d;
				double		y;
				bool		test;

				ExecStoreHeapTuple(SPI_tuptable->vals[r], slot, false);
				d = features_fetch(lp, 0, slot, &isnull);
				if (isnull)
				{
					skipped++;
					features_reset(lp);
					continue;
				}
				y = DatumGetFloat8(d);
				features_reset(lp);
				if (y != 0.0 && y != 1.0)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("label must be 0 or 1, got %g", y)));
				test = (double) (mix64(seed * UINT64CONST(0x100000001B3) + (uint64) (nrows + skipped)) >> 11)
					* (1.0 / 9007199254740992.0) < test_fraction;

				old = MemoryContextSwitchTo(fn_cxt);
				raw = grow(raw, &cap_raw, (nrows + 1) * nf, sizeof(float));
				labels = grow(labels, &cap_lab, nrows + 1, sizeof(float));
				is_test = grow(is_test, &cap_test, nrows + 1, sizeof(bool));
				for (int i = 0; i < nf; i++)
				{
					float	   *dst = raw + nrows * nf + i;

					d = features_fetch(fp, i, slot, &isnull);
					if (set->specs[i].kind == FEATURE_NUMERIC)
						*dst = isnull ? NAN : (float) DatumGetFloat8(d);
					else if (isnull)
						*dst = NAN;
					else
					{
						text	   *t = DatumGetTextPP(d);
						int			id = intern(&interners[i], VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));

						if (!test)
							interners[i].train_count[id]++;
						*dst = (float) id;
					}
				}
				features_reset(fp);
				MemoryContextSwitchTo(old);
				labels[nrows] = (float) y;
				is_test[nrows] = test;
				if (test)
				{
					ntest++;
					pos_test += (y == 1.0);
				}
				else
				{
					ntrain++;
					pos_train += (y == 1.0);
				}
				nrows++;
			}
			SPI_freetuptable(SPI_tuptable);
		}
	}
	SPI_cursor_close(portal);
	SPI_finish();

	if (ntrain == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("training query returned no rows with a label")));
	if (pos_train == 0 || pos_train == ntrain)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("training rows must include both labels 0 and 1"),
				 errdetail("The training split has %lld rows, %lld of them with label 1.",
						   (long long) ntrain, (long long) pos_train)));

	/* Learn the text encodings from the training split, then encode every row. */
	for (int i = 0; i < nf; i++)
		if (set->specs[i].kind != FEATURE_NUMERIC)
			learn_values(&set->specs[i], &interners[i]);
	featureset_index(set);
	width = set->width;
	xtrain = MemoryContextAllocHuge(fn_cxt, sizeof(float) * ntrain * width);
	xtest = MemoryContextAllocHuge(fn_cxt, sizeof(float) * Max(ntest, 1) * width);
	ytrain = MemoryContextAllocHuge(fn_cxt, sizeof(float) * ntrain);
	ytest = MemoryContextAllocHuge(fn_cxt, sizeof(float) * Max(ntest, 1));
	{
		int64		a = 0,
					b = 0;

		for (int64 r = 0; r < nrows; r++)
		{
			float	   *dst = is_test[r] ? xtest + b * width : xtrain + a * width;

			for (int i = 0; i < nf; i++)
			{
				FeatureSpec *spec = &set->specs[i];
				float		v = raw[r * nf + i];

				if (spec->kind == FEATURE_NUMERIC)
					dst[spec->offset] = v;
				else if (isnan(v))
					features_encode_text(spec, NULL, 0, true, dst + spec->offset);
				else
					features_encode_text(spec, interners[i].s[(int) v], interners[i].len[(int) v],
										 false, dst + spec->offset);
			}
			if (is_test[r])
				ytest[b++] = labels[r];
			else
				ytrain[a++] = labels[r];
		}
	}

	/* Train. */
	dtrain = dmatrix_create(xtrain, ntrain, width, ytrain);
	booster = booster_create(dtrain);
	booster_set_param(booster, "objective", "binary:logistic");
	booster_set_param(booster, "tree_method", "hist");
	booster_set_param(booster, "nthread", psprintf("%d", xgb_threads()));
	booster_set_param(booster, "seed", psprintf("%llu", (unsigned long long) seed));
	if (spw_auto)
	{
		spw = (double) (ntrain - pos_train) / (double) pos_train;
		booster_set_param(booster, "scale_pos_weight", psprintf("%.17g", spw));
	}
	for (int i = 0; i < nparams; i++)
	{
		if (strcmp(params[i].key, "num_boost_round") == 0 ||
			(strcmp(params[i].key, "scale_pos_weight") == 0 && spw_auto))
			continue;
		if (strcmp(params[i].key, "scale_pos_weight") == 0)
			spw = strtod(params[i].value, NULL);
		booster_set_param(booster, params[i].key, params[i].value);
	}
	for (int it = 0; it < rounds; it++)
	{
		CHECK_FOR_INTERRUPTS();
		booster_update(booster, it, dtrain);
	}
	booster->nfeatures = width;
	xgb_flush_log(NOTICE);

	/* Held-out metrics, through the same decision rule scoring uses. */
	memset(&tmp_model, 0, sizeof(tmp_model));
	tmp_model.booster = booster;
	tmp_model.features = set;
	tmp_model.threshold = threshold;
	prob = palloc(sizeof(float8) * Max(ntest, 1));
	pred = palloc(sizeof(int32) * Max(ntest, 1));
	model_predict(&tmp_model, xtest, ntest, prob, pred);
	for (int64 r = 0; r < ntest; r++)
	{
		bool		y = ytest[r] > 0.5f;

		if (pred[r] && y)
			tp++;
		else if (pred[r])
			fp++;
		else if (y)
			fn++;
		else
			tn++;
	}
	INSTR_TIME_SET_CURRENT(t1);
	INSTR_TIME_SUBTRACT(t1, t0);

	initStringInfo(&mj);
	{
		double		precision = (tp + fp) ? (double) tp / (tp + fp) : NAN;
		double		recall = (tp + fn) ? (double) tp / (tp + fn) : NAN;
		double		f1 = (isnan(precision) || isnan(recall) || precision + recall == 0) ? NAN
			: 2 * precision * recall / (precision + recall);

		appendStringInfoChar(&mj, '{');
		json_number(&mj, "auc", ntest ? roc_auc(prob, ytest, ntest) : NAN, false);
		json_number(&mj, "accuracy", ntest ? (double) (tp + tn) / ntest : NAN, true);
		json_number(&mj, "precision", precision, true);
		json_number(&mj, "recall", recall, true);
		json_number(&mj, "f1", f1, true);
		json_number(&mj, "threshold", threshold, true);
		appendStringInfo(&mj, ",\"confusion_matrix\":{\"tp\":%lld,\"fp\":%lld,\"tn\":%lld,\"fn\":%lld}",
						 (long long) tp, (long long) fp, (long long) tn, (long long) fn);
		appendStringInfo(&mj, ",\"rows\":{\"train\":%lld,\"test\":%lld,\"train_positive\":%lld,"
						 "\"test_positive\":%lld,\"skipped_null_label\":%lld}",
						 (long long) ntrain, (long long) ntest, (long long) pos_train,
						 (long long) pos_test, (long long) skipped);
		appendStringInfo(&mj, ",\"rounds\":%d", rounds);
		json_number(&mj, "scale_pos_weight", spw, true);
		json_number(&mj, "test_fraction", test_fraction, true);
	}
	/* The booster carries metrics without the (run-dependent) training time. */
	attr_metrics = psprintf("%s}", mj.data);
	json_number(&mj, "seconds", INSTR_TIME_GET_DOUBLE(t1), true);
	appendStringInfoChar(&mj, '}');

	/* The encoding and the feature list, stored in the table and inside the booster. */
	initStringInfo(&js);
	appendStringInfoChar(&js, '{');
	for (int i = 0, first = 1; i < nf; i++)
	{
		FeatureSpec *spec = &set->specs[i];

		if (spec->kind == FEATURE_NUMERIC)
			continue;
		if (!first)
			appendStringInfoChar(&js, ',');
		first = 0;
		escape_json(&js, spec->text);
		appendStringInfo(&js, ":{\"kind\":\"%s\",\"values\":[", feature_kind_name(spec->kind));
		for (int v = 0; v < spec->nvalues; v++)
		{
			if (v)
				appendStringInfoChar(&js, ',');
			escape_json(&js, spec->values[v]);
		}
		appendStringInfoString(&js, "]}");
	}
	appendStringInfoChar(&js, '}');
	initStringInfo(&fj);
	appendStringInfoChar(&fj, '[');
	for (int i = 0; i < nf; i++)
	{
		if (i)
			appendStringInfoChar(&fj, ',');
		escape_json(&fj, set->specs[i].text);
	}
	appendStringInfoChar(&fj, ']');

	booster_set_attr(booster, "anomstream_features", fj.data);
	booster_set_attr(booster, "anomstream_encoding", js.data);
	booster_set_attr(booster, "anomstream_threshold", psprintf("%.17g", threshold));
	if (stream)
		booster_set_attr(booster, "anomstream_stream", stream);
	booster_set_attr(booster, "anomstream_metrics", attr_metrics);
	bytes = booster_save(booster, "json");

	metrics_jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(mj.data)));
	version = import_model_bytes(name, bytes, features_arr, stream,
								 DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(js.data))),
								 true, threshold, metrics_jb, false, "train");
	if (params_jb)
	{
		Oid			types[2] = {JSONBOID, INT4OID};
		Datum		values[2] = {PointerGetDatum(params_jb), Int32GetDatum(version)};

		SPI_connect();
		if (SPI_execute_with_args("UPDATE anomstream.models SET params = $1"
								  " WHERE version OPERATOR(pg_catalog.=) $2",
								  2, types, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not store training parameters");
		SPI_finish();
	}
	if (activate)
		activate_version(name, version);

	if (get_call_result_type(fcinfo, NULL, &rdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	rdesc = BlessTupleDesc(rdesc);
	result[0] = Int32GetDatum(version);
	result[1] = PointerGetDatum(metrics_jb);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(rdesc, result, rnulls)));
}
