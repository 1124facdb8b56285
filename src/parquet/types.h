/*-------------------------------------------------------------------------
 *
 * types.h
 *	  PostgreSQL type <-> Parquet type mapping (docs/parquet.md has the table).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_PARQUET_TYPES_H
#define ANOMSTREAM_PARQUET_TYPES_H

#include "postgres.h"

#include "lib/stringinfo.h"

#include "parquet/format.h"
#include "parquet/reader.h"

/* How a PostgreSQL scalar is written. */
typedef enum PqKind
{
	PK_BOOL,
	PK_INT2,
	PK_INT4,
	PK_INT8,
	PK_FLOAT4,
	PK_FLOAT8,
	PK_DECIMAL32,				/* numeric(p<=9, s) */
	PK_DECIMAL64,				/* numeric(p<=18, s) */
	PK_DECIMAL128,				/* numeric(p<=38, s): FIXED_LEN_BYTE_ARRAY(16) */
	PK_NUMERIC_TEXT,			/* numeric otherwise: its text */
	PK_TEXT,					/* text, varchar, bpchar, json */
	PK_NAME,
	PK_BYTEA,
	PK_DATE,
	PK_TIMESTAMP,
	PK_TIMESTAMPTZ,
	PK_INTERVAL,				/* ISO 8601 text */
	PK_UUID,
	PK_JSONB
} PqKind;

/* Order used for min/max statistics. */
typedef enum PqOrder
{
	PO_BOOL,
	PO_INT32,
	PO_INT64,
	PO_FLOAT,
	PO_DOUBLE,
	PO_BYTES,					/* unsigned byte-wise */
	PO_DECIMAL_BE				/* signed big-endian two's complement */
} PqOrder;

typedef struct PqColumnSpec
{
	const char *name;
	Oid			typid;			/* the column's type (an array type for lists) */
	bool		is_array;
	Oid			elem_typid;		/* scalar type (the element type for arrays) */
	int16		elmlen;
	bool		elmbyval;
	char		elmalign;
	PqKind		kind;
	int			physical;		/* PQ_* physical type */
	int			type_length;	/* FIXED_LEN_BYTE_ARRAY */
	int			converted;		/* PQ_CT_* */
	PqLogical	logical;
	int			scale;			/* decimals */
	int			precision;
	PqOrder		order;
	bool		need_conversion;	/* text must be converted to UTF-8 */
} PqColumnSpec;

extern void pq_column_spec(const char *name, Oid typid, int32 typmod, PqColumnSpec *spec);
extern void pq_encode_datum(const PqColumnSpec *spec, Datum d, PqBuf *out,
							StringInfo scratch);
extern int	pq_compare_plain(PqOrder order, const uint8_t *a, size_t alen,
							 const uint8_t *b, size_t blen);

/* Reading: how one file field becomes PostgreSQL binary COPY data. */
typedef struct PqFieldReader PqFieldReader;

extern PqFieldReader *pq_field_reader(const PqFile *f, const PqField *fd, Oid target_typid,
									  int32 target_typmod, const char *target_name);
extern void pq_field_value_send(PqFieldReader *fr, const PqValue *v, StringInfo out);
extern void pq_field_array_begin(PqFieldReader *fr);
extern void pq_field_array_add(PqFieldReader *fr, const PqValue *v, bool isnull);
extern void pq_field_array_send(PqFieldReader *fr, bool empty, StringInfo out);

#endif
