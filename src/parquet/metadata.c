/*-------------------------------------------------------------------------
 *
 * metadata.c
 *	  Encode and decode the Parquet footer (FileMetaData) and page headers
 *	  (PageHeader) with the Thrift compact protocol.
 *
 * The encoder writes exactly the fields anomstream's writer fills in (see
 * writer.c); the decoder reads the fields the reader needs and skips every
 * other field, so files from newer writers still decode.
 *
 * Decoder invariants: strings are copied NUL-terminated; min/max statistics
 * point into the input, which must outlive the result; every list is
 * allocated only after its element count was checked against the bytes left,
 * and the total number of decoded structs is capped (DECODE_BUDGET), so the
 * memory used is proportional to the footer size and bounded. Errors are
 * static strings; nothing here aborts or raises.
 *
 *-------------------------------------------------------------------------
 */
#include "parquet/thrift.h"

/* At most this many structs (schema elements, row groups, column chunks) per footer. */
#define DECODE_BUDGET	(4 * 1024 * 1024)

/* ---------- encoder ---------- */

static void
encode_logical(ThriftEnc *e, const PqLogical *lt)
{
	tenc_struct_begin(e, 10);
	tenc_struct_begin(e, (int16_t) lt->kind);
	switch (lt->kind)
	{
		case PQ_LT_DECIMAL:
			tenc_i32(e, 1, lt->scale);
			tenc_i32(e, 2, lt->precision);
			break;
		case PQ_LT_TIME:
		case PQ_LT_TIMESTAMP:
			tenc_bool(e, 1, lt->utc);
			tenc_struct_begin(e, 2);
			tenc_struct_begin(e, (int16_t) lt->unit);
			tenc_struct_end(e);
			tenc_struct_end(e);
			break;
		case PQ_LT_INTEGER:
			tenc_field(e, TT_I8, 1);
			pq_buf_byte(e->out, (uint8_t) lt->bit_width);
			tenc_bool(e, 2, lt->is_signed);
			break;
		default:
			break;
	}
	tenc_struct_end(e);
	tenc_struct_end(e);
}

static void
encode_stats(ThriftEnc *e, int16_t id, const PqStatistics *st)
{
	tenc_struct_begin(e, id);
	if (st->has_null_count)
		tenc_i64(e, 3, st->null_count);
	if (st->has_max)
		tenc_binary(e, 5, st->max.ptr, st->max.len);
	if (st->has_min)
		tenc_binary(e, 6, st->min.ptr, st->min.len);
	tenc_struct_end(e);
}

