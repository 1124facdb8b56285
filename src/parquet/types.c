/*-------------------------------------------------------------------------
 *
 * types.c
 *	  PostgreSQL <-> Parquet type mapping: which Parquet column a PostgreSQL
 *	  type becomes and how a Datum is PLAIN-encoded into it (COPY TO), and
 *	  how a Parquet value becomes PostgreSQL binary COPY data (COPY FROM).
 *
 * Writing (the hot path of COPY TO): pq_encode_datum appends one value's
 * PLAIN encoding to a column buffer without allocating, except where the
 * value itself needs it (detoasting, jsonb and unconstrained numeric text,
 * text in a non-UTF-8 database); the caller runs it in a context it resets.
 * Epochs: PostgreSQL counts from 2000-01-01, Parquet from 1970-01-01; dates
 * and timestamps are shifted, and infinite values, which Parquet cannot
 * express, are an error naming the column.
 *
 * Reading: each file field gets a "natural" PostgreSQL type from its physical
 * and logical type; a value becomes a Datum of that type. When the target
 * column has that type, the Datum is sent with the type's binary send
 * function; otherwise it goes through text (the natural type's output
 * function, then the target's input function with its typmod), so any
 * conversion PostgreSQL's text input accepts works, and core COPY FROM then
 * applies the target's binary receive function.
 *
 * docs/parquet.md documents every mapping; keep it in step with this file.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "utils/array.h"
#include "utils/arrayaccess.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/float.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "parquet/types.h"

/* Days and microseconds between 1970-01-01 and 2000-01-01 */
#define EPOCH_DAYS		(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE)
#define EPOCH_USECS		((int64) EPOCH_DAYS * USECS_PER_DAY)

/*
 * The on-disk numeric format (stable since PostgreSQL 9.1; numeric.c keeps
 * it private): a varlena holding a 16-bit header, for the long form a 16-bit
 * weight, then base-10000 digits. The first digit has weight `weight`.
 */
#define NUM_SIGN_MASK		0xC000
#define NUM_NEG				0x4000
#define NUM_SHORT			0x8000
#define NUM_SPECIAL			0xC000
#define NUM_SHORT_SIGN		0x2000
#define NUM_SHORT_WSIGN		0x0040
#define NUM_SHORT_WMASK		0x003F
#define NBASE				10000

typedef __int128 int128_t;

/* ---------- writing ---------- */

static void
set_int_logical(PqColumnSpec *s, int bits)
{
	s->logical.kind = PQ_LT_INTEGER;
	s->logical.bit_width = bits;
	s->logical.is_signed = true;
}

