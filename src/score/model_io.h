/*-------------------------------------------------------------------------
 *
 * model_io.h
 *	  Storing model versions (import, training) and activating them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_SCORE_MODEL_IO_H
#define ANOMSTREAM_SCORE_MODEL_IO_H

#include "utils/array.h"
#include "utils/jsonb.h"

#include "score/registry.h"

extern int32 import_model_bytes(const char *name, bytea *bytes, ArrayType *features,
								const char *stream, Jsonb *encoding, bool has_threshold,
								float8 threshold, Jsonb *metrics, bool activate,
								const char *origin);
extern Oid	staging_relid(ScoreStream s);
extern void activate_version(const char *name, int32 version);

#endif							/* ANOMSTREAM_SCORE_MODEL_IO_H */