void
pq_encode_file_meta(PqBuf *out, const PqFileMeta *fm)
{
	ThriftEnc	e;

	tenc_init(&e, out);
	tenc_i32(&e, 1, fm->version);
	tenc_list_begin(&e, 2, TT_STRUCT, fm->n_schema);
	for (int i = 0; i < fm->n_schema; i++)
	{
		const PqSchemaElement *se = &fm->schema[i];

		tenc_list_struct_begin(&e);
		if (se->type >= 0)
			tenc_i32(&e, 1, se->type);
		if (se->type == PQ_FIXED_LEN_BYTE_ARRAY)
			tenc_i32(&e, 2, se->type_length);
		if (se->repetition >= 0)
			tenc_i32(&e, 3, se->repetition);
		tenc_binary(&e, 4, se->name, strlen(se->name));
		if (se->num_children >= 0)
			tenc_i32(&e, 5, se->num_children);
		if (se->converted_type != PQ_CT_NONE)
			tenc_i32(&e, 6, se->converted_type);
		if (se->converted_type == PQ_CT_DECIMAL)
		{
			tenc_i32(&e, 7, se->scale);
			tenc_i32(&e, 8, se->precision);
		}
		if (se->logical.kind != PQ_LT_NONE)
			encode_logical(&e, &se->logical);
		tenc_struct_end(&e);
	}
	tenc_i64(&e, 3, fm->num_rows);
	tenc_list_begin(&e, 4, TT_STRUCT, fm->n_row_groups);
	for (int g = 0; g < fm->n_row_groups; g++)
	{
		const PqRowGroup *rg = &fm->row_groups[g];

		tenc_list_struct_begin(&e);
		tenc_list_begin(&e, 1, TT_STRUCT, rg->n_columns);
		for (int c = 0; c < rg->n_columns; c++)
		{
			const PqColumnMeta *cm = &rg->columns[c];

			tenc_list_struct_begin(&e);
			/* ColumnChunk.file_offset: deprecated, but required by the IDL */
			tenc_i64(&e, 2, cm->dictionary_page_offset >= 0 ?
					 cm->dictionary_page_offset : cm->data_page_offset);
			tenc_struct_begin(&e, 3);
			tenc_i32(&e, 1, cm->type);
			tenc_list_begin(&e, 2, TT_I32, cm->n_encodings);
			for (int k = 0; k < cm->n_encodings; k++)
				tenc_list_i32(&e, cm->encodings[k]);
			tenc_list_begin(&e, 3, TT_BINARY, cm->path_len);
			for (int k = 0; k < cm->path_len; k++)
				tenc_list_binary(&e, cm->path[k], strlen(cm->path[k]));
			tenc_i32(&e, 4, cm->codec);
			tenc_i64(&e, 5, cm->num_values);
			tenc_i64(&e, 6, cm->total_uncompressed_size);
			tenc_i64(&e, 7, cm->total_compressed_size);
			tenc_i64(&e, 9, cm->data_page_offset);
			if (cm->dictionary_page_offset >= 0)
				tenc_i64(&e, 11, cm->dictionary_page_offset);
			encode_stats(&e, 12, &cm->stats);
			tenc_struct_end(&e);
			tenc_struct_end(&e);
		}
		tenc_i64(&e, 2, rg->total_byte_size);
		tenc_i64(&e, 3, rg->num_rows);
		tenc_i64(&e, 5, rg->file_offset);
		tenc_i64(&e, 6, rg->total_compressed_size);
		tenc_field(&e, TT_I16, 7);
		pq_buf_uleb(out, ((uint64_t) rg->ordinal << 1) ^ (uint64_t) (rg->ordinal >> 31));
		tenc_struct_end(&e);
	}
	if (fm->created_by)
		tenc_binary(&e, 6, fm->created_by, strlen(fm->created_by));
	/* column_orders: TYPE_ORDER for every leaf, since min/max statistics are written */
	tenc_list_begin(&e, 7, TT_STRUCT, fm->n_column_orders);
	for (int i = 0; i < fm->n_column_orders; i++)
	{
		tenc_list_struct_begin(&e);
		tenc_struct_begin(&e, 1);
		tenc_struct_end(&e);
		tenc_struct_end(&e);
	}
	pq_buf_byte(out, TT_STOP);
}

void
pq_encode_page_header(PqBuf *out, const PqPageHeader *ph)
{
	ThriftEnc	e;

	tenc_init(&e, out);
	tenc_i32(&e, 1, ph->type);
	tenc_i32(&e, 2, ph->uncompressed_size);
	tenc_i32(&e, 3, ph->compressed_size);
	if (ph->type == PQ_PAGE_DATA)
	{
		tenc_struct_begin(&e, 5);
		tenc_i32(&e, 1, ph->num_values);
		tenc_i32(&e, 2, ph->encoding);
		tenc_i32(&e, 3, ph->def_encoding);
		tenc_i32(&e, 4, ph->rep_encoding);
		if (ph->has_stats)
			encode_stats(&e, 5, &ph->stats);
		tenc_struct_end(&e);
	}
	else if (ph->type == PQ_PAGE_DICTIONARY)
	{
		tenc_struct_begin(&e, 7);
		tenc_i32(&e, 1, ph->num_values);
		tenc_i32(&e, 2, ph->encoding);
		tenc_struct_end(&e);
	}
	pq_buf_byte(out, TT_STOP);
}

/* ---------- decoder ---------- */

typedef struct Decoder
{
	ThriftDec	d;
	const PqAllocator *mem;
	int64_t		budget;
} Decoder;

