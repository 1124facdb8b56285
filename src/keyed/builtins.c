/*-------------------------------------------------------------------------
 *
 * builtins.c
 *	  The built-in keyed updaters (DESIGN.md §9): derivative and capped list.
 *
 * Both are defined per point: the state after a sequence of values is the same whether the
 * values arrive in one call or in many, so results never depend on micro-batch boundaries.
 *
 * derivative: values are objects {"x": number, "y": number}; the state is
 *   {"d": [the last `history` dy/dx], "lv": the last point, "out_of_order": n, "invalid": n}
 *   (the two counters only once non-zero). The first point only sets lv. A point with
 *   x = lv.x replaces lv without a derivative; x < lv.x is skipped and counted; a point
 *   without numeric x and y is skipped and counted as invalid. dy/dx is computed in float8
 *   and stored as the shortest decimal that reads back as the same float8, always with a
 *   fraction or exponent (1 -> 1.0), as the write-up's Python floats print.
 *
 * capped list: the state is an array holding the last `cap` values appended.
 *
 * Neither function keeps anything between calls; the result is palloc'd in the caller's
 * memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/shortest_dec.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "keyed/keyed.h"

PG_FUNCTION_INFO_V1(anomstream_derivative_update);
PG_FUNCTION_INFO_V1(anomstream_capped_append);

/* Number of elements of an array (or raw scalar) root; 0 for objects and NULL */
static int
root_elements(Jsonb *j)
{
	if (j == NULL || !JB_ROOT_IS_ARRAY(j))
		return 0;
	return JB_ROOT_COUNT(j);
}

/* The numeric members x and y of a point; false if it is not such an object */
static bool
point_xy(JsonbValue *p, Numeric *x, Numeric *y)
{
	JsonbValue	v;

	if (p->type != jbvBinary || !JsonContainerIsObject(p->val.binary.data))
		return false;
	if (getKeyJsonValueFromContainer(p->val.binary.data, "x", 1, &v) == NULL ||
		v.type != jbvNumeric)
		return false;
	*x = v.val.numeric;
	if (getKeyJsonValueFromContainer(p->val.binary.data, "y", 1, &v) == NULL ||
		v.type != jbvNumeric)
		return false;
	*y = v.val.numeric;
	return true;
}

static double
num_float8(Numeric n)
{
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(n)));
}

/* A counter kept in the state object (0 if absent) */
static int64
state_counter(Jsonb *state, const char *name)
{
	JsonbValue	v;

	if (getKeyJsonValueFromContainer(&state->root, name, strlen(name), &v) == NULL ||
		v.type != jbvNumeric)
		return 0;
	return DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v.val.numeric)));
}

static void
push_key(JsonbParseState **ps, const char *name)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) name;
	k.val.string.len = strlen(name);
	pushJsonbValue(ps, WJB_KEY, &k);
}

static void
push_int8(JsonbParseState **ps, int64 n)
{
	JsonbValue	v;

	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(n);
	pushJsonbValue(ps, WJB_VALUE, &v);
}

/* dy/dx as a numeric that prints like a Python float (1.0, 0.5, 1e-05) */
static Numeric
float8_as_number(double r)
{
	char		buf[DOUBLE_SHORTEST_DECIMAL_LEN + 4];

	double_to_shortest_decimal_buf(r, buf);
	if (strpbrk(buf, ".e") == NULL)
		strcat(buf, ".0");
	return DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(buf),
											   ObjectIdGetDatum(InvalidOid),
											   Int32GetDatum(-1)));
}

/*
 * Apply the points of the array `values` to a derivative state (NULL for a new key).
 * Returns the new state, or `state` itself if no valid point was ever seen.
 */