/* Fill spec->kind and the Parquet type for scalar type typid. */
static bool
scalar_spec(Oid typid, int32 typmod, PqColumnSpec *s)
{
	s->converted = PQ_CT_NONE;
	memset(&s->logical, 0, sizeof(s->logical));
	s->type_length = 0;
	switch (typid)
	{
		case BOOLOID:
			s->kind = PK_BOOL;
			s->physical = PQ_BOOLEAN;
			s->order = PO_BOOL;
			return true;
		case INT2OID:
			s->kind = PK_INT2;
			s->physical = PQ_INT32;
			s->converted = PQ_CT_INT_16;
			set_int_logical(s, 16);
			s->order = PO_INT32;
			return true;
		case INT4OID:
			s->kind = PK_INT4;
			s->physical = PQ_INT32;
			s->converted = PQ_CT_INT_32;
			set_int_logical(s, 32);
			s->order = PO_INT32;
			return true;
		case INT8OID:
			s->kind = PK_INT8;
			s->physical = PQ_INT64;
			s->converted = PQ_CT_INT_64;
			set_int_logical(s, 64);
			s->order = PO_INT64;
			return true;
		case FLOAT4OID:
			s->kind = PK_FLOAT4;
			s->physical = PQ_FLOAT;
			s->order = PO_FLOAT;
			return true;
		case FLOAT8OID:
			s->kind = PK_FLOAT8;
			s->physical = PQ_DOUBLE;
			s->order = PO_DOUBLE;
			return true;
		case NUMERICOID:
			{
				int			p = -1,
							sc = 0;

				if (typmod >= (int32) VARHDRSZ)
				{
					p = ((typmod - VARHDRSZ) >> 16) & 0xffff;
					sc = (((typmod - VARHDRSZ) & 0x7ff) ^ 1024) - 1024;
				}
				if (p < 1 || p > 38 || sc < 0 || sc > p)
				{
					/* unconstrained (or negative scale): exact decimal text */
					s->kind = PK_NUMERIC_TEXT;
					s->physical = PQ_BYTE_ARRAY;
					s->converted = PQ_CT_UTF8;
					s->logical.kind = PQ_LT_STRING;
					s->order = PO_BYTES;
					return true;
				}
				s->precision = p;
				s->scale = sc;
				s->converted = PQ_CT_DECIMAL;
				s->logical.kind = PQ_LT_DECIMAL;
				s->logical.precision = p;
				s->logical.scale = sc;
				if (p <= 9)
				{
					s->kind = PK_DECIMAL32;
					s->physical = PQ_INT32;
					s->order = PO_INT32;
				}
				else if (p <= 18)
				{
					s->kind = PK_DECIMAL64;
					s->physical = PQ_INT64;
					s->order = PO_INT64;
				}
				else
				{
					s->kind = PK_DECIMAL128;
					s->physical = PQ_FIXED_LEN_BYTE_ARRAY;
					s->type_length = 16;
					s->order = PO_DECIMAL_BE;
				}
				return true;
			}
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case NAMEOID:
			s->kind = typid == NAMEOID ? PK_NAME : PK_TEXT;
			s->physical = PQ_BYTE_ARRAY;
			s->converted = PQ_CT_UTF8;
			s->logical.kind = PQ_LT_STRING;
			s->order = PO_BYTES;
			return true;
		case JSONOID:
		case JSONBOID:
			s->kind = typid == JSONOID ? PK_TEXT : PK_JSONB;
			s->physical = PQ_BYTE_ARRAY;
			s->converted = PQ_CT_JSON;
			s->logical.kind = PQ_LT_JSON;
			s->order = PO_BYTES;
			return true;
		case BYTEAOID:
			s->kind = PK_BYTEA;
			s->physical = PQ_BYTE_ARRAY;
			s->order = PO_BYTES;
			return true;
		case DATEOID:
			s->kind = PK_DATE;
			s->physical = PQ_INT32;
			s->converted = PQ_CT_DATE;
			s->logical.kind = PQ_LT_DATE;
			s->order = PO_INT32;
			return true;
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			s->kind = typid == TIMESTAMPOID ? PK_TIMESTAMP : PK_TIMESTAMPTZ;
			s->physical = PQ_INT64;
			s->converted = PQ_CT_TIMESTAMP_MICROS;
			s->logical.kind = PQ_LT_TIMESTAMP;
			s->logical.utc = typid == TIMESTAMPTZOID;
			s->logical.unit = PQ_UNIT_MICROS;
			s->order = PO_INT64;
			return true;
		case INTERVALOID:
			s->kind = PK_INTERVAL;
			s->physical = PQ_BYTE_ARRAY;
			s->converted = PQ_CT_UTF8;
			s->logical.kind = PQ_LT_STRING;
			s->order = PO_BYTES;
			return true;
		case UUIDOID:
			s->kind = PK_UUID;
			s->physical = PQ_FIXED_LEN_BYTE_ARRAY;
			s->type_length = 16;
			s->logical.kind = PQ_LT_UUID;
			s->order = PO_BYTES;
			return true;
	}
	return false;
}

/*
 * The Parquet column for a result column of type typid; an unsupported type
 * is an error naming the column.
 */
void
pq_column_spec(const char *name, Oid typid, int32 typmod, PqColumnSpec *spec)
{
	Oid			base = getBaseTypeAndTypmod(typid, &typmod);
	Oid			elem = get_element_type(base);

	memset(spec, 0, sizeof(*spec));
	spec->name = name;
	spec->typid = base;
	spec->is_array = OidIsValid(elem);
	spec->elem_typid = spec->is_array ? getBaseType(elem) : base;
	if (!scalar_spec(spec->elem_typid, spec->is_array ? -1 : typmod, spec) ||
		(spec->is_array && get_typlen(base) != -1))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("column \"%s\" has type %s, which cannot be written to Parquet",
						name, format_type_be(typid)),
				 errhint("Supported types: boolean, smallint, integer, bigint, real, double precision, numeric, text, varchar, char, name, bytea, date, timestamp, timestamptz, interval, uuid, json, jsonb and one-dimensional arrays of these. Cast the column, e.g. to text, in a COPY (query).")));
	get_typlenbyvalalign(spec->elem_typid, &spec->elmlen, &spec->elmbyval, &spec->elmalign);
	spec->need_conversion = GetDatabaseEncoding() != PG_UTF8 &&
		GetDatabaseEncoding() != PG_SQL_ASCII;
}

