/*-------------------------------------------------------------------------
 *
 * score.h
 *	  The scoring hook the pipeline calls once per micro-batch and stream.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_SCORE_SCORE_H
#define ANOMSTREAM_SCORE_SCORE_H

#include "executor/tuptable.h"
#include "utils/relcache.h"

/*
 * Score n staged rows of one stream in one XGBoost call and fill their prediction,
 * probability and model_version columns in place. slots are virtual slots of the staging
 * relation rel (anomstream.process_events or anomstream.memory_events, or a partition whose
 * name starts with process_ / memory_); feature columns are already filled. Uses the active
 * model for the stream (anomstream.active_model); if the stream has no model, sets the three
 * columns NULL and returns false. Errors (corrupt model, shape mismatch, a failing feature
 * expression) ereport ERROR and abort the caller's micro-batch. Runs in the caller's
 * transaction (reads the registry through SPI when its cache was invalidated); allocations in
 * CurrentMemoryContext (the caller resets it per batch).
 */
extern bool anomstream_score_slots(Relation rel, TupleTableSlot **slots, int nslots);

#endif							/* ANOMSTREAM_SCORE_SCORE_H */