/* Allocate n zeroed structs of size sz, charging the budget. */
static void *
dec_array(Decoder *x, uint32_t n, size_t sz)
{
	void	   *p;

	if (n == 0)
		return NULL;
	x->budget -= n;
	if (x->budget < 0)
	{
		tdec_fail(&x->d, "Parquet footer has too many elements");
		return NULL;
	}
	p = x->mem->alloc(x->mem->arg, (size_t) n * sz);
	memset(p, 0, (size_t) n * sz);
	return p;
}

static char *
dec_string(Decoder *x, int type)
{
	PqBytes		b = tdec_binary(&x->d, type);
	char	   *s;

	if (x->d.err)
		return NULL;
	s = x->mem->alloc(x->mem->arg, (size_t) b.len + 1);
	if (b.len)
		memcpy(s, b.ptr, b.len);
	s[b.len] = '\0';
	return s;
}

/* Read an empty-or-unknown struct value whose only interest is its field id. */
static int
dec_union_member(Decoder *x, int type)
{
	int16_t		last = 0;
	int			t;
	int16_t		id;
	int			member = 0;

	if (type != TT_STRUCT)
	{
		tdec_fail(&x->d, "Thrift union has the wrong type");
		return 0;
	}
	if (!tdec_struct_begin(&x->d))
		return 0;
	while (tdec_field(&x->d, &last, &t, &id))
	{
		member = id;
		tdec_skip(&x->d, t);
	}
	tdec_struct_end(&x->d);
	return member;
}

static void
dec_logical(Decoder *x, int type, PqLogical *lt)
{
	int16_t		last = 0;
	int			t;
	int16_t		id;

	if (type != TT_STRUCT || !tdec_struct_begin(&x->d))
	{
		tdec_fail(&x->d, "LogicalType has the wrong type");
		return;
	}
	while (tdec_field(&x->d, &last, &t, &id))
	{
		int16_t		l2 = 0;
		int			t2;
		int16_t		id2;

		lt->kind = id;
		if (t != TT_STRUCT || (id != PQ_LT_DECIMAL && id != PQ_LT_TIME &&
							   id != PQ_LT_TIMESTAMP && id != PQ_LT_INTEGER))
		{
			tdec_skip(&x->d, t);
			continue;
		}
		if (!tdec_struct_begin(&x->d))
			break;
		while (tdec_field(&x->d, &l2, &t2, &id2))
		{
			if (id == PQ_LT_DECIMAL && id2 == 1)
				lt->scale = tdec_i32(&x->d, t2);
			else if (id == PQ_LT_DECIMAL && id2 == 2)
				lt->precision = tdec_i32(&x->d, t2);
			else if ((id == PQ_LT_TIME || id == PQ_LT_TIMESTAMP) && id2 == 1)
				lt->utc = tdec_bool(&x->d, t2);
			else if ((id == PQ_LT_TIME || id == PQ_LT_TIMESTAMP) && id2 == 2)
				lt->unit = dec_union_member(x, t2);
			else if (id == PQ_LT_INTEGER && id2 == 1)
				lt->bit_width = (int) tdec_i64(&x->d, t2);
			else if (id == PQ_LT_INTEGER && id2 == 2)
				lt->is_signed = tdec_bool(&x->d, t2);
			else
				tdec_skip(&x->d, t2);
		}
		tdec_struct_end(&x->d);
	}
	tdec_struct_end(&x->d);
}

static void
dec_schema_element(Decoder *x, PqSchemaElement *se)
{
	int16_t		last = 0;
	int			t;
	int16_t		id;

	se->type = -1;
	se->repetition = -1;
	se->num_children = -1;
	se->converted_type = PQ_CT_NONE;
	se->scale = se->precision = -1;
	if (!tdec_struct_begin(&x->d))
		return;
	while (tdec_field(&x->d, &last, &t, &id))
	{
		switch (id)
		{
			case 1:
				se->type = tdec_i32(&x->d, t);
				break;
			case 2:
				se->type_length = tdec_i32(&x->d, t);
				break;
			case 3:
				se->repetition = tdec_i32(&x->d, t);
				break;
			case 4:
				se->name = dec_string(x, t);
				break;
			case 5:
				se->num_children = tdec_i32(&x->d, t);
				break;
			case 6:
				se->converted_type = tdec_i32(&x->d, t);
				break;
			case 7:
				se->scale = tdec_i32(&x->d, t);
				break;
			case 8:
				se->precision = tdec_i32(&x->d, t);
				break;
			case 10:
				dec_logical(x, t, &se->logical);
				break;
			default:
				tdec_skip(&x->d, t);
		}
	}
	tdec_struct_end(&x->d);
	if (x->d.err == NULL && se->name == NULL)
		tdec_fail(&x->d, "schema element without a name");
}