static void
append_ba(PqBuf *out, const char *p, size_t len)
{
	uint32		l = (uint32) len;

	pq_buf_reserve(out, 4 + len);
	memcpy(out->data + out->len, &l, 4);
	memcpy(out->data + out->len + 4, p, len);
	out->len += 4 + len;
}

static void
append_text(const PqColumnSpec *spec, PqBuf *out, const char *p, size_t len)
{
	if (spec->need_conversion)
	{
		char	   *c = pg_server_to_any(p, (int) len, PG_UTF8);

		if (c != p)
		{
			p = c;
			len = strlen(c);
		}
	}
	append_ba(out, p, len);
}

/* Read a numeric's sign, weight, scale and digits; false for NaN and infinities. */
static bool
numeric_parts(Numeric num, bool *neg, int *weight, const int16 **digits, int *ndigits)
{
	const char *p = VARDATA_ANY(num);
	int			len = VARSIZE_ANY_EXHDR(num);
	uint16		h;

	memcpy(&h, p, 2);
	if ((h & NUM_SIGN_MASK) == NUM_SPECIAL)
		return false;
	if ((h & NUM_SIGN_MASK) == NUM_SHORT)
	{
		*neg = (h & NUM_SHORT_SIGN) != 0;
		*weight = (h & NUM_SHORT_WSIGN) ? (int) ((h & NUM_SHORT_WMASK) | ~NUM_SHORT_WMASK)
			: (int) (h & NUM_SHORT_WMASK);
		*digits = (const int16 *) (p + 2);
		*ndigits = (len - 2) / 2;
	}
	else
	{
		int16		w;

		memcpy(&w, p + 2, 2);
		*neg = (h & NUM_SIGN_MASK) == NUM_NEG;
		*weight = w;
		*digits = (const int16 *) (p + 4);
		*ndigits = (len - 4) / 2;
	}
	return true;
}

/*
 * The numeric as an integer scaled by 10^scale. False if it is not finite
 * or does not fit in 38 digits.
 */
static bool
numeric_unscaled(Numeric num, int scale, int128_t *out)
{
	bool		neg;
	int			weight,
				ndigits;
	const int16 *digits;
	int128_t	v = 0;
	const int128_t max = (int128_t) (((unsigned __int128) 1 << 127) - 1);
	int			frac_digits;

	if (!numeric_parts(num, &neg, &weight, &digits, &ndigits))
		return false;
	/*
	 * Horner over the base-10000 digits down to the group holding 10^-scale;
	 * the last fractional group contributes only its first digits.
	 */
	frac_digits = (scale + 3) / 4;
	for (int i = 0; i <= weight + frac_digits; i++)
	{
		int16		d;
		int			mult = NBASE;

		if (i >= ndigits)
			d = 0;
		else
			memcpy(&d, &digits[i], 2);
		if (i == weight + frac_digits && frac_digits > 0)
		{
			int			drop = 4 * frac_digits - scale;

			for (int k = 0; k < drop; k++)
			{
				d /= 10;
				mult /= 10;
			}
		}
		if (v > (max - d) / mult)
			return false;
		v = v * mult + d;
	}
	*out = neg ? -v : v;
	return true;
}

static void
decimal_error(const PqColumnSpec *spec)
{
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("column \"%s\": numeric value NaN or infinity cannot be written as Parquet DECIMAL(%d,%d)",
					spec->name, spec->precision, spec->scale)));
}

static void
infinite_error(const PqColumnSpec *spec)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
			 errmsg("column \"%s\": infinite %s values cannot be written to Parquet",
					spec->name, format_type_be(spec->elem_typid))));
}

/*
 * Append the PLAIN encoding of scalar d (of spec's scalar type) to out:
 * BYTE_ARRAY values with their 4-byte length, booleans as one byte (the
 * writer packs them into bits).
 */
