/*-------------------------------------------------------------------------
 *
 * reader.c
 *	  Read Parquet files: footer, schema, and column chunks page by page.
 *
 * Supported: data pages v1 and v2, PLAIN and dictionary (PLAIN_DICTIONARY /
 * RLE_DICTIONARY) values, RLE booleans, RLE levels, the codecs of codec.c,
 * REQUIRED and OPTIONAL flat columns, and lists of one primitive (3-level
 * LIST groups and legacy repeated primitives). Other nested fields are
 * reported as unsupported per field, so a file with such a field can still
 * be read when that field is not needed.
 *
 * Safety invariants (this code parses untrusted files):
 *  - every offset and length taken from the file is checked against the file
 *    size or the buffer it indexes before use;
 *  - every allocation whose size comes from the file is checked against
 *    PqReaderLimits first (footer, column chunk, decompressed page, levels
 *    per page, dictionary entries);
 *  - errors are static strings; the caller frees everything with
 *    pq_cursor_close and pq_file_close, also after an error.
 *
 *-------------------------------------------------------------------------
 */
#include "parquet/delta.h"
#include "parquet/reader.h"

#define MAX_SCHEMA_DEPTH 16
#define MAX_FLBA_LENGTH  (1 << 20)

const PqReaderLimits pq_default_limits = {
	.max_footer = 64 * 1024 * 1024,
	.max_chunk = 1024 * 1024 * 1024 - 1,
	.max_page = 256 * 1024 * 1024,
	.max_page_values = 8 * 1024 * 1024,
};

static void *
mem_alloc(const PqAllocator *m, size_t n)
{
	return m->alloc(m->arg, n ? n : 1);
}

static void
mem_free(const PqAllocator *m, void *p)
{
	if (p)
		m->free(m->arg, p);
}

/* ---------- schema ---------- */

typedef struct SchemaWalk
{
	PqFile	   *f;
	int			next;			/* next schema element to visit */
	const char *err;
} SchemaWalk;

/* Count leaves below element idx (and check the tree's shape). */
static int
count_leaves(SchemaWalk *w, int depth)
{
	const PqSchemaElement *se;
	int			n = 0;

	if (w->err)
		return 0;
	if (depth > MAX_SCHEMA_DEPTH)
	{
		w->err = "Parquet schema nested too deeply";
		return 0;
	}
	if (w->next >= w->f->meta.n_schema)
	{
		w->err = "Parquet schema has fewer elements than its groups claim";
		return 0;
	}
	se = &w->f->meta.schema[w->next++];
	if (se->num_children < 0 || (se->type >= 0 && se->num_children == 0))
	{
		if (se->type < PQ_BOOLEAN || se->type > PQ_FIXED_LEN_BYTE_ARRAY)
		{
			w->err = "Parquet schema leaf has no valid physical type";
			return 0;
		}
		if (se->type == PQ_FIXED_LEN_BYTE_ARRAY &&
			(se->type_length <= 0 || se->type_length > MAX_FLBA_LENGTH))
		{
			w->err = "FIXED_LEN_BYTE_ARRAY column has an invalid length";
			return 0;
		}
		return 1;
	}
	if (se->num_children > w->f->meta.n_schema)
	{
		w->err = "Parquet schema group has more children than the schema has elements";
		return 0;
	}
	for (int i = 0; i < se->num_children && !w->err; i++)
		n += count_leaves(w, depth + 1);
	return n;
}

static bool
is_leaf(const PqSchemaElement *se)
{
	return se->num_children < 0 || (se->type >= 0 && se->num_children == 0);
}

/*
 * Record the leaves below element (depth-first), their levels and top-level
 * field. def/rep are the levels of the parent.
 */