static void
dec_stats(Decoder *x, int type, PqStatistics *st)
{
	int16_t		last = 0;
	int			t;
	int16_t		id;
	PqBytes		old_min = {0}, old_max = {0};
	bool		has_old_min = false, has_old_max = false;

	if (type != TT_STRUCT || !tdec_struct_begin(&x->d))
	{
		tdec_fail(&x->d, "Statistics has the wrong type");
		return;
	}
	while (tdec_field(&x->d, &last, &t, &id))
	{
		switch (id)
		{
			case 1:
				old_max = tdec_binary(&x->d, t);
				has_old_max = true;
				break;
			case 2:
				old_min = tdec_binary(&x->d, t);
				has_old_min = true;
				break;
			case 3:
				st->null_count = tdec_i64(&x->d, t);
				st->has_null_count = true;
				break;
			case 5:
				st->max = tdec_binary(&x->d, t);
				st->has_max = true;
				break;
			case 6:
				st->min = tdec_binary(&x->d, t);
				st->has_min = true;
				break;
			default:
				tdec_skip(&x->d, t);
		}
	}
	tdec_struct_end(&x->d);
	/* the deprecated min/max are only a fallback */
	if (!st->has_min && has_old_min)
	{
		st->min = old_min;
		st->has_min = true;
	}
	if (!st->has_max && has_old_max)
	{
		st->max = old_max;
		st->has_max = true;
	}
}

static void
dec_column_meta(Decoder *x, int type, PqColumnMeta *cm)
{
	int16_t		last = 0;
	int			t;
	int16_t		id;
	bool		have_type = false, have_codec = false, have_values = false,
				have_offset = false;

	if (type != TT_STRUCT || !tdec_struct_begin(&x->d))
	{
		tdec_fail(&x->d, "ColumnMetaData has the wrong type");
		return;
	}
	while (tdec_field(&x->d, &last, &t, &id))
	{
		switch (id)
		{
			case 1:
				cm->type = tdec_i32(&x->d, t);
				have_type = true;
				break;
			case 2:
				{
					int			et;
					uint32_t	n = tdec_list(&x->d, t, &et);

					for (uint32_t i = 0; i < n && x->d.err == NULL; i++)
					{
						int32_t		enc = tdec_i32(&x->d, et);

						if (cm->n_encodings < 8)
							cm->encodings[cm->n_encodings++] = enc;
					}
					break;
				}
			case 3:
				{
					int			et;
					uint32_t	n = tdec_list(&x->d, t, &et);

					cm->path = dec_array(x, n, sizeof(char *));
					for (uint32_t i = 0; i < n && x->d.err == NULL; i++)
						cm->path[i] = dec_string(x, et);
					cm->path_len = (int) n;
					break;
				}
			case 4:
				cm->codec = tdec_i32(&x->d, t);
				have_codec = true;
				break;
			case 5:
				cm->num_values = tdec_i64(&x->d, t);
				have_values = true;
				break;
			case 6:
				cm->total_uncompressed_size = tdec_i64(&x->d, t);
				break;
			case 7:
				cm->total_compressed_size = tdec_i64(&x->d, t);
				break;
			case 9:
				cm->data_page_offset = tdec_i64(&x->d, t);
				have_offset = true;
				break;
			case 11:
				cm->dictionary_page_offset = tdec_i64(&x->d, t);
				break;
			case 12:
				dec_stats(x, t, &cm->stats);
				break;
			default:
				tdec_skip(&x->d, t);
		}
	}
	tdec_struct_end(&x->d);
	if (x->d.err == NULL && !(have_type && have_codec && have_values && have_offset))
		tdec_fail(&x->d, "ColumnMetaData lacks a required field");
}

