/*-------------------------------------------------------------------------
 *
 * reformat.h
 *	  atop value strings ("224.2M", "132 K", "0K") to numbers.
 *
 * Plain C (no PostgreSQL calls), so the decoder may use it anywhere and the fuzzer can link it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_REFORMAT_H
#define ANOMSTREAM_REFORMAT_H

#include <stdbool.h>
#include <stddef.h>

extern bool reformat_parse(const char *s, size_t len, double *result);

#endif							/* ANOMSTREAM_REFORMAT_H */