static void
collect_leaves(SchemaWalk *w, int field, int def, int rep, int *leaf_no)
{
	const PqSchemaElement *se = &w->f->meta.schema[w->next++];

	if (se->repetition == PQ_OPTIONAL)
		def++;
	else if (se->repetition == PQ_REPEATED)
	{
		def++;
		rep++;
	}
	if (is_leaf(se))
	{
		PqLeaf	   *l = &w->f->leaves[(*leaf_no)++];

		l->el = se;
		l->max_def = def;
		l->max_rep = rep;
		l->field = field;
		return;
	}
	for (int i = 0; i < se->num_children; i++)
		collect_leaves(w, field, def, rep, leaf_no);
}

/* Classify top-level field fi whose element is at schema index idx. */
static void
classify_field(PqFile *f, PqField *fd, int idx, int first_leaf, int n_leaves)
{
	const PqSchemaElement *se = &f->meta.schema[idx];
	const PqLeaf *l = &f->leaves[first_leaf];

	fd->name = se->name;
	fd->el = se;
	fd->leaf = -1;
	fd->unsupported = NULL;
	if (n_leaves != 1)
	{
		fd->unsupported = "nested groups (structs, maps, lists of structs) are not supported";
		return;
	}
	if (is_leaf(se))
	{
		fd->leaf = first_leaf;
		if (se->repetition == PQ_REPEATED)
		{
			/* legacy one-level list: a repeated primitive */
			fd->is_list = true;
			fd->null_below = 0;
			fd->elem_below = 1;
		}
		else
			fd->null_below = l->max_def;
		return;
	}
	/* a group with a single leaf: must be a LIST of a primitive */
	if ((se->converted_type == PQ_CT_LIST || se->logical.kind == PQ_LT_LIST) &&
		se->num_children == 1 && l->max_rep == 1 && se->repetition != PQ_REPEATED)
	{
		const PqSchemaElement *mid = &f->meta.schema[idx + 1];
		int			outer = se->repetition == PQ_OPTIONAL ? 1 : 0;

		if (mid->repetition != PQ_REPEATED)
		{
			fd->unsupported = "LIST group whose child is not repeated";
			return;
		}
		if (!is_leaf(mid) && (mid->num_children != 1 || !is_leaf(&f->meta.schema[idx + 2])))
		{
			fd->unsupported = "lists of structs are not supported";
			return;
		}
		fd->leaf = first_leaf;
		fd->is_list = true;
		fd->null_below = outer;
		fd->elem_below = outer + 1;
		return;
	}
	fd->unsupported = "nested groups (structs, maps) are not supported";
}

static const char *
build_schema(PqFile *f)
{
	SchemaWalk	w = {f, 0, NULL};
	const PqSchemaElement *root;
	int			n_leaves;
	int			leaf_no = 0;

	if (f->meta.n_schema < 1)
		return "Parquet schema is empty";
	root = &f->meta.schema[0];
	if (root->num_children < 0)
		return "Parquet schema root is not a group";
	n_leaves = count_leaves(&w, 0);
	if (w.err)
		return w.err;
	if (w.next != f->meta.n_schema)
		return "Parquet schema has more elements than its groups hold";
	f->n_leaves = n_leaves;
	f->n_fields = root->num_children;
	f->leaves = mem_alloc(f->mem, sizeof(PqLeaf) * (size_t) n_leaves);
	f->fields = mem_alloc(f->mem, sizeof(PqField) * (size_t) f->n_fields);
	memset(f->fields, 0, sizeof(PqField) * (size_t) f->n_fields);
	w.next = 1;
	for (int i = 0; i < f->n_fields; i++)
	{
		int			idx = w.next;
		int			first = leaf_no;

		collect_leaves(&w, i, 0, 0, &leaf_no);
		if (leaf_no == first)
			f->fields[i].unsupported = "empty group";
		else
			classify_field(f, &f->fields[i], idx, first, leaf_no - first);
		f->fields[i].name = f->meta.schema[idx].name;
		f->fields[i].el = &f->meta.schema[idx];
	}
	return NULL;
}