static void
dec_row_group(Decoder *x, PqRowGroup *rg)
{
	int16_t		last = 0;
	int			t;
	int16_t		id;

	if (!tdec_struct_begin(&x->d))
		return;
	while (tdec_field(&x->d, &last, &t, &id))
	{
		switch (id)
		{
			case 1:
				{
					int			et;
					uint32_t	n = tdec_list(&x->d, t, &et);

					if (et != TT_STRUCT && n > 0)
					{
						tdec_fail(&x->d, "RowGroup.columns has the wrong type");
						break;
					}
					rg->columns = dec_array(x, n, sizeof(PqColumnMeta));
					for (uint32_t i = 0; i < n && x->d.err == NULL; i++)
					{
						PqColumnMeta *cm = &rg->columns[i];
						int16_t		l2 = 0;
						int			t2;
						int16_t		id2;
						bool		have_meta = false;

						cm->dictionary_page_offset = -1;
						if (!tdec_struct_begin(&x->d))
							break;
						while (tdec_field(&x->d, &l2, &t2, &id2))
						{
							if (id2 == 1)
							{
								(void) tdec_binary(&x->d, t2);
								tdec_fail(&x->d, "column chunks in external files are not supported");
							}
							else if (id2 == 3)
							{
								dec_column_meta(x, t2, cm);
								have_meta = true;
							}
							else
								tdec_skip(&x->d, t2);
						}
						tdec_struct_end(&x->d);
						if (x->d.err == NULL && !have_meta)
							tdec_fail(&x->d, "column chunk without ColumnMetaData");
					}
					rg->n_columns = (int) n;
					break;
				}
			case 2:
				rg->total_byte_size = tdec_i64(&x->d, t);
				break;
			case 3:
				rg->num_rows = tdec_i64(&x->d, t);
				break;
			default:
				tdec_skip(&x->d, t);
		}
	}
	tdec_struct_end(&x->d);
}

/*
 * Decode FileMetaData from p[0..len). Returns NULL on success, else an error.
 */
const char *
pq_decode_file_meta(const uint8_t *p, size_t len, const PqAllocator *mem, PqFileMeta *fm)
{
	Decoder		x;
	int16_t		last = 0;
	int			t;
	int16_t		id;
	bool		have_schema = false, have_rows = false, have_groups = false;

	memset(fm, 0, sizeof(*fm));
	tdec_init(&x.d, p, len);
	x.mem = mem;
	x.budget = DECODE_BUDGET;
	if (!tdec_struct_begin(&x.d))
		return x.d.err;
	while (tdec_field(&x.d, &last, &t, &id))
	{
		switch (id)
		{
			case 1:
				fm->version = tdec_i32(&x.d, t);
				break;
			case 2:
				{
					int			et;
					uint32_t	n = tdec_list(&x.d, t, &et);

					if (et != TT_STRUCT && n > 0)
					{
						tdec_fail(&x.d, "FileMetaData.schema has the wrong type");
						break;
					}
					fm->schema = dec_array(&x, n, sizeof(PqSchemaElement));
					for (uint32_t i = 0; i < n && x.d.err == NULL; i++)
						dec_schema_element(&x, &fm->schema[i]);
					fm->n_schema = (int) n;
					have_schema = true;
					break;
				}
			case 3:
				fm->num_rows = tdec_i64(&x.d, t);
				have_rows = true;
				break;
			case 4:
				{
					int			et;
					uint32_t	n = tdec_list(&x.d, t, &et);

					if (et != TT_STRUCT && n > 0)
					{
						tdec_fail(&x.d, "FileMetaData.row_groups has the wrong type");
						break;
					}
					fm->row_groups = dec_array(&x, n, sizeof(PqRowGroup));
					for (uint32_t i = 0; i < n && x.d.err == NULL; i++)
						dec_row_group(&x, &fm->row_groups[i]);
					fm->n_row_groups = (int) n;
					have_groups = true;
					break;
				}
			case 6:
				fm->created_by = dec_string(&x, t);
				break;
			default:
				tdec_skip(&x.d, t);
		}
	}
	tdec_struct_end(&x.d);
	if (x.d.err)
		return x.d.err;
	if (!have_schema || !have_rows || !have_groups)
		return "FileMetaData lacks a required field (schema, num_rows or row_groups)";
	return NULL;
}