void
pq_encode_datum(const PqColumnSpec *spec, Datum d, PqBuf *out, StringInfo scratch)
{
	switch (spec->kind)
	{
		case PK_BOOL:
			pq_buf_byte(out, DatumGetBool(d) ? 1 : 0);
			break;
		case PK_INT2:
			{
				int32		v = DatumGetInt16(d);

				pq_buf_append(out, &v, 4);
				break;
			}
		case PK_INT4:
			{
				int32		v = DatumGetInt32(d);

				pq_buf_append(out, &v, 4);
				break;
			}
		case PK_INT8:
			{
				int64		v = DatumGetInt64(d);

				pq_buf_append(out, &v, 8);
				break;
			}
		case PK_FLOAT4:
			{
				float4		v = DatumGetFloat4(d);

				pq_buf_append(out, &v, 4);
				break;
			}
		case PK_FLOAT8:
			{
				float8		v = DatumGetFloat8(d);

				pq_buf_append(out, &v, 8);
				break;
			}
		case PK_DATE:
			{
				DateADT		v = DatumGetDateADT(d);
				int32		u;

				if (DATE_NOT_FINITE(v))
					infinite_error(spec);
				u = v + EPOCH_DAYS;
				pq_buf_append(out, &u, 4);
				break;
			}
		case PK_TIMESTAMP:
		case PK_TIMESTAMPTZ:
			{
				int64		v = DatumGetInt64(d);

				if (TIMESTAMP_NOT_FINITE(v))
					infinite_error(spec);
				v += EPOCH_USECS;
				pq_buf_append(out, &v, 8);
				break;
			}
		case PK_TEXT:
		case PK_BYTEA:
			{
				struct varlena *v = (struct varlena *) DatumGetPointer(d);

				if (VARATT_IS_EXTENDED(v))
					v = pg_detoast_datum_packed(v);
				if (spec->kind == PK_TEXT)
					append_text(spec, out, VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
				else
					append_ba(out, VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
				break;
			}
		case PK_NAME:
			{
				const char *s = NameStr(*DatumGetName(d));

				append_text(spec, out, s, strnlen(s, NAMEDATALEN));
				break;
			}
		case PK_UUID:
			pq_buf_append(out, DatumGetUUIDP(d)->data, UUID_LEN);
			break;
		case PK_INTERVAL:
			{
				struct pg_itm itm;
				char		buf[MAXDATELEN + 1];

				interval2itm(*DatumGetIntervalP(d), &itm);
				EncodeInterval(&itm, INTSTYLE_ISO_8601, buf);
				append_ba(out, buf, strlen(buf));
				break;
			}
		case PK_JSONB:
			{
				Jsonb	   *jb = DatumGetJsonbP(d);

				resetStringInfo(scratch);
				(void) JsonbToCString(scratch, &jb->root, VARSIZE(jb));
				append_text(spec, out, scratch->data, scratch->len);
				break;
			}
		case PK_NUMERIC_TEXT:
			{
				char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, d));

				append_ba(out, s, strlen(s));
				break;
			}
		case PK_DECIMAL32:
		case PK_DECIMAL64:
		case PK_DECIMAL128:
			{
				Numeric		num = (Numeric) DatumGetPointer(d);
				int128_t	v;

				if (VARATT_IS_EXTENDED(num))
					num = (Numeric) pg_detoast_datum_packed((struct varlena *) num);
				if (!numeric_unscaled(num, spec->scale, &v))
					decimal_error(spec);
				if (spec->kind == PK_DECIMAL32)
				{
					int32		x = (int32) v;

					pq_buf_append(out, &x, 4);
				}
				else if (spec->kind == PK_DECIMAL64)
				{
					int64		x = (int64) v;

					pq_buf_append(out, &x, 8);
				}
				else
				{
					uint8		be[16];
					unsigned __int128 u = (unsigned __int128) v;

					for (int i = 15; i >= 0; i--)
					{
						be[i] = (uint8) u;
						u >>= 8;
					}
					pq_buf_append(out, be, 16);
				}
				break;
			}
	}
}

