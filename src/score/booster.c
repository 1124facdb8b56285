/*-------------------------------------------------------------------------
 *
 * booster.c
 *	  Lifecycle of XGBoost handles, and the calls made on them.
 *
 * Invariants: every BoosterHandle and DMatrixHandle is wrapped in a struct palloc'd in the
 * context that owns it, with a reset callback that frees the handle, so an ERROR (which resets
 * or deletes the context) leaks nothing. XGBoost-owned output buffers are copied before the
 * next XGBoost call. A booster's nthread follows anomstream.xgboost_threads before each
 * prediction or training round; calls that may start threads run between xgb_enter/xgb_leave.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "score/booster.h"

/* In-place prediction config: values, all trees, NaN is missing; cache_id is required by 1.7. */
static const char predict_config[] =
"{\"type\":0,\"training\":false,\"iteration_begin\":0,\"iteration_end\":0,"
"\"strict_shape\":false,\"cache_id\":0,\"missing\":NaN}";

/*
 * Reset callback: free the booster handle.
 */
static void
booster_free_cb(void *arg)
{
	ScoreBooster *b = (ScoreBooster *) arg;

	if (b->handle != NULL)
		XGB(XGBoosterFree) (b->handle);
	b->handle = NULL;
}

/*
 * Reset callback: free the DMatrix handle.
 */
static void
dmatrix_free_cb(void *arg)
{
	ScoreDMatrix *d = (ScoreDMatrix *) arg;

	if (d->handle != NULL)
		XGB(XGDMatrixFree) (d->handle);
	d->handle = NULL;
}

/*
 * Wrap a fresh handle in CurrentMemoryContext.
 */
static ScoreBooster *
booster_wrap(BoosterHandle h)
{
	ScoreBooster *b = palloc0(sizeof(ScoreBooster));

	b->handle = h;
	b->nthread = -1;
	b->cb.func = booster_free_cb;
	b->cb.arg = b;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &b->cb);
	return b;
}

/*
 * Which serialisation the bytes are: "json", "ubj", or NULL for anything else.
 */
const char *
booster_sniff_format(const char *bytes, size_t len)
{
	size_t		i = 0;

	while (i < len && isspace((unsigned char) bytes[i]))
		i++;
	if (i + 1 >= len || bytes[i] != '{')
		return NULL;
	i++;
	if (bytes[i] == 'L' || bytes[i] == 'l' || bytes[i] == 'i' || bytes[i] == 'U' ||
		bytes[i] == 'I' || bytes[i] == '$' || bytes[i] == '#')
		return "ubj";
	while (i < len && isspace((unsigned char) bytes[i]))
		i++;
	if (i < len && bytes[i] == '"')
		return "json";
	return NULL;
}

/*
 * Apply anomstream.xgboost_threads to the booster if it changed since the last call.
 */
static void
booster_sync_threads(ScoreBooster *b)
{
	int			n = xgb_threads();
	char		buf[16];

	if (b->nthread == n)
		return;
	snprintf(buf, sizeof(buf), "%d", n);
	xgb_check(XGB(XGBoosterSetParam) (b->handle, "nthread", buf),
			  ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, "could not set XGBoost's thread count");
	b->nthread = n;
}

/*
 * Load a model from JSON or UBJSON bytes into a new booster owned by CurrentMemoryContext.
 */
ScoreBooster *
booster_load(const char *bytes, size_t len)
{
	BoosterHandle h = NULL;
	ScoreBooster *b;
	bst_ulong	nf = 0;

	xgb_load();
	if (booster_sniff_format(bytes, len) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model bytes are neither XGBoost JSON nor UBJSON"),
				 errhint("Save the model with XGBoost's save_model to a file ending in .json or .ubj.")));

	xgb_check(XGB(XGBoosterCreate) (NULL, 0, &h),
			  ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, "could not create an XGBoost booster");
	b = booster_wrap(h);
	xgb_check(XGB(XGBoosterLoadModelFromBuffer) (h, bytes, len),
			  ERRCODE_INVALID_PARAMETER_VALUE, "could not load the XGBoost model");
	booster_sync_threads(b);
	xgb_check(XGB(XGBoosterGetNumFeature) (h, &nf),
			  ERRCODE_INVALID_PARAMETER_VALUE, "could not read the XGBoost model's number of features");
	if (nf == 0 || nf > 100000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("XGBoost model has %lu input features", (unsigned long) nf),
				 errdetail("A model must have between 1 and 100000 features.")));
	b->nfeatures = (int) nf;
	return b;
}

/*
 * A booster to train on one DMatrix, owned by CurrentMemoryContext.
 */
ScoreBooster *
booster_create(ScoreDMatrix *train)
{
	BoosterHandle h = NULL;
	ScoreBooster *b;

	xgb_check(XGB(XGBoosterCreate) (&train->handle, 1, &h),
			  ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, "could not create an XGBoost booster");
	b = booster_wrap(h);
	booster_sync_threads(b);
	return b;
}

/*
 * Set one training parameter; XGBoost's refusal is the user's error.
 */
void
booster_set_param(ScoreBooster *b, const char *name, const char *value)
{
	int			rc = XGB(XGBoosterSetParam) (b->handle, name, value);

	if (rc != 0)
		xgb_check(rc, ERRCODE_INVALID_PARAMETER_VALUE,
				  psprintf("XGBoost rejected parameter \"%s\" = \"%s\"", name, value));
	if (strcmp(name, "nthread") == 0)
		b->nthread = atoi(value);
}

