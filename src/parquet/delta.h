/*-------------------------------------------------------------------------
 *
 * delta.h
 *	  DELTA_BINARY_PACKED and BYTE_STREAM_SPLIT decoders (plain C).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_PARQUET_DELTA_H
#define ANOMSTREAM_PARQUET_DELTA_H

#include "parquet/format.h"

extern const char *pq_delta_decode(const uint8_t *p, size_t len, int64_t *out, size_t n,
								   size_t *used);
extern const char *pq_byte_stream_split_decode(const uint8_t *p, size_t len, size_t width,
											   uint8_t *out, size_t n);

#endif