/* Compare two PLAIN values (BYTE_ARRAY values without their length prefix). */
int
pq_compare_plain(PqOrder order, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	switch (order)
	{
		case PO_BOOL:
			return (int) a[0] - (int) b[0];
		case PO_INT32:
			{
				int32		x,
							y;

				memcpy(&x, a, 4);
				memcpy(&y, b, 4);
				return x < y ? -1 : x > y;
			}
		case PO_INT64:
			{
				int64		x,
							y;

				memcpy(&x, a, 8);
				memcpy(&y, b, 8);
				return x < y ? -1 : x > y;
			}
		case PO_FLOAT:
			{
				float4		x,
							y;

				memcpy(&x, a, 4);
				memcpy(&y, b, 4);
				return x < y ? -1 : x > y;
			}
		case PO_DOUBLE:
			{
				float8		x,
							y;

				memcpy(&x, a, 8);
				memcpy(&y, b, 8);
				return x < y ? -1 : x > y;
			}
		case PO_DECIMAL_BE:
			if ((a[0] ^ b[0]) & 0x80)
				return (a[0] & 0x80) ? -1 : 1;
			/* same sign: two's complement compares like unsigned */
			return memcmp(a, b, alen);
		case PO_BYTES:
			{
				int			c = memcmp(a, b, Min(alen, blen));

				if (c != 0)
					return c;
				return alen < blen ? -1 : alen > blen;
			}
	}
	return 0;
}

/* ---------- reading ---------- */

struct PqFieldReader
{
	const PqLeaf *leaf;
	const char *target_name;
	const char *field_name;
	Oid			natural;		/* natural scalar type of the leaf */
	bool		is_list;
	Oid			natural_out;	/* natural type of the whole field (array type for lists) */
	Oid			target;
	int32		target_typmod;
	bool		direct;			/* target == natural_out: send directly */
	FmgrInfo	send;			/* send function of the type sent */
	FmgrInfo	nat_out;		/* natural_out's output function */
	FmgrInfo	tgt_in;			/* target's input function */
	Oid			tgt_ioparam;
	int16		elmlen;
	bool		elmbyval;
	char		elmalign;
	bool		bytes_as_text;	/* unannotated BYTE_ARRAY read into a string column */
	/* list being assembled */
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	int			cap;
};

static bool
is_string_type(Oid t)
{
	return t == TEXTOID || t == VARCHAROID || t == BPCHAROID || t == NAMEOID ||
		t == JSONOID || t == JSONBOID;
}

/* The natural PostgreSQL scalar type of a leaf, or InvalidOid. */
static Oid
natural_type(const PqSchemaElement *el)
{
	const PqLogical *lt = &el->logical;
	int			ct = el->converted_type;

	if (lt->kind == PQ_LT_DECIMAL || ct == PQ_CT_DECIMAL)
		return el->type == PQ_BOOLEAN || el->type == PQ_FLOAT || el->type == PQ_DOUBLE ||
			el->type == PQ_INT96 ? InvalidOid : NUMERICOID;
	switch (el->type)
	{
		case PQ_BOOLEAN:
			return BOOLOID;
		case PQ_INT32:
			if (lt->kind == PQ_LT_DATE || ct == PQ_CT_DATE)
				return DATEOID;
			if (lt->kind == PQ_LT_TIME || ct == PQ_CT_TIME_MILLIS)
				return TIMEOID;
			if (lt->kind == PQ_LT_INTEGER)
			{
				if (!lt->is_signed)
					return lt->bit_width >= 32 ? INT8OID : INT4OID;
				return lt->bit_width <= 16 ? INT2OID : INT4OID;
			}
			if (ct == PQ_CT_INT_8 || ct == PQ_CT_INT_16)
				return INT2OID;
			if (ct == PQ_CT_UINT_32)
				return INT8OID;
			return INT4OID;
		case PQ_INT64:
			if (lt->kind == PQ_LT_TIMESTAMP)
				return lt->utc ? TIMESTAMPTZOID : TIMESTAMPOID;
			if (ct == PQ_CT_TIMESTAMP_MICROS || ct == PQ_CT_TIMESTAMP_MILLIS)
				return TIMESTAMPTZOID;
			if (lt->kind == PQ_LT_TIME || ct == PQ_CT_TIME_MICROS)
				return TIMEOID;
			if ((lt->kind == PQ_LT_INTEGER && !lt->is_signed) || ct == PQ_CT_UINT_64)
				return NUMERICOID;
			return INT8OID;
		case PQ_INT96:
			return TIMESTAMPTZOID;
		case PQ_FLOAT:
			return FLOAT4OID;
		case PQ_DOUBLE:
			return FLOAT8OID;
		case PQ_BYTE_ARRAY:
			if (lt->kind == PQ_LT_STRING || lt->kind == PQ_LT_ENUM || lt->kind == PQ_LT_JSON ||
				ct == PQ_CT_UTF8 || ct == PQ_CT_ENUM || ct == PQ_CT_JSON)
				return TEXTOID;
			return BYTEAOID;
		case PQ_FIXED_LEN_BYTE_ARRAY:
			if (lt->kind == PQ_LT_UUID && el->type_length == 16)
				return UUIDOID;
			if (ct == PQ_CT_INTERVAL && el->type_length == 12)
				return INTERVALOID;
			if (lt->kind == PQ_LT_FLOAT16 && el->type_length == 2)
				return FLOAT4OID;
			if (lt->kind == PQ_LT_STRING || ct == PQ_CT_UTF8)
				return TEXTOID;
			return BYTEAOID;
	}
	return InvalidOid;
}

