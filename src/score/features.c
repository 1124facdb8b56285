/*-------------------------------------------------------------------------
 *
 * features.c
 *	  Feature extraction: from a row to the float vector XGBoost scores.
 *
 * A model lists its features in order; each is a column name or an SQL expression over a row
 * (a staging row in the pipeline). A feature with an entry in the model's encoding is a text
 * feature, encoded as
 *   dictionary  one column: the value's position in the stored list (0, 1, ...);
 *               NULL or a value not in the list is missing (NaN);
 *   one-hot     one column per listed value: 1 for the value, 0 for the others; a value not
 *               in the list gives all 0, NULL gives all NaN.
 * Every other feature is numeric: its value as float4, NULL (and NaN) missing.
 *
 * Invariants: a FeatureProgram is compiled once per (model version, row type) and lives in the
 * model's cache context. A plain column of a supported type is fetched straight from the slot;
 * anything else is parsed as one expression (no subqueries, aggregates, window functions or
 * set-returning functions) with search_path = pg_catalog, coerced to float8 or text and
 * evaluated with an ExprState whose per-row memory is reset after each row. The same code
 * computes the vectors for training, SQL predict and the pipeline, so they always agree.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "parser/parse_coerce.h"
#include "parser/parser.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#include "score/features.h"

/*
 * "numeric", "dictionary" or "onehot" to a kind; ERROR otherwise.
 */
FeatureKind
feature_kind_from_name(const char *name)
{
	if (strcmp(name, "numeric") == 0)
		return FEATURE_NUMERIC;
	if (strcmp(name, "dictionary") == 0)
		return FEATURE_DICTIONARY;
	if (strcmp(name, "onehot") == 0)
		return FEATURE_ONEHOT;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown feature encoding \"%s\"", name),
			 errhint("Use \"dictionary\" or \"onehot\".")));
	return FEATURE_NUMERIC;		/* keep compiler quiet */
}

/*
 * The stored name of a kind.
 */
const char *
feature_kind_name(FeatureKind kind)
{
	switch (kind)
	{
		case FEATURE_DICTIONARY:
			return "dictionary";
		case FEATURE_ONEHOT:
			return "onehot";
		default:
			return "numeric";
	}
}

/*
 * Compute offsets and widths and build each text feature's lookup table.
 */
void
featureset_index(FeatureSet *set)
{
	int			offset = 0;

	for (int i = 0; i < set->nfeatures; i++)
	{
		FeatureSpec *s = &set->specs[i];

		s->offset = offset;
		s->width = (s->kind == FEATURE_ONEHOT) ? s->nvalues : 1;
		if (s->kind == FEATURE_ONEHOT && s->nvalues == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("one-hot feature \"%s\" has no values", s->text)));
		offset += s->width;

		s->tabsize = 0;
		s->tab = NULL;
		if (s->kind == FEATURE_NUMERIC || s->nvalues == 0)
			continue;
		s->tabsize = 8;
		while (s->tabsize < 2 * s->nvalues)
			s->tabsize *= 2;
		s->tab = palloc0(sizeof(int) * s->tabsize);
		for (int v = 0; v < s->nvalues; v++)
		{
			uint32		h = hash_bytes((const unsigned char *) s->values[v], s->lens[v]);
			int			slot = h & (s->tabsize - 1);

			if (feature_lookup(s, s->values[v], s->lens[v]) >= 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("encoding of feature \"%s\" lists \"%s\" twice",
								s->text, s->values[v])));
			while (s->tab[slot] != 0)
				slot = (slot + 1) & (s->tabsize - 1);
			s->tab[slot] = v + 1;
		}
	}
	set->width = offset;
}

/*
 * Position of a text value in a feature's values, or -1.
 */
int
feature_lookup(FeatureSpec *spec, const char *s, int len)
{
	uint32		h;
	int			slot;

	if (spec->tabsize == 0)
		return -1;
	h = hash_bytes((const unsigned char *) s, len);
	slot = h & (spec->tabsize - 1);
	while (spec->tab[slot] != 0)
	{
		int			code = spec->tab[slot] - 1;

		if (spec->lens[code] == len && memcmp(spec->values[code], s, len) == 0)
			return code;
		slot = (slot + 1) & (spec->tabsize - 1);
	}
	return -1;
}

typedef struct FeatureErrorArg
{
	const char *feature;
	const char *sql;			/* "SELECT <feature>", which error positions refer to */
} FeatureErrorArg;

/*
 * Error context while compiling one feature: name it, and point a syntax error's cursor into
 * the feature's text rather than into the statement that caused the compile.
 */
static void
feature_error_callback(void *arg)
{
	FeatureErrorArg *fa = (FeatureErrorArg *) arg;
	int			pos = geterrposition();

	if (pos > 0)
	{
		errposition(0);
		internalerrposition(pos);
		internalerrquery(fa->sql);
	}
	errcontext("feature \"%s\"", fa->feature);
}

/*
 * Parse "SELECT <feature>" and check it is one plain expression; returns the raw statement.
 */
