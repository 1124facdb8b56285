/*-------------------------------------------------------------------------
 *
 * booster.h
 *	  XGBoost booster and DMatrix handles owned by memory contexts.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_SCORE_BOOSTER_H
#define ANOMSTREAM_SCORE_BOOSTER_H

#include "score/xgb.h"

typedef struct ScoreBooster
{
	BoosterHandle handle;
	int			nfeatures;		/* input width XGBoost expects */
	int			nthread;		/* nthread last set on the handle */
	MemoryContextCallback cb;	/* frees handle when the owning context goes */
} ScoreBooster;

typedef struct ScoreDMatrix
{
	DMatrixHandle handle;
	MemoryContextCallback cb;
} ScoreDMatrix;

extern ScoreBooster *booster_load(const char *bytes, size_t len);
extern ScoreBooster *booster_create(ScoreDMatrix *train);
extern void booster_set_param(ScoreBooster *b, const char *name, const char *value);
extern void booster_update(ScoreBooster *b, int iteration, ScoreDMatrix *train);
extern void booster_predict(ScoreBooster *b, const float *x, int64 nrow, int ncol, float8 *out);
extern bytea *booster_save(ScoreBooster *b, const char *format);
extern char *booster_objective(ScoreBooster *b);
extern void booster_set_attr(ScoreBooster *b, const char *key, const char *value);
extern char *booster_get_attr(ScoreBooster *b, const char *key);
extern int	booster_rounds(ScoreBooster *b);
extern ScoreDMatrix *dmatrix_create(const float *x, int64 nrow, int ncol, const float *label);
extern const char *booster_sniff_format(const char *bytes, size_t len);

#endif							/* ANOMSTREAM_SCORE_BOOSTER_H */
