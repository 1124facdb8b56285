/*-------------------------------------------------------------------------
 *
 * thrift.c
 *	  Thrift compact protocol encoder and decoder (the Parquet footer and page
 *	  headers are Thrift compact structs).
 *
 * Encoding rules: integers are zigzag varints (i8 is one raw byte), a field
 * header is one byte (delta << 4 | type) when the id grows by 1..15 since
 * the previous field of the same struct and otherwise a type byte followed by
 * a zigzag varint id; booleans live in the field header; a struct ends with a
 * STOP byte; a list header is (size << 4 | type), or 0xF0 | type followed by a
 * varint size when size > 14. Each struct keeps its own "last field id", so
 * the encoder and decoder keep one per nesting level.
 *
 * Decoder invariants: every read is checked against the end of the input, a
 * varint is at most 10 bytes, nesting is bounded by THRIFT_MAX_DEPTH (so a
 * hostile file cannot exhaust the stack while skipping), and a list's element
 * count is checked against the bytes left before any caller allocates for it
 * (each element takes at least one byte, except bools packed in nothing,
 * which this format never has).
 *
 *-------------------------------------------------------------------------
 */
#include "parquet/thrift.h"

/* ---------- encoder ---------- */

void
tenc_init(ThriftEnc *e, PqBuf *out)
{
	e->out = out;
	e->depth = 0;
	e->last[0] = 0;
}

static void
tenc_varint(ThriftEnc *e, int64_t v)
{
	pq_buf_uleb(e->out, ((uint64_t) v << 1) ^ (uint64_t) (v >> 63));
}

/* Write a field header for field id of the given compact type. */
void
tenc_field(ThriftEnc *e, int type, int16_t id)
{
	int			delta = id - e->last[e->depth];

	if (delta > 0 && delta <= 15)
		pq_buf_byte(e->out, (uint8_t) ((delta << 4) | type));
	else
	{
		pq_buf_byte(e->out, (uint8_t) type);
		tenc_varint(e, id);
	}
	e->last[e->depth] = id;
}

void
tenc_i32(ThriftEnc *e, int16_t id, int32_t v)
{
	tenc_field(e, TT_I32, id);
	tenc_varint(e, v);
}

void
tenc_i64(ThriftEnc *e, int16_t id, int64_t v)
{
	tenc_field(e, TT_I64, id);
	tenc_varint(e, v);
}

void
tenc_bool(ThriftEnc *e, int16_t id, bool v)
{
	tenc_field(e, v ? TT_TRUE : TT_FALSE, id);
}

void
tenc_binary(ThriftEnc *e, int16_t id, const void *p, size_t len)
{
	tenc_field(e, TT_BINARY, id);
	tenc_list_binary(e, p, len);
}

/* Open a nested struct as field id of the current struct. */
void
tenc_struct_begin(ThriftEnc *e, int16_t id)
{
	tenc_field(e, TT_STRUCT, id);
	tenc_list_struct_begin(e);
}

/* Open a struct that is a list element (no field header). */
void
tenc_list_struct_begin(ThriftEnc *e)
{
	e->depth++;
	e->last[e->depth] = 0;
}

void
tenc_struct_end(ThriftEnc *e)
{
	pq_buf_byte(e->out, TT_STOP);
	e->depth--;
}

void
tenc_list_begin(ThriftEnc *e, int16_t id, int elem_type, uint32_t n)
{
	tenc_field(e, TT_LIST, id);
	if (n < 15)
		pq_buf_byte(e->out, (uint8_t) ((n << 4) | elem_type));
	else
	{
		pq_buf_byte(e->out, (uint8_t) (0xF0 | elem_type));
		pq_buf_uleb(e->out, n);
	}
}

void
tenc_list_i32(ThriftEnc *e, int32_t v)
{
	tenc_varint(e, v);
}

void
tenc_list_binary(ThriftEnc *e, const void *p, size_t len)
{
	pq_buf_uleb(e->out, len);
	pq_buf_append(e->out, p, len);
}

/* ---------- decoder ---------- */

void
tdec_init(ThriftDec *d, const uint8_t *p, size_t len)
{
	d->p = p;
	d->end = p + len;
	d->depth = 0;
	d->err = NULL;
}

void
tdec_fail(ThriftDec *d, const char *err)
{
	if (d->err == NULL)
		d->err = err;
	d->p = d->end;
}

static uint64_t
tdec_uleb(ThriftDec *d)
{
	uint64_t	v = 0;
	int			shift = 0;

	while (d->err == NULL)
	{
		uint8_t		b;

		if (d->p >= d->end)
		{
			tdec_fail(d, "truncated Thrift varint");
			break;
		}
		if (shift > 63)
		{
			tdec_fail(d, "Thrift varint longer than 10 bytes");
			break;
		}
		b = *d->p++;
		v |= (uint64_t) (b & 0x7F) << shift;
		if ((b & 0x80) == 0)
			return v;
		shift += 7;
	}
	return 0;
}

static int64_t
tdec_zigzag(ThriftDec *d)
{
	uint64_t	u = tdec_uleb(d);

	return (int64_t) (u >> 1) ^ -(int64_t) (u & 1);
}

/* Enter a struct; false when nesting is too deep. */
bool
tdec_struct_begin(ThriftDec *d)
{
	if (d->err)
		return false;
	if (++d->depth > THRIFT_MAX_DEPTH)
	{
		tdec_fail(d, "Thrift structs nested too deeply");
		return false;
	}
	return true;
}

void
tdec_struct_end(ThriftDec *d)
{
	d->depth--;
}

/*
 * Read the next field header of the current struct. Returns false at the
 * STOP byte or on error (then d->err is set).
 */