static RawStmt *
parse_feature(const char *sql)
{
	List	   *raw = raw_parser(sql, RAW_PARSE_DEFAULT);
	RawStmt    *rs;
	SelectStmt *s;
	ResTarget  *rt;

	if (list_length(raw) != 1 || !IsA(((RawStmt *) linitial(raw))->stmt, SelectStmt))
		goto bad;
	rs = (RawStmt *) linitial(raw);
	s = (SelectStmt *) rs->stmt;
	if (s->op != SETOP_NONE || s->fromClause || s->whereClause || s->groupClause ||
		s->havingClause || s->windowClause || s->sortClause || s->limitCount ||
		s->limitOffset || s->lockingClause || s->withClause || s->distinctClause ||
		s->valuesLists || s->intoClause || list_length(s->targetList) != 1)
		goto bad;
	rt = (ResTarget *) linitial(s->targetList);
	if (rt->name != NULL)
		goto bad;
	if (IsA(rt->val, ColumnRef) &&
		IsA(llast(((ColumnRef *) rt->val)->fields), A_Star))
		goto bad;
	return rs;

bad:
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("feature must be a column name or a single SQL expression")));
	return NULL;				/* keep compiler quiet */
}

/*
 * The FROM clause that puts the row's columns in scope: (VALUES (NULL::t1, ...)) AS r(c1, ...).
 */
static List *
row_from_clause(TupleDesc desc)
{
	StringInfoData sql;
	List	   *raw;

	if (desc->natts == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot compute features of a row without columns")));
	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT 1 FROM (VALUES (");
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		appendStringInfo(&sql, "%sNULL::%s", i ? ", " : "",
						 a->attisdropped ? "pg_catalog.int4"
						 : format_type_with_typemod(a->atttypid, a->atttypmod));
	}
	appendStringInfoString(&sql, ")) AS r(");
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		if (a->attisdropped)
			appendStringInfo(&sql, "%s\"anomstream dropped %d\"", i ? ", " : "", i + 1);
		else
			appendStringInfo(&sql, "%s%s", i ? ", " : "", quote_identifier(NameStr(a->attname)));
	}
	appendStringInfoString(&sql, ")");
	raw = raw_parser(sql.data, RAW_PARSE_DEFAULT);
	return ((SelectStmt *) ((RawStmt *) linitial(raw))->stmt)->fromClause;
}

/*
 * Is a column of this type fetched directly for this kind of feature?
 */
static bool
fast_path_type(Oid type, FeatureKind kind)
{
	if (kind == FEATURE_NUMERIC)
		return type == INT2OID || type == INT4OID || type == INT8OID ||
			type == FLOAT4OID || type == FLOAT8OID || type == BOOLOID;
	return type == TEXTOID || type == VARCHAROID || type == BPCHAROID;
}

/*
 * Analyze a feature expression over the row and compile it.
 */
static ExprState *
compile_expression(FeatureSpec *spec, RawStmt *rs, const char *sql, List *from)
{
	SelectStmt *s = (SelectStmt *) rs->stmt;
	Query	   *q;
	Node	   *expr;
	Oid			type;
	Oid			target = (spec->kind == FEATURE_NUMERIC) ? FLOAT8OID : TEXTOID;
	char		category;
	bool		preferred;

	s->fromClause = from;
	q = parse_analyze_fixedparams(rs, sql, NULL, 0, NULL);
	if (q->hasSubLinks || q->hasAggs || q->hasWindowFuncs || q->hasTargetSRFs)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("feature expression must not contain subqueries, aggregates, window functions or set-returning functions")));
	expr = (Node *) ((TargetEntry *) linitial(q->targetList))->expr;
	type = exprType(expr);
	get_type_category_preferred(type, &category, &preferred);
	if (spec->kind == FEATURE_NUMERIC && category == TYPCATEGORY_STRING)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("feature \"%s\" is text but the model has no encoding for it", spec->text),
				 errhint("Give the feature a \"dictionary\" or \"onehot\" encoding.")));
	if (spec->kind == FEATURE_NUMERIC && type == BOOLOID)
	{
		expr = coerce_to_target_type(NULL, expr, type, INT4OID, -1,
									 COERCION_EXPLICIT, COERCE_EXPLICIT_CAST, -1);
		type = INT4OID;
	}
	expr = coerce_to_target_type(NULL, expr, type, target, -1,
								 COERCION_EXPLICIT, COERCE_EXPLICIT_CAST, -1);
	if (expr == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("feature \"%s\" has type %s, which cannot be used as %s",
						spec->text, format_type_be(type),
						spec->kind == FEATURE_NUMERIC ? "a number" : "text")));
	return ExecInitExpr(expression_planner((Expr *) expr), NULL);
}

/*
 * Compile the features of a model for rows of type desc, in CurrentMemoryContext.
 */