PqFieldReader *
pq_field_reader(const PqFile *f, const PqField *fd, Oid target_typid, int32 target_typmod,
				const char *target_name)
{
	PqFieldReader *fr = palloc0(sizeof(PqFieldReader));
	Oid			func;
	bool		isvarlena;

	if (fd->unsupported)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("Parquet field \"%s\" cannot be read: %s", fd->name, fd->unsupported)));
	fr->leaf = &f->leaves[fd->leaf];
	fr->field_name = fd->name;
	fr->target_name = target_name;
	fr->natural = natural_type(fr->leaf->el);
	if (!OidIsValid(fr->natural))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("Parquet field \"%s\" has an unsupported type annotation", fd->name)));
	fr->is_list = fd->is_list;
	fr->target = target_typid;
	fr->target_typmod = target_typmod;
	{
		Oid			base = getBaseType(target_typid);
		Oid			tscalar = fr->is_list ? get_element_type(base) : base;

		if (fr->natural == BYTEAOID && fr->leaf->el->type == PQ_BYTE_ARRAY &&
			OidIsValid(tscalar) && is_string_type(getBaseType(tscalar)))
		{
			fr->natural = TEXTOID;
			fr->bytes_as_text = true;
		}
	}
	get_typlenbyvalalign(fr->natural, &fr->elmlen, &fr->elmbyval, &fr->elmalign);
	fr->natural_out = fr->is_list ? get_array_type(fr->natural) : fr->natural;
	if (!OidIsValid(fr->natural_out))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("Parquet field \"%s\": lists of this type are not supported", fd->name)));
	fr->direct = fr->natural_out == target_typid;
	if (fr->direct)
		getTypeBinaryOutputInfo(target_typid, &func, &isvarlena);
	else
	{
		Oid			infunc;

		getTypeOutputInfo(fr->natural_out, &func, &isvarlena);
		fmgr_info(func, &fr->nat_out);
		getTypeInputInfo(target_typid, &infunc, &fr->tgt_ioparam);
		fmgr_info(infunc, &fr->tgt_in);
		getTypeBinaryOutputInfo(target_typid, &func, &isvarlena);
	}
	fmgr_info(func, &fr->send);
	return fr;
}

static void
read_error(PqFieldReader *fr, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_EXCEPTION),
			 errmsg("Parquet field \"%s\": %s", fr->field_name, what)));
}

static int64
le_int(const uint8 *p, int n)
{
	uint64		v = 0;

	for (int i = 0; i < n; i++)
		v |= (uint64) p[i] << (8 * i);
	return (int64) v;
}

/* An unscaled decimal integer and its scale as a numeric Datum. */
static Datum
decimal_datum(PqFieldReader *fr, int128_t v, int scale)
{
	char		buf[64];
	char		digits[48];
	int			n = 0;
	bool		neg = v < 0;
	unsigned __int128 u = neg ? -(unsigned __int128) v : (unsigned __int128) v;
	int			pos = 0;

	if (scale < 0 || scale > 38)
		read_error(fr, "decimal scale out of range");
	do
	{
		digits[n++] = '0' + (int) (u % 10);
		u /= 10;
	} while (u > 0);
	while (n <= scale)
		digits[n++] = '0';
	if (neg)
		buf[pos++] = '-';
	for (int i = n - 1; i >= 0; i--)
	{
		buf[pos++] = digits[i];
		if (i == scale && scale > 0)
			buf[pos++] = '.';
	}
	buf[pos] = '\0';
	return DirectFunctionCall3(numeric_in, CStringGetDatum(buf), ObjectIdGetDatum(InvalidOid),
							   Int32GetDatum(-1));
}