/* Check every row group's column chunks against the schema and the file size. */
static const char *
check_row_groups(PqFile *f, uint64_t data_end)
{
	int64_t		total = 0;

	for (int g = 0; g < f->meta.n_row_groups; g++)
	{
		const PqRowGroup *rg = &f->meta.row_groups[g];

		if (rg->n_columns != f->n_leaves)
			return "row group has a different number of columns than the schema";
		if (rg->num_rows < 0)
			return "row group has a negative row count";
		if (rg->num_rows > INT64_MAX - total)
			return "row counts overflow";
		total += rg->num_rows;
		for (int c = 0; c < rg->n_columns; c++)
		{
			const PqColumnMeta *cm = &rg->columns[c];
			int64_t		start = cm->data_page_offset;

			if (cm->type != f->leaves[c].el->type)
				return "column chunk type differs from the schema";
			if (cm->dictionary_page_offset > 0 && cm->dictionary_page_offset < start)
				start = cm->dictionary_page_offset;
			if (start < 4 || cm->total_compressed_size < 0 ||
				(uint64_t) start > data_end ||
				(uint64_t) cm->total_compressed_size > data_end - (uint64_t) start)
				return "column chunk lies outside the file's data";
			if (cm->num_values < 0)
				return "column chunk has a negative value count";
		}
	}
	if (total != f->meta.num_rows)
		return "row groups' row counts do not add up to the file's row count";
	return NULL;
}

/*
 * Open a file: check the magic bytes, read and decode the footer, build the
 * schema. On error *out may still be set and must be closed.
 */
const char *
pq_file_open(const PqReadSource *src, const PqAllocator *mem,
			 const PqReaderLimits *lim, PqFile **out)
{
	PqFile	   *f;
	uint8_t		tail[8];
	uint8_t		head[4];
	uint32_t	flen;
	const char *err;

	f = mem_alloc(mem, sizeof(PqFile));
	memset(f, 0, sizeof(PqFile));
	f->src = *src;
	f->mem = mem;
	f->lim = lim ? *lim : pq_default_limits;
	*out = f;

	if (src->size < 12)
		return "file is too short to be Parquet";
	if ((err = src->read_at(src->arg, 0, 4, head)) != NULL)
		return err;
	if ((err = src->read_at(src->arg, src->size - 8, 8, tail)) != NULL)
		return err;
	if (memcmp(head, "PAR1", 4) != 0 || memcmp(tail + 4, "PAR1", 4) != 0)
	{
		if (memcmp(tail + 4, "PARE", 4) == 0)
			return "encrypted Parquet files are not supported";
		return "not a Parquet file (magic bytes PAR1 missing)";
	}
	memcpy(&flen, tail, 4);
	if (flen == 0 || (uint64_t) flen > src->size - 12)
		return "Parquet footer length is out of range";
	if (flen > f->lim.max_footer)
		return "Parquet footer is larger than the reader accepts";
	f->footer = mem_alloc(mem, flen);
	if ((err = src->read_at(src->arg, src->size - 8 - flen, flen, f->footer)) != NULL)
		return err;
	if ((err = pq_decode_file_meta(f->footer, flen, mem, &f->meta)) != NULL)
		return err;
	if ((err = build_schema(f)) != NULL)
		return err;
	return check_row_groups(f, src->size - 8 - flen);
}

void
pq_file_close(PqFile *f)
{
	/*
	 * Footer strings and arrays come from the same allocator; inside
	 * PostgreSQL they go with the memory context. Outside, the fuzzer's
	 * allocator tracks them (see test/fuzz).
	 */
	if (f == NULL)
		return;
	mem_free(f->mem, f->footer);
	mem_free(f->mem, f->leaves);
	mem_free(f->mem, f->fields);
	f->footer = NULL;
	f->leaves = NULL;
	f->fields = NULL;
}

/* ---------- values ---------- */

