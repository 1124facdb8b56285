/*-------------------------------------------------------------------------
 *
 * thrift.h
 *	  Thrift compact protocol: an encoder into a PqBuf and a bounds-checked
 *	  decoder over a byte range.
 *
 * Plain C (no postgres.h). The decoder never reads outside [p, end), limits
 * nesting to THRIFT_MAX_DEPTH and reports the first problem as a static
 * error string; once an error is set every further call fails.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_PARQUET_THRIFT_H
#define ANOMSTREAM_PARQUET_THRIFT_H

#include "parquet/format.h"

/* Compact protocol type nibbles */
#define TT_STOP			0
#define TT_TRUE			1
#define TT_FALSE		2
#define TT_I8			3
#define TT_I16			4
#define TT_I32			5
#define TT_I64			6
#define TT_DOUBLE		7
#define TT_BINARY		8
#define TT_LIST			9
#define TT_SET			10
#define TT_MAP			11
#define TT_STRUCT		12

#define THRIFT_MAX_DEPTH 32

typedef struct ThriftEnc
{
	PqBuf	   *out;
	int			depth;
	int16_t		last[THRIFT_MAX_DEPTH];
} ThriftEnc;

extern void tenc_init(ThriftEnc *e, PqBuf *out);
extern void tenc_field(ThriftEnc *e, int type, int16_t id);
extern void tenc_i32(ThriftEnc *e, int16_t id, int32_t v);
extern void tenc_i64(ThriftEnc *e, int16_t id, int64_t v);
extern void tenc_bool(ThriftEnc *e, int16_t id, bool v);
extern void tenc_binary(ThriftEnc *e, int16_t id, const void *p, size_t len);
extern void tenc_struct_begin(ThriftEnc *e, int16_t id);
extern void tenc_struct_end(ThriftEnc *e);
extern void tenc_list_begin(ThriftEnc *e, int16_t id, int elem_type, uint32_t n);
extern void tenc_list_i32(ThriftEnc *e, int32_t v);
extern void tenc_list_binary(ThriftEnc *e, const void *p, size_t len);
extern void tenc_list_struct_begin(ThriftEnc *e);

typedef struct ThriftDec
{
	const uint8_t *p;
	const uint8_t *end;
	int			depth;
	const char *err;
} ThriftDec;

extern void tdec_init(ThriftDec *d, const uint8_t *p, size_t len);
extern bool tdec_struct_begin(ThriftDec *d);
extern void tdec_struct_end(ThriftDec *d);
extern bool tdec_field(ThriftDec *d, int16_t *last, int *type, int16_t *id);
extern int32_t tdec_i32(ThriftDec *d, int type);
extern int64_t tdec_i64(ThriftDec *d, int type);
extern bool tdec_bool(ThriftDec *d, int type);
extern PqBytes tdec_binary(ThriftDec *d, int type);
extern uint32_t tdec_list(ThriftDec *d, int type, int *elem_type);
extern bool tdec_list_bool(ThriftDec *d);
extern void tdec_skip(ThriftDec *d, int type);
extern void tdec_fail(ThriftDec *d, const char *err);

#endif