bool
tdec_field(ThriftDec *d, int16_t *last, int *type, int16_t *id)
{
	uint8_t		b;
	int			delta;

	if (d->err)
		return false;
	if (d->p >= d->end)
	{
		tdec_fail(d, "truncated Thrift struct");
		return false;
	}
	b = *d->p++;
	if (b == TT_STOP)
		return false;
	*type = b & 0x0F;
	delta = b >> 4;
	if (delta != 0)
		*id = *last + delta;
	else
	{
		int64_t		v = tdec_zigzag(d);

		if (v < -32768 || v > 32767)
		{
			tdec_fail(d, "Thrift field id out of range");
			return false;
		}
		*id = (int16_t) v;
	}
	if (*type > TT_STRUCT)
	{
		tdec_fail(d, "unknown Thrift field type");
		return false;
	}
	*last = *id;
	return d->err == NULL;
}

int64_t
tdec_i64(ThriftDec *d, int type)
{
	if (type == TT_I8)
	{
		if (d->p >= d->end)
		{
			tdec_fail(d, "truncated Thrift i8");
			return 0;
		}
		return (int8_t) *d->p++;
	}
	if (type != TT_I16 && type != TT_I32 && type != TT_I64)
	{
		tdec_fail(d, "Thrift field has the wrong type (integer expected)");
		return 0;
	}
	return tdec_zigzag(d);
}

int32_t
tdec_i32(ThriftDec *d, int type)
{
	int64_t		v = tdec_i64(d, type);

	if (v < INT32_MIN || v > INT32_MAX)
	{
		tdec_fail(d, "Thrift i32 out of range");
		return 0;
	}
	return (int32_t) v;
}

bool
tdec_bool(ThriftDec *d, int type)
{
	if (type == TT_TRUE)
		return true;
	if (type == TT_FALSE)
		return false;
	tdec_fail(d, "Thrift field has the wrong type (bool expected)");
	return false;
}

/* A string/binary field or list element: the bytes stay in the input. */
PqBytes
tdec_binary(ThriftDec *d, int type)
{
	PqBytes		r = {NULL, 0};
	uint64_t	len;

	if (type != TT_BINARY)
	{
		tdec_fail(d, "Thrift field has the wrong type (binary expected)");
		return r;
	}
	len = tdec_uleb(d);
	if (d->err)
		return r;
	if (len > (uint64_t) (d->end - d->p))
	{
		tdec_fail(d, "Thrift binary longer than the bytes left");
		return r;
	}
	r.ptr = d->p;
	r.len = (uint32_t) len;
	d->p += len;
	return r;
}

/*
 * A list header. The count is checked against the bytes left, so callers may
 * allocate count elements.
 */
uint32_t
tdec_list(ThriftDec *d, int type, int *elem_type)
{
	uint8_t		b;
	uint64_t	n;

	if (type != TT_LIST && type != TT_SET)
	{
		tdec_fail(d, "Thrift field has the wrong type (list expected)");
		return 0;
	}
	if (d->p >= d->end)
	{
		tdec_fail(d, "truncated Thrift list");
		return 0;
	}
	b = *d->p++;
	*elem_type = b & 0x0F;
	n = b >> 4;
	if (n == 15)
		n = tdec_uleb(d);
	if (d->err)
		return 0;
	if (n > (uint64_t) (d->end - d->p))
	{
		tdec_fail(d, "Thrift list longer than the bytes left");
		return 0;
	}
	return (uint32_t) n;
}

bool
tdec_list_bool(ThriftDec *d)
{
	if (d->p >= d->end)
	{
		tdec_fail(d, "truncated Thrift list");
		return false;
	}
	return *d->p++ == TT_TRUE;
}

/* Skip a value of the given type (used for fields anomstream does not read). */
void
tdec_skip(ThriftDec *d, int type)
{
	if (d->err)
		return;
	switch (type)
	{
		case TT_TRUE:
		case TT_FALSE:
			break;
		case TT_I8:
		case TT_I16:
		case TT_I32:
		case TT_I64:
			(void) tdec_i64(d, type);
			break;
		case TT_DOUBLE:
			if (d->end - d->p < 8)
				tdec_fail(d, "truncated Thrift double");
			else
				d->p += 8;
			break;
		case TT_BINARY:
			(void) tdec_binary(d, type);
			break;
		case TT_LIST:
		case TT_SET:
			{
				int			et;
				uint32_t	n = tdec_list(d, type, &et);

				if (!tdec_struct_begin(d))
					return;
				for (uint32_t i = 0; i < n && d->err == NULL; i++)
				{
					if (et == TT_TRUE || et == TT_FALSE)
						(void) tdec_list_bool(d);
					else
						tdec_skip(d, et);
				}
				tdec_struct_end(d);
				break;
			}
		case TT_MAP:
			{
				uint64_t	n = tdec_uleb(d);
				uint8_t		kv;

				if (n == 0 || d->err)
					break;
				if (d->p >= d->end || n > (uint64_t) (d->end - d->p))
				{
					tdec_fail(d, "Thrift map longer than the bytes left");
					break;
				}
				kv = *d->p++;
				if (!tdec_struct_begin(d))
					return;
				for (uint64_t i = 0; i < n && d->err == NULL; i++)
				{
					tdec_skip(d, kv >> 4);
					tdec_skip(d, kv & 0x0F);
				}
				tdec_struct_end(d);
				break;
			}
		case TT_STRUCT:
			{
				int16_t		last = 0;
				int			t;
				int16_t		id;

				if (!tdec_struct_begin(d))
					return;
				while (tdec_field(d, &last, &t, &id))
					tdec_skip(d, t);
				tdec_struct_end(d);
				break;
			}
		default:
			tdec_fail(d, "unknown Thrift type");
	}
}