static void
dec_page_sub(ThriftDec *d, int type, PqPageHeader *ph, int which)
{
	int16_t		last = 0;
	int			t;
	int16_t		id;

	if (type != TT_STRUCT || !tdec_struct_begin(d))
	{
		tdec_fail(d, "page header member has the wrong type");
		return;
	}
	while (tdec_field(d, &last, &t, &id))
	{
		if (id == 1)
			ph->num_values = tdec_i32(d, t);
		else if (which == PQ_PAGE_DATA && id == 2)
			ph->encoding = tdec_i32(d, t);
		else if (which == PQ_PAGE_DATA && id == 3)
			ph->def_encoding = tdec_i32(d, t);
		else if (which == PQ_PAGE_DATA && id == 4)
			ph->rep_encoding = tdec_i32(d, t);
		else if (which == PQ_PAGE_DICTIONARY && id == 2)
			ph->encoding = tdec_i32(d, t);
		else if (which == PQ_PAGE_DATA_V2 && id == 2)
			ph->num_nulls = tdec_i32(d, t);
		else if (which == PQ_PAGE_DATA_V2 && id == 3)
			ph->num_rows = tdec_i32(d, t);
		else if (which == PQ_PAGE_DATA_V2 && id == 4)
			ph->encoding = tdec_i32(d, t);
		else if (which == PQ_PAGE_DATA_V2 && id == 5)
			ph->def_length = tdec_i32(d, t);
		else if (which == PQ_PAGE_DATA_V2 && id == 6)
			ph->rep_length = tdec_i32(d, t);
		else if (which == PQ_PAGE_DATA_V2 && id == 7)
			ph->is_compressed = tdec_bool(d, t);
		else
			tdec_skip(d, t);
	}
	tdec_struct_end(d);
}

/*
 * Decode a PageHeader from the start of p[0..len); *header_len receives its
 * size. Returns NULL on success, else an error.
 */
const char *
pq_decode_page_header(const uint8_t *p, size_t len, size_t *header_len, PqPageHeader *ph)
{
	ThriftDec	d;
	int16_t		last = 0;
	int			t;
	int16_t		id;
	int			have = 0;

	memset(ph, 0, sizeof(*ph));
	ph->type = -1;
	ph->is_compressed = true;
	tdec_init(&d, p, len);
	if (!tdec_struct_begin(&d))
		return d.err;
	while (tdec_field(&d, &last, &t, &id))
	{
		switch (id)
		{
			case 1:
				ph->type = tdec_i32(&d, t);
				have |= 1;
				break;
			case 2:
				ph->uncompressed_size = tdec_i32(&d, t);
				have |= 2;
				break;
			case 3:
				ph->compressed_size = tdec_i32(&d, t);
				have |= 4;
				break;
			case 5:
				dec_page_sub(&d, t, ph, PQ_PAGE_DATA);
				have |= 8;
				break;
			case 7:
				dec_page_sub(&d, t, ph, PQ_PAGE_DICTIONARY);
				have |= 8;
				break;
			case 8:
				dec_page_sub(&d, t, ph, PQ_PAGE_DATA_V2);
				have |= 8;
				break;
			default:
				tdec_skip(&d, t);
		}
	}
	tdec_struct_end(&d);
	if (d.err)
		return d.err;
	if ((have & 7) != 7)
		return "page header lacks a required field";
	if (ph->uncompressed_size < 0 || ph->compressed_size < 0)
		return "page header has a negative size";
	if ((ph->type == PQ_PAGE_DATA || ph->type == PQ_PAGE_DICTIONARY ||
		 ph->type == PQ_PAGE_DATA_V2) && !(have & 8))
		return "page header lacks its type-specific header";
	if (ph->num_values < 0 || ph->num_nulls < 0 || ph->def_length < 0 || ph->rep_length < 0)
		return "page header has a negative count";
	*header_len = (size_t) (d.p - p);
	return NULL;
}