/* Decode n PLAIN values of the leaf's type from p[0..len). */
static const char *
decode_plain(const PqLeaf *leaf, const uint8_t *p, size_t len, PqValue *out, int32_t n,
			 size_t *used)
{
	const uint8_t *start = p;
	const uint8_t *end = p + len;
	int			type = leaf->el->type;

	switch (type)
	{
		case PQ_BOOLEAN:
			if ((size_t) (n + 7) / 8 > len)
				return "PLAIN boolean values truncated";
			for (int32_t i = 0; i < n; i++)
				out[i].i = (p[i / 8] >> (i % 8)) & 1;
			p += (n + 7) / 8;
			break;
		case PQ_INT32:
		case PQ_FLOAT:
			if ((size_t) n * 4 > len)
				return "PLAIN values truncated";
			for (int32_t i = 0; i < n; i++, p += 4)
			{
				if (type == PQ_INT32)
				{
					int32_t		v;

					memcpy(&v, p, 4);
					out[i].i = v;
				}
				else
				{
					float		v;

					memcpy(&v, p, 4);
					out[i].d = v;
				}
			}
			break;
		case PQ_INT64:
		case PQ_DOUBLE:
			if ((size_t) n * 8 > len)
				return "PLAIN values truncated";
			for (int32_t i = 0; i < n; i++, p += 8)
				memcpy(&out[i], p, 8);
			break;
		case PQ_INT96:
		case PQ_FIXED_LEN_BYTE_ARRAY:
			{
				size_t		w = type == PQ_INT96 ? 12 : (size_t) leaf->el->type_length;

				if ((size_t) n > len / w)
					return "PLAIN values truncated";
				for (int32_t i = 0; i < n; i++, p += w)
				{
					out[i].b.ptr = p;
					out[i].b.len = (uint32_t) w;
				}
				break;
			}
		case PQ_BYTE_ARRAY:
			for (int32_t i = 0; i < n; i++)
			{
				uint32_t	l;

				if (end - p < 4)
					return "PLAIN byte array length truncated";
				memcpy(&l, p, 4);
				p += 4;
				if (l > (size_t) (end - p))
					return "PLAIN byte array longer than the page";
				out[i].b.ptr = p;
				out[i].b.len = l;
				p += l;
			}
			break;
		default:
			return "unknown physical type";
	}
	if (used)
		*used = (size_t) (p - start);
	return NULL;
}

/* Read a 4-byte length-prefixed RLE level block. */
static const char *
read_levels_v1(const uint8_t **p, const uint8_t *end, int max_level, uint32_t *out,
			   int32_t n)
{
	uint32_t	l;
	const char *err;

	if (end - *p < 4)
		return "level block length truncated";
	memcpy(&l, *p, 4);
	*p += 4;
	if (l > (size_t) (end - *p))
		return "level block longer than the page";
	err = pq_rle_decode(*p, l, pq_bit_width((uint32_t) max_level), out, (size_t) n);
	*p += l;
	return err;
}

static const char *
check_page(PqCursor *c, const PqPageHeader *ph, size_t body_avail)
{
	if ((size_t) ph->compressed_size > body_avail)
		return "page is longer than its column chunk";
	if ((size_t) ph->uncompressed_size > c->f->lim.max_page)
		return "page is larger than the reader accepts";
	if (ph->num_values > c->f->lim.max_page_values)
		return "page holds more values than the reader accepts";
	return NULL;
}

static const char *
load_dictionary(PqCursor *c, const PqPageHeader *ph, const uint8_t *body)
{
	const char *err;

	if (c->dict != NULL || c->levels_read > 0)
		return "dictionary page is not the first page of its column chunk";
	if (ph->encoding != PQ_ENC_PLAIN && ph->encoding != PQ_ENC_PLAIN_DICTIONARY)
		return "dictionary page is not PLAIN-encoded";
	if (c->leaf->el->type == PQ_BOOLEAN)
		return "dictionary page for a boolean column";
	c->dict_buf = mem_alloc(c->f->mem, (size_t) ph->uncompressed_size);
	if ((err = pq_decompress(c->cm->codec, body, (size_t) ph->compressed_size,
							 c->dict_buf, (size_t) ph->uncompressed_size)) != NULL)
		return err;
	c->dict = mem_alloc(c->f->mem, sizeof(PqValue) * (size_t) ph->num_values);
	c->n_dict = ph->num_values;
	return decode_plain(c->leaf, c->dict_buf, (size_t) ph->uncompressed_size, c->dict,
						ph->num_values, NULL);
}

