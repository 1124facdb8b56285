/*-------------------------------------------------------------------------
 *
 * pipeline.h
 *	  The continuous pipeline (DESIGN.md §5-§7): watermarks, late rows, potential_attacks
 *	  windows and the detected_attacks interval join, driven by the worker's micro-batches.
 *
 * The worker calls pipeline_process_batch() inside each micro-batch transaction, after the
 * staging rows are inserted (handing over the batch's scored rows, one StagedSlots per
 * stream) and before the positions move, and pipeline_tick() when a
 * trigger interval passed without messages (idle partitions, closing windows).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_PIPELINE_H
#define ANOMSTREAM_PIPELINE_H

#include "postgres.h"

#include "ingest/positions.h"
#include "ingest/staging.h"

extern void pipeline_process_batch(int64 batch_id, PartState *parts, int nparts,
								   const StagedSlots *staged);
extern void pipeline_tick(PartState *parts, int nparts);

#endif							/* ANOMSTREAM_PIPELINE_H */
