/*-------------------------------------------------------------------------
 *
 * plan_settings.h
 *	  How the worker's per-batch statements are planned.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_PLAN_SETTINGS_H
#define ANOMSTREAM_PLAN_SETTINGS_H

#include "postgres.h"

extern void plan_settings_index_scans(void);
extern int	plan_settings_index_scans_begin(void);
extern int	plan_settings_without_jit_begin(void);

#endif							/* ANOMSTREAM_PLAN_SETTINGS_H */