FeatureProgram *
features_compile(FeatureSet *set, TupleDesc desc, Oid relid)
{
	FeatureProgram *p = palloc0(sizeof(FeatureProgram));
	List	   *from = NIL;
	int			save_nestlevel;
	ErrorContextCallback errcb;
	FeatureErrorArg errarg;

	p->set = set;
	p->typid = desc->tdtypeid;
	p->typmod = desc->tdtypmod;
	p->natts = desc->natts;
	p->relid = relid;
	p->attno = palloc0(sizeof(AttrNumber) * set->nfeatures);
	p->coltype = palloc0(sizeof(Oid) * set->nfeatures);
	p->expr = palloc0(sizeof(ExprState *) * set->nfeatures);

	/* Expressions resolve names the same way in every session. */
	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);

	errcb.callback = feature_error_callback;
	errcb.arg = &errarg;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	for (int i = 0; i < set->nfeatures; i++)
	{
		FeatureSpec *spec = &set->specs[i];
		char	   *sql = psprintf("SELECT %s", spec->text);
		RawStmt    *rs;
		Node	   *val;

		errarg.feature = spec->text;
		errarg.sql = sql;
		rs = parse_feature(sql);
		val = ((ResTarget *) linitial(((SelectStmt *) rs->stmt)->targetList))->val;

		if (IsA(val, ColumnRef) && list_length(((ColumnRef *) val)->fields) == 1)
		{
			const char *name = strVal(linitial(((ColumnRef *) val)->fields));

			for (int a = 0; a < desc->natts; a++)
			{
				Form_pg_attribute att = TupleDescAttr(desc, a);

				if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0 &&
					fast_path_type(att->atttypid, spec->kind))
				{
					p->attno[i] = a + 1;
					p->coltype[i] = att->atttypid;
					p->maxattno = Max(p->maxattno, a + 1);
					break;
				}
			}
		}
		if (p->attno[i] == 0)
		{
			if (from == NIL)
				from = row_from_clause(desc);
			p->expr[i] = compile_expression(spec, rs, sql, copyObject(from));
			if (p->econtext == NULL)
				p->econtext = CreateStandaloneExprContext();
			p->maxattno = desc->natts;
		}
	}

	error_context_stack = errcb.previous;
	AtEOXact_GUC(true, save_nestlevel);
	return p;
}

/*
 * Make sure the slot's columns the program reads are deformed.
 */
static inline void
features_prepare(FeatureProgram *p, TupleTableSlot *slot)
{
	if (p->maxattno > 0)
		slot_getsomeattrs(slot, p->maxattno);
}

/*
 * Value of feature i of the row in slot: a float8 Datum for numeric features, a text Datum
 * for encoded ones. Expression results live until features_reset().
 */
Datum
features_fetch(FeatureProgram *p, int i, TupleTableSlot *slot, bool *isnull)
{
	AttrNumber	a = p->attno[i];
	Datum		d;

	if (i == 0)
		features_prepare(p, slot);
	if (a == 0)
	{
		p->econtext->ecxt_scantuple = slot;
		return ExecEvalExprSwitchContext(p->expr[i], p->econtext, isnull);
	}
	*isnull = slot->tts_isnull[a - 1];
	if (*isnull)
		return (Datum) 0;
	d = slot->tts_values[a - 1];
	switch (p->coltype[i])
	{
		case INT2OID:
			return Float8GetDatum((float8) DatumGetInt16(d));
		case INT4OID:
			return Float8GetDatum((float8) DatumGetInt32(d));
		case INT8OID:
			return Float8GetDatum((float8) DatumGetInt64(d));
		case FLOAT4OID:
			return Float8GetDatum((float8) DatumGetFloat4(d));
		case BOOLOID:
			return Float8GetDatum(DatumGetBool(d) ? 1.0 : 0.0);
		default:
			return d;			/* float8, or text for an encoded feature */
	}
}

/*
 * Free what expressions computed for the last row.
 */
void
features_reset(FeatureProgram *p)
{
	if (p->econtext)
		ResetExprContext(p->econtext);
}

/*
 * Encode one text value (or NULL) of an encoded feature into its columns at dst.
 */
void
features_encode_text(FeatureSpec *spec, const char *s, int len, bool isnull, float *dst)
{
	int			code = isnull ? -1 : feature_lookup(spec, s, len);

	if (spec->kind == FEATURE_DICTIONARY)
	{
		dst[0] = (code >= 0) ? (float) code : NAN;
		return;
	}
	for (int k = 0; k < spec->nvalues; k++)
		dst[k] = isnull ? NAN : (k == code ? 1.0f : 0.0f);
}

/*
 * The encoded feature vector of the row in slot, into out[set->width].
 */
void
features_encode_slot(FeatureProgram *p, TupleTableSlot *slot, float *out)
{
	FeatureSet *set = p->set;

	for (int i = 0; i < set->nfeatures; i++)
	{
		FeatureSpec *spec = &set->specs[i];
		bool		isnull;
		Datum		d = features_fetch(p, i, slot, &isnull);

		if (spec->kind == FEATURE_NUMERIC)
			out[spec->offset] = isnull ? NAN : (float) DatumGetFloat8(d);
		else if (isnull)
			features_encode_text(spec, NULL, 0, true, out + spec->offset);
		else
		{
			text	   *t = DatumGetTextPP(d);

			features_encode_text(spec, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), false,
								 out + spec->offset);
		}
	}
	features_reset(p);
}