static Datum
timestamp_datum(PqFieldReader *fr, int64 v, int unit)
{
	int64		us;

	if (unit == PQ_UNIT_MILLIS)
	{
		if (pg_mul_s64_overflow(v, 1000, &us))
			read_error(fr, "timestamp out of range");
	}
	else if (unit == PQ_UNIT_NANOS)
		us = v / 1000 - ((v % 1000) < 0 ? 1 : 0);
	else
		us = v;
	if (pg_sub_s64_overflow(us, EPOCH_USECS, &us) || !IS_VALID_TIMESTAMP(us))
		read_error(fr, "timestamp out of range");
	return Int64GetDatum(us);
}

/* The natural Datum of a non-null scalar value. */
static Datum
value_datum(PqFieldReader *fr, const PqValue *v)
{
	const PqSchemaElement *el = fr->leaf->el;

	switch (fr->natural)
	{
		case BOOLOID:
			return BoolGetDatum(v->i != 0);
		case INT2OID:
			if (v->i < PG_INT16_MIN || v->i > PG_INT16_MAX)
				read_error(fr, "value out of range for smallint");
			return Int16GetDatum((int16) v->i);
		case INT4OID:
			if (el->logical.kind == PQ_LT_INTEGER && !el->logical.is_signed)
				return Int32GetDatum((int32) (el->logical.bit_width == 8 ? (uint8) v->i : (uint16) v->i));
			if (el->converted_type == PQ_CT_UINT_8)
				return Int32GetDatum((uint8) v->i);
			if (el->converted_type == PQ_CT_UINT_16)
				return Int32GetDatum((uint16) v->i);
			return Int32GetDatum((int32) v->i);
		case INT8OID:
			if (el->type == PQ_INT32)
				return Int64GetDatum((int64) (uint32) v->i);	/* UINT_32 */
			return Int64GetDatum(v->i);
		case FLOAT4OID:
			if (el->type == PQ_FIXED_LEN_BYTE_ARRAY)
			{
				/* FLOAT16 */
				uint16		h = (uint16) le_int(v->b.ptr, 2);
				int			e = (h >> 10) & 0x1f;
				int			m = h & 0x3ff;
				float4		f;

				if (e == 0)
					f = ldexpf((float4) m, -24);
				else if (e == 31)
					f = m ? get_float4_nan() : get_float4_infinity();
				else
					f = ldexpf((float4) (m | 0x400), e - 25);
				return Float4GetDatum((h & 0x8000) ? -f : f);
			}
			return Float4GetDatum((float4) v->d);
		case FLOAT8OID:
			return Float8GetDatum(v->d);
		case NUMERICOID:
			{
				int			scale = el->logical.kind == PQ_LT_DECIMAL ? el->logical.scale :
					(el->scale >= 0 ? el->scale : 0);
				int128_t	x;

				if (el->type == PQ_INT32 || el->type == PQ_INT64)
				{
					if ((el->logical.kind == PQ_LT_INTEGER && !el->logical.is_signed) ||
						el->converted_type == PQ_CT_UINT_64)
						return decimal_datum(fr, (int128_t) (uint64) v->i, 0);
					return decimal_datum(fr, v->i, scale);
				}
				/* big-endian two's complement bytes */
				if (v->b.len == 0 || v->b.len > 16)
					read_error(fr, "decimal wider than 128 bits");
				x = (v->b.ptr[0] & 0x80) ? -1 : 0;
				for (uint32 i = 0; i < v->b.len; i++)
					x = (int128_t) (((unsigned __int128) x << 8) | v->b.ptr[i]);
				return decimal_datum(fr, x, scale);
			}
		case DATEOID:
			{
				int64		d = v->i - EPOCH_DAYS;

				if (!IS_VALID_DATE(d))
					read_error(fr, "date out of range");
				return DateADTGetDatum((DateADT) d);
			}
		case TIMEOID:
			{
				int64		us = v->i;

				if (el->type == PQ_INT32)
					us *= 1000;
				else if (el->logical.kind == PQ_LT_TIME && el->logical.unit == PQ_UNIT_NANOS)
					us /= 1000;
				if (us < 0 || us > USECS_PER_DAY)
					read_error(fr, "time out of range");
				return TimeADTGetDatum(us);
			}
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			if (el->type == PQ_INT96)
			{
				int64		nanos = le_int(v->b.ptr, 8);
				int64		jd = (int32) le_int(v->b.ptr + 8, 4);

				if (jd < 0 || jd > 5373484 || nanos < 0 || nanos >= USECS_PER_DAY * 1000)
					read_error(fr, "INT96 timestamp out of range");
				return timestamp_datum(fr, (jd - UNIX_EPOCH_JDATE) * USECS_PER_DAY + nanos / 1000,
									   PQ_UNIT_MICROS);
			}
			return timestamp_datum(fr, v->i, el->logical.kind == PQ_LT_TIMESTAMP ? el->logical.unit :
								   el->converted_type == PQ_CT_TIMESTAMP_MILLIS ?
								   PQ_UNIT_MILLIS : PQ_UNIT_MICROS);
		case TEXTOID:
			{
				const char *s = (const char *) v->b.ptr;
				char	   *c = pg_any_to_server(s, (int) v->b.len, PG_UTF8);

				if (c != s)
					return PointerGetDatum(cstring_to_text(c));
				return PointerGetDatum(cstring_to_text_with_len(s, (int) v->b.len));
			}
		case BYTEAOID:
			{
				bytea	   *b = palloc(VARHDRSZ + v->b.len);

				SET_VARSIZE(b, VARHDRSZ + v->b.len);
				memcpy(VARDATA(b), v->b.ptr, v->b.len);
				return PointerGetDatum(b);
			}
		case UUIDOID:
			{
				pg_uuid_t  *u = palloc(sizeof(pg_uuid_t));

				memcpy(u->data, v->b.ptr, UUID_LEN);
				return UUIDPGetDatum(u);
			}
		case INTERVALOID:
			{
				Interval   *iv = palloc(sizeof(Interval));

				iv->month = (int32) (uint32) le_int(v->b.ptr, 4);
				iv->day = (int32) (uint32) le_int(v->b.ptr + 4, 4);
				iv->time = (int64) (uint32) le_int(v->b.ptr + 8, 4) * 1000;
				return IntervalPGetDatum(iv);
			}
	}
	read_error(fr, "unsupported type");
	return (Datum) 0;
}

