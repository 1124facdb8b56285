/*-------------------------------------------------------------------------
 *
 * registry.h
 *	  The model registry (anomstream.models, anomstream.active_models) and this backend's
 *	  cache of loaded models.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_SCORE_REGISTRY_H
#define ANOMSTREAM_SCORE_REGISTRY_H

#include "datatype/timestamp.h"

#include "score/booster.h"
#include "score/features.h"

typedef enum ScoreStream
{
	STREAM_NONE = 0,
	STREAM_PROCESS = 1,
	STREAM_MEMORY = 2
} ScoreStream;

#define STREAM_COUNT 3

/* One loaded model version; everything it owns lives in cxt. */
typedef struct ScoreModel
{
	int32		version;		/* anomstream.models.version, unique across names */
	char	   *name;
	ScoreStream stream;
	float8		threshold;
	TimestampTz created_at;		/* tells a reused version number apart */
	FeatureSet *features;
	ScoreBooster *booster;
	List	   *programs;		/* FeatureProgram per row type seen */
	MemoryContext cxt;
	uint64		last_used;
	bool		verified;		/* still in the table since the last invalidation */
} ScoreModel;

/* Changes whenever a cached name->version answer or model pointer may have become stale. */
extern uint64 registry_epoch;

extern ScoreStream stream_from_name(const char *name, bool missing_ok);
extern const char *stream_name(ScoreStream s);
extern ScoreModel *registry_model(int32 version);
extern int32 registry_latest_version(const char *name);
extern int32 registry_active_version(ScoreStream stream);
extern FeatureProgram *registry_program(ScoreModel *m, TupleDesc desc, Oid relid);
extern FeatureSet *featureset_build(int n, Datum *features, Datum *kinds, Datum *values,
									bool *values_null);

/* predict.c: the one place a probability becomes a prediction. */
extern void model_predict(ScoreModel *m, const float *x, int64 nrow, float8 *probability,
						  int32 *prediction);

#endif							/* ANOMSTREAM_SCORE_REGISTRY_H */
