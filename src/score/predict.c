/*-------------------------------------------------------------------------
 *
 * predict.c
 *	  Scoring encoded rows with a loaded model: probability from XGBoost, prediction from it.
 *
 * Invariant: this is the only place that turns a probability into a prediction, for SQL
 * predict, training metrics and the pipeline alike: prediction = (probability >= threshold),
 * computed once from XGBoost's float output widened to float8. (Spark's argmax gave 0 at
 * exactly 0.5; anomstream gives 1.)
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "score/registry.h"

/*
 * Score nrow encoded rows (row-major, width = the model's feature width).
 */
void
model_predict(ScoreModel *m, const float *x, int64 nrow, float8 *probability,
			  int32 *prediction)
{
	booster_predict(m->booster, x, nrow, m->features->width, probability);
	if (prediction == NULL)
		return;
	for (int64 i = 0; i < nrow; i++)
		prediction[i] = (probability[i] >= m->threshold) ? 1 : 0;
}