/*
 * One boosting round.
 */
void
booster_update(ScoreBooster *b, int iteration, ScoreDMatrix *train)
{
	int			rc;

	xgb_enter(b->nthread);
	rc = XGB(XGBoosterUpdateOneIter) (b->handle, iteration, train->handle);
	xgb_leave();
	xgb_check(rc, ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, "XGBoost training failed");
}

/*
 * Probabilities of nrow rows of ncol floats (row-major, NaN = missing) into out.
 */
void
booster_predict(ScoreBooster *b, const float *x, int64 nrow, int ncol, float8 *out)
{
	char		iface[160];
	bst_ulong const *shape = NULL;
	bst_ulong	dim = 0;
	const float *res = NULL;
	DMatrixHandle proxy = xgb_proxy();
	int			rc;

	if (nrow <= 0)
		return;
	if (ncol != b->nfeatures)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("feature vector has %d values but the model expects %d", ncol, b->nfeatures)));
	booster_sync_threads(b);
	snprintf(iface, sizeof(iface),
			 "{\"data\":[%lu,true],\"shape\":[%lld,%d],\"typestr\":\"<f4\",\"version\":3}",
			 (unsigned long) (uintptr_t) x, (long long) nrow, ncol);
	xgb_enter(b->nthread);
	rc = XGB(XGBoosterPredictFromDense) (b->handle, iface, predict_config, proxy,
										 &shape, &dim, &res);
	xgb_leave();
	xgb_check(rc, ERRCODE_DATA_EXCEPTION, "XGBoost prediction failed");
	if (dim < 1 || shape[0] != (bst_ulong) nrow || (dim == 2 && shape[1] != 1) || dim > 2)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("XGBoost model returns more than one value per row"),
				 errdetail("anomstream needs a binary classifier with one probability per row.")));
	for (int64 i = 0; i < nrow; i++)
		out[i] = (float8) res[i];
}

/*
 * The model as bytes, "json" or "ubj".
 */
bytea *
booster_save(ScoreBooster *b, const char *format)
{
	char		config[32];
	bst_ulong	len = 0;
	const char *ptr = NULL;
	bytea	   *result;

	snprintf(config, sizeof(config), "{\"format\":\"%s\"}", format);
	xgb_check(XGB(XGBoosterSaveModelToBuffer) (b->handle, config, &len, &ptr),
			  ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, "could not serialise the XGBoost model");
	result = palloc(VARHDRSZ + len);
	SET_VARSIZE(result, VARHDRSZ + len);
	memcpy(VARDATA(result), ptr, len);
	return result;
}

/*
 * The model's objective name (learner.objective.name of its JSON configuration).
 */
char *
booster_objective(ScoreBooster *b)
{
	bst_ulong	len = 0;
	const char *cfg = NULL;
	Jsonb	   *jb;
	JsonbValue *v;
	JsonbValue	vbuf;
	const char *path[] = {"learner", "objective", "name"};
	JsonbContainer *c;

	xgb_check(XGB(XGBoosterSaveJsonConfig) (b->handle, &len, &cfg),
			  ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, "could not read the XGBoost model's configuration");
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(pnstrdup(cfg, len))));
	c = &jb->root;
	for (int i = 0; i < 3; i++)
	{
		v = getKeyJsonValueFromContainer(c, path[i], strlen(path[i]), &vbuf);
		if (v == NULL)
			return pstrdup("unknown");
		if (i < 2)
		{
			if (v->type != jbvBinary)
				return pstrdup("unknown");
			c = v->val.binary.data;
		}
	}
	if (v->type != jbvString)
		return pstrdup("unknown");
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * Store a string attribute inside the model (it travels with the bytes).
 */
void
booster_set_attr(ScoreBooster *b, const char *key, const char *value)
{
	xgb_check(XGB(XGBoosterSetAttr) (b->handle, key, value),
			  ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, "could not set an XGBoost model attribute");
}

/*
 * A string attribute of the model, or NULL.
 */
char *
booster_get_attr(ScoreBooster *b, const char *key)
{
	const char *out = NULL;
	int			success = 0;

	xgb_check(XGB(XGBoosterGetAttr) (b->handle, key, &out, &success),
			  ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, "could not read an XGBoost model attribute");
	return success ? pstrdup(out) : NULL;
}

/*
 * Boosting rounds in the model.
 */
int
booster_rounds(ScoreBooster *b)
{
	int			n = 0;

	xgb_check(XGB(XGBoosterBoostedRounds) (b->handle, &n),
			  ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, "could not read the XGBoost model's rounds");
	return n;
}

/*
 * A training matrix (row-major floats, NaN = missing) with labels, owned by CurrentMemoryContext.
 */
ScoreDMatrix *
dmatrix_create(const float *x, int64 nrow, int ncol, const float *label)
{
	ScoreDMatrix *d;
	DMatrixHandle h = NULL;

	xgb_load();
	xgb_check(XGB(XGDMatrixCreateFromMat) (x, nrow, ncol, NAN, &h),
			  ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, "could not build the XGBoost training matrix");
	d = palloc0(sizeof(ScoreDMatrix));
	d->handle = h;
	d->cb.func = dmatrix_free_cb;
	d->cb.arg = d;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &d->cb);
	if (label)
		xgb_check(XGB(XGDMatrixSetFloatInfo) (h, "label", label, nrow),
				  ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, "could not set the training labels");
	return d;
}
