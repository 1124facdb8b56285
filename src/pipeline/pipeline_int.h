/*-------------------------------------------------------------------------
 *
 * pipeline_int.h
 *	  Shared pieces of the pipeline's files: the settings a run uses, the per-partition
 *	  event-time state, and small SPI helpers.
 *
 * Everything here lives in the SPI procedure context of one pipeline call (one micro-batch
 * or one tick) and is gone when it returns; the authoritative state is in tables.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_PIPELINE_INT_H
#define ANOMSTREAM_PIPELINE_INT_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "datatype/timestamp.h"
#include "utils/array.h"

#include "ingest/positions.h"
#include "ingest/staging.h"
#include "pipeline/state_cache.h"

/* The semantic settings a run uses (DESIGN.md §7: equal to anomstream.pipeline_config) */
typedef struct PipelineSettings
{
	int32		window_ms;
	int32		lateness_ms;
	int32		join_bound_ms;
	int32		retention_s;
	Datum		window;			/* the same as interval datums */
	Datum		lateness;
	Datum		join_bound;
	Datum		retention;
} PipelineSettings;

/* Event-time state of one assigned topic-partition */
typedef struct PartWatermark
{
	PartState  *part;			/* the worker's live figures */
	bool		has_max;
	TimestampTz max_event_time; /* largest event_time taken over */
	TimestampTz first_seen_at;
	bool		has_last_data;
	TimestampTz last_data_at;
	bool		idle;
	bool		was_idle;
	bool		dirty;			/* row must be written */
	bool		became_idle;	/* counts an idle timeout */
	int64		rows;			/* this run's additions */
	int64		late_partition;
	int64		late_pipeline;
	int64		from_offset;	/* rows from here on are taken over: the durable position,
								 * or the replay position of a rebuild (rebuild.c) */
} PartWatermark;

/*
 * The batch's non-late attack rows of one stream, as late.c wrote them to the stream's join
 * buffer: per row, values and nulls in the buffer's column order (by-reference values point
 * into the batch's staged slots). join.c and windows.c take the batch's delta from here,
 * never from the buffer.
 */
typedef struct DeltaRows
{
	int			n;
	int			cap;
	Datum	  **values;
	bool	  **nulls;
	int			natts;
	int			att_event_time;	/* 0-based attribute numbers in the buffer */
	int			att_machine;
	int			att_cmd_pid;
	StateEntry **entries;		/* each row's entry in the state copy (state_cache.c) */
	int		   *rowidx;			/* and its index in the entry's rows of the stream */
} DeltaRows;

/* One pipeline call */
typedef struct PipelineRun
{
	int64		batch_id;		/* 0 in a tick */
	PipelineSettings s;
	TimestampTz watermark_old;	/* W before the run */
	TimestampTz watermark_new;	/* W after it */
	int64		held[3];		/* pipeline_state's held_* before the run */
	PartWatermark *pw;
	int			npw;
	TimestampTz now;
	/* what the run did */
	int64		rows;
	int64		late_rows;
	int64		attack_rows[2];
	DeltaRows	delta[2];		/* by stream */
	int64		max_event_time_seen; /* newest event_time of the batch, 0 none */
	bool		has_event_time;
	int64		pairs;
	int64		new_keys;
	int64		windows_changed;
	int64		windows_closed;
	int64		evicted[3];		/* join_process, join_memory, window_keys */
	/* a rebuild replaying (rebuild.c): nothing before these is written; -infinity if not */
	bool		rebuilding;
	TimestampTz gate_windows;	/* potential_attacks rows with window_start >= this */
	TimestampTz gate_pairs;		/* pairs whose later row is at or after this */
	TimestampTz gate_late;		/* late rows at or after this event time */
} PipelineRun;

/* spi_util.c */
extern uint64 pl_exec(const char *sql, int nargs, Oid *types, Datum *values,
					  const char *nulls, int expect);
extern Datum pl_interval_ms(int64 ms);
extern Datum pl_get(int row, int col, bool *isnull);
extern Datum pl_array(Datum *d, bool *nulls, int n, Oid elemtype);
extern Datum pl_int4_array(const int32 *v, int n);
extern Datum pl_int8_array(const int64 *v, int n);
extern Datum pl_timestamptz_array(const TimestampTz *v, const bool *isnull, int n);
extern int	pl_column(TupleDesc desc, const char *name);

/* config.c */
extern bool pipeline_settings_load(PipelineSettings *s, bool raise);

/* watermark.c */
extern void watermark_load(PipelineRun *run, PartState *parts, int nparts);
extern PartWatermark *watermark_find(PipelineRun *run, int stream, int32 partition);
extern bool watermark_advance(PipelineRun *run);
extern void watermark_save(PipelineRun *run);

/* late.c */
extern void late_classify(PipelineRun *run, int stream, const StagedSlots *staged);

/* join.c */
extern void join_emit_pairs(PipelineRun *run);
extern void join_evict(PipelineRun *run);

/* rebuild.c */
extern void rebuild_load(PipelineRun *run);
extern void rebuild_advance(PipelineRun *run);

/* windows.c */
extern void windows_update(PipelineRun *run);
extern void windows_advance(PipelineRun *run);

#endif							/* ANOMSTREAM_PIPELINE_INT_H */