/* DELTA_* and BYTE_STREAM_SPLIT values. */
static const char *
decode_values_delta(PqCursor *c, int encoding, const uint8_t *p, size_t len, int32_t n)
{
	int			type = c->leaf->el->type;
	const char *err = NULL;
	int64_t    *ints = NULL;
	int64_t    *ints2 = NULL;
	size_t		used = 0,
				used2 = 0;

	if (n == 0)
		return NULL;
	if (encoding == PQ_ENC_BYTE_STREAM_SPLIT)
	{
		size_t		w = type == PQ_FIXED_LEN_BYTE_ARRAY ? (size_t) c->leaf->el->type_length :
			(type == PQ_INT32 || type == PQ_FLOAT) ? 4 : (type == PQ_INT64 || type == PQ_DOUBLE) ? 8 : 0;

		if (w == 0)
			return "BYTE_STREAM_SPLIT for a type that does not allow it";
		if ((size_t) n > len / w)
			return "BYTE_STREAM_SPLIT data truncated";
		c->extra_buf = mem_alloc(c->f->mem, (size_t) n * w);
		if ((err = pq_byte_stream_split_decode(p, len, w, c->extra_buf, (size_t) n)) != NULL)
			return err;
		return decode_plain(c->leaf, c->extra_buf, (size_t) n * w, c->vals, n, NULL);
	}
	ints = mem_alloc(c->f->mem, sizeof(int64_t) * (size_t) n);
	if (encoding == PQ_ENC_DELTA_BINARY_PACKED && (type == PQ_INT32 || type == PQ_INT64))
	{
		err = pq_delta_decode(p, len, ints, (size_t) n, NULL);
		for (int32_t i = 0; err == NULL && i < n; i++)
			c->vals[i].i = type == PQ_INT32 ? (int64_t) (int32_t) ints[i] : ints[i];
	}
	else if (encoding == PQ_ENC_DELTA_LENGTH_BYTE_ARRAY && type == PQ_BYTE_ARRAY)
	{
		err = pq_delta_decode(p, len, ints, (size_t) n, &used);
		for (int32_t i = 0; err == NULL && i < n; i++)
		{
			if (ints[i] < 0 || (uint64_t) ints[i] > len - used)
				err = "DELTA_LENGTH_BYTE_ARRAY value longer than the page";
			else
			{
				c->vals[i].b.ptr = p + used;
				c->vals[i].b.len = (uint32_t) ints[i];
				used += (size_t) ints[i];
			}
		}
	}
	else if (encoding == PQ_ENC_DELTA_BYTE_ARRAY &&
			 (type == PQ_BYTE_ARRAY || type == PQ_FIXED_LEN_BYTE_ARRAY))
	{
		uint64_t	total = 0;
		uint64_t	prev_len = 0;
		size_t		at;

		ints2 = mem_alloc(c->f->mem, sizeof(int64_t) * (size_t) n);
		err = pq_delta_decode(p, len, ints, (size_t) n, &used);
		if (err == NULL)
			err = pq_delta_decode(p + used, len - used, ints2, (size_t) n, &used2);
		used += used2;
		/* sizes first, so the assembled values are capped before allocating */
		for (int32_t i = 0; err == NULL && i < n; i++)
		{
			if (ints[i] < 0 || ints2[i] < 0 || (uint64_t) ints[i] > prev_len ||
				(uint64_t) ints2[i] > len)
				err = "DELTA_BYTE_ARRAY prefix or suffix length out of range";
			else
			{
				prev_len = (uint64_t) ints[i] + (uint64_t) ints2[i];
				total += prev_len;
				if (total > c->f->lim.max_page)
					err = "DELTA_BYTE_ARRAY values are larger than the reader accepts";
			}
		}
		if (err == NULL)
		{
			const uint8_t *suffix = p + used;
			const uint8_t *prev = NULL;

			c->extra_buf = mem_alloc(c->f->mem, (size_t) total);
			at = 0;
			for (int32_t i = 0; err == NULL && i < n; i++)
			{
				size_t		pl = (size_t) ints[i],
							sl = (size_t) ints2[i];

				if (sl > (size_t) (p + len - suffix))
				{
					err = "DELTA_BYTE_ARRAY suffix longer than the page";
					break;
				}
				if (pl)
					memcpy(c->extra_buf + at, prev, pl);
				memcpy(c->extra_buf + at + pl, suffix, sl);
				suffix += sl;
				c->vals[i].b.ptr = c->extra_buf + at;
				c->vals[i].b.len = (uint32_t) (pl + sl);
				if (type == PQ_FIXED_LEN_BYTE_ARRAY && pl + sl != (size_t) c->leaf->el->type_length)
					err = "DELTA_BYTE_ARRAY value has the wrong length";
				prev = c->extra_buf + at;
				at += pl + sl;
			}
		}
	}
	else
		err = "unsupported value encoding for this column type";
	mem_free(c->f->mem, ints);
	mem_free(c->f->mem, ints2);
	return err;
}

