/*-------------------------------------------------------------------------
 *
 * features.h
 *	  A model's ordered features, their text encodings, and programs that compute the
 *	  encoded feature vector of a row.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_SCORE_FEATURES_H
#define ANOMSTREAM_SCORE_FEATURES_H

#include "access/tupdesc.h"
#include "executor/tuptable.h"
#include "nodes/execnodes.h"

typedef enum FeatureKind
{
	FEATURE_NUMERIC,			/* one column: the value as a float, NULL = missing */
	FEATURE_DICTIONARY,			/* one column: the value's position in values[], else missing */
	FEATURE_ONEHOT				/* nvalues columns: 1 for the value's position, 0 elsewhere */
} FeatureKind;

typedef struct FeatureSpec
{
	char	   *text;			/* column name or SQL expression, as stored */
	FeatureKind kind;
	int			nvalues;		/* encoded text features: known values, in code order */
	char	  **values;
	int		   *lens;
	int			tabsize;		/* open-addressing lookup: power of two, 0 = none */
	int		   *tab;			/* code + 1, or 0 for an empty slot */
	int			offset;			/* first column of this feature in the encoded vector */
	int			width;			/* columns it takes: 1, or nvalues for one-hot */
} FeatureSpec;

typedef struct FeatureSet
{
	int			nfeatures;
	FeatureSpec *specs;
	int			width;			/* length of the encoded vector */
} FeatureSet;

typedef struct FeatureProgram
{
	FeatureSet *set;
	Oid			typid;			/* row type compiled against (tdtypeid) */
	int32		typmod;
	int			natts;
	Oid			relid;			/* relation of that row type, if any */
	AttrNumber *attno;			/* per feature: column fetched directly, or 0 */
	Oid		   *coltype;		/* per feature: that column's type */
	ExprState **expr;			/* per feature with attno 0: compiled expression */
	ExprContext *econtext;		/* for the expressions, NULL if none */
	AttrNumber	maxattno;		/* columns to deform before fetching */
} FeatureProgram;

extern FeatureKind feature_kind_from_name(const char *name);
extern const char *feature_kind_name(FeatureKind kind);
extern void featureset_index(FeatureSet *set);
extern int	feature_lookup(FeatureSpec *spec, const char *s, int len);
extern FeatureProgram *features_compile(FeatureSet *set, TupleDesc desc, Oid relid);
extern Datum features_fetch(FeatureProgram *p, int i, TupleTableSlot *slot, bool *isnull);
extern void features_reset(FeatureProgram *p);
extern void features_encode_text(FeatureSpec *spec, const char *s, int len, bool isnull, float *dst);
extern void features_encode_slot(FeatureProgram *p, TupleTableSlot *slot, float *out);

#endif							/* ANOMSTREAM_SCORE_FEATURES_H */