Jsonb *
keyed_derivative_apply(Jsonb *values, Jsonb *state, int history, KeyedCounts *counts)
{
	int			nvalues = root_elements(values);
	int			nold = 0;
	int			nd = 0;
	JsonbValue *d;
	JsonbValue	lv;
	Numeric		lvx = NULL,
				lvy = NULL;
	bool		have_lv = false;
	int64		ooo = 0,
				invalid = 0,
				new_ooo = 0,
				new_invalid = 0;
	JsonbValue	v;
	JsonbParseState *ps = NULL;
	JsonbValue *res;

	if (state != NULL && JB_ROOT_IS_OBJECT(state))
	{
		if (getKeyJsonValueFromContainer(&state->root, "d", 1, &v) != NULL &&
			v.type == jbvBinary && JsonContainerIsArray(v.val.binary.data))
			nold = JsonContainerSize(v.val.binary.data);
		d = palloc(sizeof(JsonbValue) * (nold + nvalues + 1));
		for (int i = 0; i < nold; i++)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(v.val.binary.data, i);

			if (e != NULL && e->type == jbvNumeric)
				d[nd++] = *e;
		}
		if (getKeyJsonValueFromContainer(&state->root, "lv", 2, &lv) != NULL &&
			point_xy(&lv, &lvx, &lvy))
			have_lv = true;
		ooo = state_counter(state, "out_of_order");
		invalid = state_counter(state, "invalid");
	}
	else
		d = palloc(sizeof(JsonbValue) * (nvalues + 1));

	for (int i = 0; i < nvalues; i++)
	{
		JsonbValue *p = getIthJsonbValueFromContainer(&values->root, i);
		Numeric		x,
					y;
		int			c;
		double		r;

		if (!point_xy(p, &x, &y))
		{
			new_invalid++;
			continue;
		}
		if (have_lv)
		{
			c = DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(x),
												  NumericGetDatum(lvx)));
			if (c < 0)
			{
				new_ooo++;
				continue;
			}
			if (c > 0)
			{
				r = (num_float8(y) - num_float8(lvy)) / (num_float8(x) - num_float8(lvx));
				if (isfinite(r))
				{
					d[nd].type = jbvNumeric;
					d[nd].val.numeric = float8_as_number(r);
					nd++;
				}
				else
					new_invalid++;
			}
		}
		lv = *p;
		lvx = x;
		lvy = y;
		have_lv = true;
	}
	if (counts)
	{
		counts->out_of_order += new_ooo;
		counts->invalid += new_invalid;
	}
	if (!have_lv)
		return state;
	ooo += new_ooo;
	invalid += new_invalid;

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	push_key(&ps, "d");
	pushJsonbValue(&ps, WJB_BEGIN_ARRAY, NULL);
	for (int i = Max(0, nd - history); i < nd; i++)
		pushJsonbValue(&ps, WJB_ELEM, &d[i]);
	pushJsonbValue(&ps, WJB_END_ARRAY, NULL);
	push_key(&ps, "lv");
	pushJsonbValue(&ps, WJB_VALUE, &lv);
	if (ooo > 0)
	{
		push_key(&ps, "out_of_order");
		push_int8(&ps, ooo);
	}
	if (invalid > 0)
	{
		push_key(&ps, "invalid");
		push_int8(&ps, invalid);
	}
	res = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/*
 * Append the elements of `values` to the array `state` (NULL for a new key), keeping the
 * last `cap`. A non-array state counts as empty; NULL if there is nothing at all.
 */
Jsonb *
keyed_capped_apply(Jsonb *values, Jsonb *state, int cap)
{
	int			nold = root_elements(state);
	int			nnew = root_elements(values);
	int			total = nold + nnew;
	JsonbParseState *ps = NULL;
	JsonbValue *res;

	if (values == NULL && state == NULL)
		return NULL;
	pushJsonbValue(&ps, WJB_BEGIN_ARRAY, NULL);
	for (int i = Max(0, total - cap); i < total; i++)
	{
		JsonbValue *e = (i < nold) ? getIthJsonbValueFromContainer(&state->root, i)
			: getIthJsonbValueFromContainer(&values->root, i - nold);

		pushJsonbValue(&ps, WJB_ELEM, e);
	}
	res = pushJsonbValue(&ps, WJB_END_ARRAY, NULL);
	return JsonbValueToJsonb(res);
}

/* A positive bound argument, or the default when NULL */
static int
bound_arg(FunctionCallInfo fcinfo, int argno, int dflt, const char *name)
{
	int			n;

	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return dflt;
	n = PG_GETARG_INT32(argno);
	if (n <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be positive", name)));
	return n;
}

/*
 * anomstream.derivative_update(new_values jsonb, old_state jsonb, history int) -> jsonb
 */
Datum
anomstream_derivative_update(PG_FUNCTION_ARGS)
{
	Jsonb	   *values = PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0);
	Jsonb	   *state = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	int			history = bound_arg(fcinfo, 2, KEYED_DERIVATIVE_HISTORY, "history");
	Jsonb	   *res = keyed_derivative_apply(values, state, history, NULL);

	if (res == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(res);
}

/*
 * anomstream.capped_append(new_values jsonb, old_state jsonb, cap int) -> jsonb
 */
Datum
anomstream_capped_append(PG_FUNCTION_ARGS)
{
	Jsonb	   *values = PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0);
	Jsonb	   *state = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	int			cap = bound_arg(fcinfo, 2, KEYED_CAPPED_LIST_CAP, "cap");
	Jsonb	   *res = keyed_capped_apply(values, state, cap);

	if (res == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(res);
}