/* Decode the values section of a data page: n non-null values. */
static const char *
decode_values(PqCursor *c, int encoding, const uint8_t *p, size_t len, int32_t n)
{
	if (encoding == PQ_ENC_PLAIN)
		return decode_plain(c->leaf, p, len, c->vals, n, NULL);
	if (encoding == PQ_ENC_PLAIN_DICTIONARY || encoding == PQ_ENC_RLE_DICTIONARY)
	{
		uint32_t   *idx;
		const char *err;

		if (c->dict == NULL)
			return "dictionary-encoded page without a dictionary page";
		if (n == 0)
			return NULL;
		if (len < 1)
			return "dictionary indices truncated";
		if (p[0] > 32)
			return "dictionary index bit width out of range";
		idx = mem_alloc(c->f->mem, sizeof(uint32_t) * (size_t) n);
		err = pq_rle_decode(p + 1, len - 1, p[0], idx, (size_t) n);
		for (int32_t i = 0; err == NULL && i < n; i++)
		{
			if (idx[i] >= (uint32_t) c->n_dict)
				err = "dictionary index out of range";
			else
				c->vals[i] = c->dict[idx[i]];
		}
		mem_free(c->f->mem, idx);
		return err;
	}
	if (encoding == PQ_ENC_RLE && c->leaf->el->type == PQ_BOOLEAN)
	{
		uint32_t   *bits;
		uint32_t	l;
		const char *err;

		if (len < 4)
			return "RLE boolean length truncated";
		memcpy(&l, p, 4);
		if (l > len - 4)
			return "RLE boolean block longer than the page";
		bits = mem_alloc(c->f->mem, sizeof(uint32_t) * (size_t) n);
		err = pq_rle_decode(p + 4, l, 1, bits, (size_t) n);
		for (int32_t i = 0; err == NULL && i < n; i++)
			c->vals[i].i = bits[i];
		mem_free(c->f->mem, bits);
		return err;
	}
	return decode_values_delta(c, encoding, p, len, n);
}

static void
free_page(PqCursor *c)
{
	mem_free(c->f->mem, c->page_buf);
	mem_free(c->f->mem, c->def);
	mem_free(c->f->mem, c->rep);
	mem_free(c->f->mem, c->vals);
	mem_free(c->f->mem, c->extra_buf);
	c->extra_buf = NULL;
	c->page_buf = NULL;
	c->def = c->rep = NULL;
	c->vals = NULL;
	c->n_levels = c->li = c->vi = c->n_vals = 0;
}