/* Append a non-null Datum of the field's natural type as binary COPY data. */
static void
send_datum(PqFieldReader *fr, Datum d, StringInfo out)
{
	bytea	   *b;
	uint32		len;

	if (!fr->direct)
	{
		char	   *s = OutputFunctionCall(&fr->nat_out, d);

		d = InputFunctionCall(&fr->tgt_in, s, fr->tgt_ioparam, fr->target_typmod);
	}
	b = SendFunctionCall(&fr->send, d);
	len = pg_hton32(VARSIZE(b) - VARHDRSZ);
	appendBinaryStringInfo(out, (char *) &len, 4);
	appendBinaryStringInfo(out, VARDATA(b), VARSIZE(b) - VARHDRSZ);
}

void
pq_field_value_send(PqFieldReader *fr, const PqValue *v, StringInfo out)
{
	send_datum(fr, value_datum(fr, v), out);
}

void
pq_field_array_begin(PqFieldReader *fr)
{
	fr->nelems = 0;
}

void
pq_field_array_add(PqFieldReader *fr, const PqValue *v, bool isnull)
{
	if (fr->nelems >= fr->cap)
	{
		int			cap = fr->cap ? fr->cap * 2 : 16;

		if (cap > (int) (MaxAllocSize / sizeof(Datum)))
			read_error(fr, "list too long");
		fr->elems = fr->elems ? repalloc(fr->elems, cap * sizeof(Datum)) :
			MemoryContextAlloc(GetMemoryChunkContext(fr), cap * sizeof(Datum));
		fr->nulls = fr->nulls ? repalloc(fr->nulls, cap * sizeof(bool)) :
			MemoryContextAlloc(GetMemoryChunkContext(fr), cap * sizeof(bool));
		fr->cap = cap;
	}
	fr->nulls[fr->nelems] = isnull;
	fr->elems[fr->nelems] = isnull ? (Datum) 0 : value_datum(fr, v);
	fr->nelems++;
}

void
pq_field_array_send(PqFieldReader *fr, bool empty, StringInfo out)
{
	ArrayType  *a;

	if (empty || fr->nelems == 0)
		a = construct_empty_array(fr->natural);
	else
	{
		int			dims[1] = {fr->nelems};
		int			lbs[1] = {1};

		a = construct_md_array(fr->elems, fr->nulls, 1, dims, lbs, fr->natural,
							   fr->elmlen, fr->elmbyval, fr->elmalign);
	}
	send_datum(fr, PointerGetDatum(a), out);
}