/* Load the next data page; *done when the chunk has no more pages. */
static const char *
next_page(PqCursor *c, bool *done)
{
	const PqLeaf *leaf = c->leaf;
	const char *err;

	free_page(c);
	*done = false;
	for (;;)
	{
		PqPageHeader ph;
		size_t		hlen;
		const uint8_t *body;
		int32_t		n;
		const uint8_t *vp;
		size_t		vlen;
		int			encoding;

		if (c->levels_read >= c->cm->num_values || c->pos >= c->chunk_len)
		{
			if (c->levels_read != c->cm->num_values)
				return "column chunk holds fewer values than its metadata says";
			*done = true;
			return NULL;
		}
		if ((err = pq_decode_page_header(c->chunk + c->pos, c->chunk_len - c->pos, &hlen,
										 &ph)) != NULL)
			return err;
		c->pos += hlen;
		body = c->chunk + c->pos;
		if ((err = check_page(c, &ph, c->chunk_len - c->pos)) != NULL)
			return err;
		c->pos += (size_t) ph.compressed_size;

		if (ph.type == PQ_PAGE_DICTIONARY)
		{
			if ((err = load_dictionary(c, &ph, body)) != NULL)
				return err;
			continue;
		}
		if (ph.type != PQ_PAGE_DATA && ph.type != PQ_PAGE_DATA_V2)
			continue;			/* index pages and unknown pages are skipped */

		n = ph.num_values;
		if (n > c->cm->num_values - c->levels_read)
			return "pages hold more values than the column chunk's metadata says";
		c->n_levels = n;
		c->def = mem_alloc(c->f->mem, sizeof(uint32_t) * (size_t) n);
		c->rep = mem_alloc(c->f->mem, sizeof(uint32_t) * (size_t) n);
		c->vals = mem_alloc(c->f->mem, sizeof(PqValue) * (size_t) n);
		c->page_buf = mem_alloc(c->f->mem, (size_t) ph.uncompressed_size);

		if (ph.type == PQ_PAGE_DATA)
		{
			const uint8_t *p = c->page_buf;
			const uint8_t *end = c->page_buf + ph.uncompressed_size;

			if ((err = pq_decompress(c->cm->codec, body, (size_t) ph.compressed_size,
									 c->page_buf, (size_t) ph.uncompressed_size)) != NULL)
				return err;
			if (leaf->max_rep > 0)
			{
				if (ph.rep_encoding != PQ_ENC_RLE)
					return "unsupported repetition level encoding (RLE expected)";
				if ((err = read_levels_v1(&p, end, leaf->max_rep, c->rep, n)) != NULL)
					return err;
			}
			else
				memset(c->rep, 0, sizeof(uint32_t) * (size_t) n);
			if (leaf->max_def > 0)
			{
				if (ph.def_encoding != PQ_ENC_RLE)
					return "unsupported definition level encoding (RLE expected)";
				if ((err = read_levels_v1(&p, end, leaf->max_def, c->def, n)) != NULL)
					return err;
			}
			vp = p;
			vlen = (size_t) (end - p);
		}
		else
		{
			size_t		lv = (size_t) ph.rep_length + (size_t) ph.def_length;

			if (lv > (size_t) ph.compressed_size || lv > (size_t) ph.uncompressed_size)
				return "v2 page level lengths exceed the page";
			if (leaf->max_rep > 0)
				err = pq_rle_decode(body, (size_t) ph.rep_length,
									pq_bit_width((uint32_t) leaf->max_rep), c->rep, (size_t) n);
			else
				memset(c->rep, 0, sizeof(uint32_t) * (size_t) n);
			if (err == NULL && leaf->max_def > 0)
				err = pq_rle_decode(body + ph.rep_length, (size_t) ph.def_length,
									pq_bit_width((uint32_t) leaf->max_def), c->def, (size_t) n);
			if (err)
				return err;
			vlen = (size_t) ph.uncompressed_size - lv;
			if (ph.is_compressed && c->cm->codec != PQ_CODEC_UNCOMPRESSED)
				err = pq_decompress(c->cm->codec, body + lv, (size_t) ph.compressed_size - lv,
									c->page_buf, vlen);
			else
				err = pq_decompress(PQ_CODEC_UNCOMPRESSED, body + lv,
									(size_t) ph.compressed_size - lv, c->page_buf, vlen);
			if (err)
				return err;
			vp = c->page_buf;
		}
		encoding = ph.encoding;

		/* count the non-null values and check the levels' range */
		c->n_vals = 0;
		for (int32_t i = 0; i < n; i++)
		{
			if (leaf->max_def == 0)
				c->def[i] = 0;
			if (c->def[i] > (uint32_t) leaf->max_def || c->rep[i] > (uint32_t) leaf->max_rep)
				return "level out of range";
			if (c->def[i] == (uint32_t) leaf->max_def)
				c->n_vals++;
		}
		if (n > 0 && c->levels_read == 0 && c->rep[0] != 0)
			return "column chunk does not start a new row";
		if ((err = decode_values(c, encoding, vp, vlen, c->n_vals)) != NULL)
			return err;
		c->levels_read += n;
		if (n == 0)
			continue;
		return NULL;
	}
}

/* Open a cursor over leaf column `leaf` of row group `row_group`. */
const char *
pq_cursor_open(PqFile *f, int row_group, int leaf, PqCursor **out)
{
	PqCursor   *c;
	int64_t		start;

	*out = NULL;
	if (row_group < 0 || row_group >= f->meta.n_row_groups || leaf < 0 || leaf >= f->n_leaves)
		return "row group or column out of range";
	c = mem_alloc(f->mem, sizeof(PqCursor));
	memset(c, 0, sizeof(PqCursor));
	*out = c;
	c->f = f;
	c->leaf = &f->leaves[leaf];
	c->cm = &f->meta.row_groups[row_group].columns[leaf];
	start = c->cm->data_page_offset;
	if (c->cm->dictionary_page_offset > 0 && c->cm->dictionary_page_offset < start)
		start = c->cm->dictionary_page_offset;
	/* bounds were checked by pq_file_open */
	if ((uint64_t) c->cm->total_compressed_size > f->lim.max_chunk)
		return "column chunk is larger than the reader accepts";
	c->chunk_len = (size_t) c->cm->total_compressed_size;
	c->chunk = mem_alloc(f->mem, c->chunk_len);
	return f->src.read_at(f->src.arg, (uint64_t) start, c->chunk_len, c->chunk);
}

void
pq_cursor_close(PqCursor *c)
{
	if (c == NULL)
		return;
	free_page(c);
	mem_free(c->f->mem, c->dict);
	mem_free(c->f->mem, c->dict_buf);
	mem_free(c->f->mem, c->chunk);
	mem_free(c->f->mem, c);
}

/*
 * The next level entry: its definition and repetition levels and, when
 * def == max_def, its value. *done at the end of the chunk.
 */
const char *
pq_cursor_next(PqCursor *c, bool *done, uint32_t *def, uint32_t *rep, PqValue *val)
{
	const char *err;

	*done = false;
	if (c->li >= c->n_levels)
	{
		if ((err = next_page(c, done)) != NULL || *done)
			return err;
	}
	*def = c->def[c->li];
	*rep = c->rep[c->li];
	c->li++;
	if (*def == (uint32_t) c->leaf->max_def)
		*val = c->vals[c->vi++];
	return NULL;
}

/* The repetition level of the next entry without consuming it. */
const char *
pq_cursor_peek_rep(PqCursor *c, bool *done, uint32_t *rep)
{
	const char *err;

	*done = false;
	if (c->li >= c->n_levels)
	{
		if ((err = next_page(c, done)) != NULL || *done)
			return err;
	}
	*rep = c->rep[c->li];
	return NULL;
}
