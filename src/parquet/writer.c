/*-------------------------------------------------------------------------
 *
 * writer.c
 *	  The Parquet writer: encodes rows straight from Datums into per-column
 *	  buffers and writes each row group as column chunks of format v1 data
 *	  pages, then the footer.
 *
 * Per row group and column the writer keeps: the definition (and for arrays
 * repetition) levels, one byte per level; the PLAIN encoding of the non-null
 * values; and, while a dictionary pays off, a hash table of distinct values
 * and one dictionary index per value. With the dictionary on, a repeated
 * value is not kept twice: its PLAIN bytes are dropped again as soon as the
 * hash table finds it. When the dictionary grows too large or too unique,
 * the PLAIN buffer is rebuilt from the indices and the dictionary dropped.
 * Page boundaries (about PQ_PAGE_BYTES of PLAIN values) are recorded while
 * appending, at row boundaries.
 *
 * Invariants: every column chunk starts with at most one dictionary page;
 * ColumnMetaData sizes include page headers; num_values counts levels
 * (nulls included); statistics never hold NaN, are written with TYPE_ORDER
 * column orders, and are omitted for values longer than PQ_STATS_MAX_LEN.
 * Memory: column buffers live in a context reset after each row group, a
 * per-row context is reset after each row (detoasting, jsonb text), and
 * the footer's metadata lives in the writer's own context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/hashfn.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/arrayaccess.h"
#include "utils/memutils.h"

#include "parquet/writer.h"

#define PQ_PAGE_BYTES		(1024 * 1024)
#define PQ_OUT_FLUSH		(1024 * 1024)
#define PQ_STATS_MAX_LEN	64
#define DICT_MAX_BYTES		(1024 * 1024)
#define DICT_MAX_ENTRIES	65535

typedef struct PageBreak
{
	uint32		lev;			/* first level of the page */
	uint32		val;			/* first non-null value of the page */
} PageBreak;

typedef struct WCol
{
	PqColumnSpec spec;
	int			max_def;
	int			max_rep;
	const char *path[3];
	int			path_len;
	int			width;			/* PLAIN width of fixed-width types, else 0 */
	int			attidx;			/* index in the tuple descriptor */

	/* row group buffers (in rg_cxt) */
	PqBuf		values;
	uint8	   *def;
	uint8	   *rep;
	size_t		nlev;
	size_t		levcap;
	uint32		nvals;
	size_t		plain_bytes;	/* PLAIN size of all values, duplicates included */
	size_t		page_bytes;		/* PLAIN size since the last page break */
	PageBreak  *brk;
	int			nbrk;
	int			brkcap;

	/* dictionary */
	bool		dict_on;
	uint32	   *idx;
	size_t		idxcap;
	uint32	   *slots;			/* entry + 1, 0 = empty */
	uint32		nslots;
	uint32	   *ent_off;
	uint32	   *ent_len;
	uint32		nent;
	uint32		entcap;
	size_t		dict_bytes;
} WCol;

struct PqWriter
{
	MemoryContext cxt;			/* writer lifetime: metadata */
	MemoryContext rg_cxt;		/* reset after each row group */
	MemoryContext row_cxt;		/* reset after each row */
	const PqAllocator *mem;		/* allocates in cxt */
	const PqAllocator *rg_mem;	/* allocates in rg_cxt */
	PqWriterOptions opts;
	PqWriteFn	write;
	void	   *arg;
	int			ncols;
	WCol	   *cols;
	PqCodecState *codec;
	StringInfoData scratch;
	PqBuf		out;			/* bytes not yet handed to write() */
	uint64		offset;			/* file offset of out.data[0] + out.len */
	uint64		rows_in_group;
	uint64		rows;
	/* footer */
	PqRowGroup *groups;
	int			ngroups;
	int			groupcap;
	PqBuf		page;			/* scratch: uncompressed page body */
	PqBuf		cpage;			/* scratch: compressed page body */
	PqBuf		hdr;			/* scratch: page header */
	bool		finished;
	MemoryContextCallback codec_cb;
};

/* ---------- allocator over a memory context ---------- */

static void *
mcxt_alloc(void *arg, size_t size)
{
	return MemoryContextAllocHuge((MemoryContext) arg, size);
}

static void *
mcxt_realloc(void *arg, void *ptr, size_t size)
{
	return repalloc_huge(ptr, size);
}

static void
mcxt_free(void *arg, void *ptr)
{
	pfree(ptr);
}

/* An allocator that allocates in cxt (the struct itself lives in cxt). */
const PqAllocator *
pq_palloc_allocator(MemoryContext cxt)
{
	PqAllocator *a = MemoryContextAlloc(cxt, sizeof(PqAllocator));

	a->alloc = mcxt_alloc;
	a->realloc = mcxt_realloc;
	a->free = mcxt_free;
	a->arg = cxt;
	return a;
}

static void
release_codec(void *arg)
{
	pq_codec_release((PqCodecState *) arg);
}

/* ---------- output ---------- */

static void
out_flush(PqWriter *w)
{
	if (w->out.len > 0)
		w->write(w->arg, w->out.data, w->out.len);
	w->offset += w->out.len;
	w->out.len = 0;
}

static uint64
out_pos(PqWriter *w)
{
	return w->offset + w->out.len;
}

static void
out_append(PqWriter *w, const void *p, size_t n)
{
	if (w->out.len + n > PQ_OUT_FLUSH && w->out.len > 0)
		out_flush(w);
	if (n >= PQ_OUT_FLUSH)
	{
		w->write(w->arg, p, n);
		w->offset += n;
		return;
	}
	pq_buf_append(&w->out, p, n);
}

/* ---------- set-up ---------- */

static void
col_reset(PqWriter *w, WCol *c)
{
	pq_buf_init(&c->values, w->rg_mem, 64 * 1024);
	c->levcap = Min(w->opts.row_group_size, 65536);
	c->def = MemoryContextAlloc(w->rg_cxt, c->levcap);
	c->rep = c->max_rep > 0 ? MemoryContextAlloc(w->rg_cxt, c->levcap) : NULL;
	c->nlev = 0;
	c->nvals = 0;
	c->plain_bytes = 0;
	c->page_bytes = 0;
	c->nbrk = 0;
	c->brkcap = 16;
	c->brk = MemoryContextAlloc(w->rg_cxt, sizeof(PageBreak) * c->brkcap);
	c->dict_on = c->spec.physical != PQ_BOOLEAN;
	c->nent = 0;
	c->dict_bytes = 0;
	if (c->dict_on)
	{
		c->idxcap = c->levcap;
		c->idx = MemoryContextAlloc(w->rg_cxt, sizeof(uint32) * c->idxcap);
		c->nslots = 1024;
		c->slots = MemoryContextAllocZero(w->rg_cxt, sizeof(uint32) * c->nslots);
		c->entcap = 256;
		c->ent_off = MemoryContextAlloc(w->rg_cxt, sizeof(uint32) * c->entcap);
		c->ent_len = MemoryContextAlloc(w->rg_cxt, sizeof(uint32) * c->entcap);
	}
}

static int
plain_width(const PqColumnSpec *s)
{
	switch (s->physical)
	{
		case PQ_BOOLEAN:
			return 1;
		case PQ_INT32:
		case PQ_FLOAT:
			return 4;
		case PQ_INT64:
		case PQ_DOUBLE:
			return 8;
		case PQ_FIXED_LEN_BYTE_ARRAY:
			return s->type_length;
	}
	return 0;
}

PqWriter *
pq_writer_create(MemoryContext parent, TupleDesc tupdesc, const PqWriterOptions *opts,
				 PqWriteFn write, void *arg)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "anomstream parquet writer",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	PqWriter   *w = palloc0(sizeof(PqWriter));
	int			n = 0;

	w->cxt = cxt;
	w->rg_cxt = AllocSetContextCreate(cxt, "anomstream parquet row group",
									  ALLOCSET_DEFAULT_SIZES);
	w->row_cxt = AllocSetContextCreate(cxt, "anomstream parquet row",
									   ALLOCSET_DEFAULT_SIZES);
	w->mem = pq_palloc_allocator(cxt);
	w->rg_mem = pq_palloc_allocator(w->rg_cxt);
	w->opts = *opts;
	if (w->opts.row_group_size <= 0)
		w->opts.row_group_size = PQ_DEFAULT_ROW_GROUP_SIZE;
	w->write = write;
	w->arg = arg;
	w->cols = palloc0(sizeof(WCol) * Max(tupdesc->natts, 1));
	for (int i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);
		WCol	   *c;

		if (att->attisdropped)
			continue;
		for (int j = 0; j < n; j++)
			if (strcmp(w->cols[j].spec.name, NameStr(att->attname)) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_COLUMN),
						 errmsg("column name \"%s\" appears more than once", NameStr(att->attname)),
						 errdetail("Parquet columns are found by name, so names must be unique."),
						 errhint("Give the columns distinct aliases in the COPY query.")));
		c = &w->cols[n++];
		c->attidx = i;
		pq_column_spec(pstrdup(NameStr(att->attname)), att->atttypid, att->atttypmod, &c->spec);
		c->width = c->spec.physical == PQ_BYTE_ARRAY ? 0 : plain_width(&c->spec);
		c->path[0] = c->spec.name;
		if (c->spec.is_array)
		{
			c->max_def = 3;
			c->max_rep = 1;
			c->path[1] = "list";
			c->path[2] = "element";
			c->path_len = 3;
		}
		else
		{
			c->max_def = 1;
			c->max_rep = 0;
			c->path_len = 1;
		}
	}
	w->ncols = n;
	w->codec = pq_codec_create(w->mem, opts->codec, opts->level);
	/* the zstd context is malloc'd: free it whenever cxt goes, also on error */
	w->codec_cb.func = release_codec;
	w->codec_cb.arg = w->codec;
	MemoryContextRegisterResetCallback(cxt, &w->codec_cb);
	initStringInfo(&w->scratch);
	pq_buf_init(&w->out, w->mem, PQ_OUT_FLUSH + 4096);
	pq_buf_init(&w->page, w->mem, 0);
	pq_buf_init(&w->cpage, w->mem, 0);
	pq_buf_init(&w->hdr, w->mem, 256);
	pq_buf_append(&w->out, "PAR1", 4);
	MemoryContextSwitchTo(w->rg_cxt);
	for (int i = 0; i < w->ncols; i++)
		col_reset(w, &w->cols[i]);
	MemoryContextSwitchTo(old);
	return w;
}

/* ---------- appending ---------- */

static void
grow_levels(PqWriter *w, WCol *c, size_t need)
{
	size_t		cap = c->levcap;

	while (cap < need)
		cap *= 2;
	c->def = repalloc_huge(c->def, cap);
	if (c->rep)
		c->rep = repalloc_huge(c->rep, cap);
	c->levcap = cap;
}

/* Give up the dictionary: rebuild the PLAIN buffer from the indices. */
static void
dict_drop(PqWriter *w, WCol *c)
{
	PqBuf		plain;

	pq_buf_init(&plain, w->rg_mem, c->plain_bytes + 16);
	for (uint32 i = 0; i < c->nvals; i++)
	{
		uint32		e = c->idx[i];

		pq_buf_append(&plain, c->values.data + c->ent_off[e], c->ent_len[e]);
	}
	pq_buf_free(&c->values);
	c->values = plain;
	pfree(c->idx);
	pfree(c->slots);
	pfree(c->ent_off);
	pfree(c->ent_len);
	c->idx = c->slots = c->ent_off = c->ent_len = NULL;
	c->dict_on = false;
	c->nent = 0;
}

static uint32
value_hash(const uint8 *p, size_t len)
{
	if (len == 4)
	{
		uint32		v;

		memcpy(&v, p, 4);
		return murmurhash32(v);
	}
	if (len == 8)
	{
		uint64		v;

		memcpy(&v, p, 8);
		/* the 64-bit finaliser of MurmurHash3 */
		v ^= v >> 33;
		v *= UINT64CONST(0xff51afd7ed558ccd);
		v ^= v >> 33;
		v *= UINT64CONST(0xc4ceb9fe1a85ec53);
		v ^= v >> 33;
		return (uint32) v;
	}
	return hash_bytes(p, (int) len);
}

static void
dict_rehash(PqWriter *w, WCol *c)
{
	uint32		n = c->nslots * 2;
	uint32	   *s = MemoryContextAllocZero(w->rg_cxt, sizeof(uint32) * n);

	for (uint32 e = 0; e < c->nent; e++)
	{
		uint32		i = value_hash(c->values.data + c->ent_off[e], c->ent_len[e]) & (n - 1);

		while (s[i] != 0)
			i = (i + 1) & (n - 1);
		s[i] = e + 1;
	}
	pfree(c->slots);
	c->slots = s;
	c->nslots = n;
}

/*
 * The value just appended at values[off..] goes through the dictionary: a
 * value seen before is dropped from the PLAIN buffer again.
 */
static void
dict_add(PqWriter *w, WCol *c, size_t off)
{
	const uint8 *p = c->values.data + off;
	size_t		len = c->values.len - off;
	uint32		mask = c->nslots - 1;
	uint32		i = value_hash(p, len) & mask;
	uint32		vi = c->nvals - 1;

	if (vi >= c->idxcap)
	{
		c->idxcap *= 2;
		c->idx = repalloc_huge(c->idx, sizeof(uint32) * c->idxcap);
	}
	for (;;)
	{
		uint32		e = c->slots[i];

		if (e == 0)
			break;
		e--;
		if (c->ent_len[e] == len && memcmp(c->values.data + c->ent_off[e], p, len) == 0)
		{
			c->idx[vi] = e;
			c->values.len = off;
			return;
		}
		i = (i + 1) & mask;
	}
	/* a new entry */
	if (c->nent >= c->entcap)
	{
		c->entcap *= 2;
		c->ent_off = repalloc(c->ent_off, sizeof(uint32) * c->entcap);
		c->ent_len = repalloc(c->ent_len, sizeof(uint32) * c->entcap);
	}
	c->ent_off[c->nent] = (uint32) off;
	c->ent_len[c->nent] = (uint32) len;
	c->slots[i] = c->nent + 1;
	c->idx[vi] = c->nent;
	c->nent++;
	c->dict_bytes += len;
	if (c->nent * 2 > c->nslots)
		dict_rehash(w, c);
	if (c->dict_bytes > DICT_MAX_BYTES || c->nent >= DICT_MAX_ENTRIES ||
		(c->nvals >= 4096 && c->nent > c->nvals / 4 * 3))
		dict_drop(w, c);
}

static inline void
add_value(PqWriter *w, WCol *c, Datum d)
{
	size_t		off = c->values.len;
	size_t		len;

	pq_encode_datum(&c->spec, d, &c->values, &w->scratch);
	len = c->values.len - off;
	c->nvals++;
	c->plain_bytes += len;
	c->page_bytes += len;
	if (c->dict_on)
		dict_add(w, c, off);
}

static void
add_array(PqWriter *w, WCol *c, Datum d)
{
	AnyArrayType *a = DatumGetAnyArrayP(d);
	int			ndim = AARR_NDIM(a);
	int			nitems;
	array_iter	it;

	if (ndim > 1)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("column \"%s\": multi-dimensional arrays cannot be written to Parquet",
						c->spec.name),
				 errdetail("Only one-dimensional arrays are supported.")));
	nitems = ndim == 0 ? 0 : AARR_DIMS(a)[0];
	if (nitems == 0)
	{
		if (c->nlev + 1 > c->levcap)
			grow_levels(w, c, c->nlev + 1);
		c->rep[c->nlev] = 0;
		c->def[c->nlev++] = 1;
		return;
	}
	if (c->nlev + nitems > c->levcap)
		grow_levels(w, c, c->nlev + nitems);
	array_iter_setup(&it, a);
	for (int i = 0; i < nitems; i++)
	{
		bool		isnull;
		Datum		e = array_iter_next(&it, &isnull, i, c->spec.elmlen, c->spec.elmbyval,
										c->spec.elmalign);

		c->rep[c->nlev] = i == 0 ? 0 : 1;
		c->def[c->nlev++] = isnull ? 2 : 3;
		if (!isnull)
		{
			MemoryContext old = MemoryContextSwitchTo(w->rg_cxt);

			add_value(w, c, e);
			MemoryContextSwitchTo(old);
		}
	}
}

/* Append one row; values/isnull are indexed by the tuple descriptor's columns. */
void
pq_writer_append(PqWriter *w, Datum *values, bool *isnull)
{
	MemoryContext old = MemoryContextSwitchTo(w->row_cxt);
	size_t		buffered = 0;

	for (int i = 0; i < w->ncols; i++)
	{
		WCol	   *c = &w->cols[i];
		int			a = c->attidx;

		if (c->spec.is_array)
		{
			if (isnull[a])
			{
				if (c->nlev + 1 > c->levcap)
					grow_levels(w, c, c->nlev + 1);
				c->rep[c->nlev] = 0;
				c->def[c->nlev++] = 0;
			}
			else
				add_array(w, c, values[a]);
		}
		else
		{
			if (c->nlev >= c->levcap)
				grow_levels(w, c, c->nlev + 1);
			if (isnull[a])
				c->def[c->nlev++] = 0;
			else
			{
				c->def[c->nlev++] = 1;
				add_value(w, c, values[a]);
			}
		}
		if (c->page_bytes >= PQ_PAGE_BYTES)
		{
			if (c->nbrk >= c->brkcap)
			{
				c->brkcap *= 2;
				c->brk = repalloc(c->brk, sizeof(PageBreak) * c->brkcap);
			}
			c->brk[c->nbrk].lev = (uint32) c->nlev;
			c->brk[c->nbrk].val = c->nvals;
			c->nbrk++;
			c->page_bytes = 0;
		}
		buffered += c->values.len;
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(w->row_cxt);
	w->rows_in_group++;
	w->rows++;
	if (w->rows_in_group >= (uint64) w->opts.row_group_size || buffered > PQ_MAX_ROW_GROUP_BYTES)
		pq_writer_flush_row_group(w);
}

/* ---------- row groups ---------- */

/* PLAIN bytes of value i of a BYTE_ARRAY or fixed-width buffer, walking from (vi, off). */
static size_t
value_offset(WCol *c, uint32 target, uint32 *vi, size_t *off)
{
	if (c->width > 0)
		return (size_t) target * c->width;
	while (*vi < target)
	{
		uint32		l;

		memcpy(&l, c->values.data + *off, 4);
		*off += 4 + l;
		(*vi)++;
	}
	return *off;
}

typedef struct Stats
{
	bool		have;
	const uint8 *min;
	size_t		minlen;
	const uint8 *max;
	size_t		maxlen;
} Stats;

static void
stats_add(WCol *c, Stats *st, const uint8 *p, size_t len)
{
	PqOrder		order = c->spec.order;

	if (c->width == 0)
	{
		p += 4;
		len -= 4;
	}
	if (order == PO_FLOAT)
	{
		float4		f;

		memcpy(&f, p, 4);
		if (isnan(f))
			return;
	}
	else if (order == PO_DOUBLE)
	{
		float8		f;

		memcpy(&f, p, 8);
		if (isnan(f))
			return;
	}
	if (!st->have)
	{
		st->have = true;
		st->min = st->max = p;
		st->minlen = st->maxlen = len;
		return;
	}
	if (pq_compare_plain(order, p, len, st->min, st->minlen) < 0)
	{
		st->min = p;
		st->minlen = len;
	}
	if (pq_compare_plain(order, p, len, st->max, st->maxlen) > 0)
	{
		st->max = p;
		st->maxlen = len;
	}
}

static PqBytes
stats_copy(PqWriter *w, const uint8 *p, size_t len, PqOrder order, bool is_min)
{
	uint8	   *d = MemoryContextAlloc(w->cxt, Max(len, 1));
	PqBytes		b;

	memcpy(d, p, len);
	/* zeros: min is -0.0 and max is +0.0 */
	if (order == PO_FLOAT)
	{
		float4		f;

		memcpy(&f, d, 4);
		if (f == 0)
		{
			f = is_min ? -0.0f : 0.0f;
			memcpy(d, &f, 4);
		}
	}
	else if (order == PO_DOUBLE)
	{
		float8		f;

		memcpy(&f, d, 8);
		if (f == 0)
		{
			f = is_min ? -0.0 : 0.0;
			memcpy(d, &f, 8);
		}
	}
	b.ptr = d;
	b.len = (uint32) len;
	return b;
}

/* Compress the body in w->page and write header + body; returns the sizes. */
static void
write_page(PqWriter *w, PqPageHeader *ph, int64 *usize, int64 *csize)
{
	const char *err;

	w->cpage.len = 0;
	if ((err = pq_compress(w->codec, w->page.data, w->page.len, &w->cpage)) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("Parquet page compression failed: %s", err)));
	if (w->page.len > INT32_MAX || w->cpage.len > INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("Parquet page larger than 2 GB")));
	ph->uncompressed_size = (int32) w->page.len;
	ph->compressed_size = (int32) w->cpage.len;
	w->hdr.len = 0;
	pq_encode_page_header(&w->hdr, ph);
	out_append(w, w->hdr.data, w->hdr.len);
	out_append(w, w->cpage.data, w->cpage.len);
	*usize += w->hdr.len + w->page.len;
	*csize += w->hdr.len + w->cpage.len;
}

/* Append levels with their 4-byte length prefix (format v1). */
static void
page_levels(PqBuf *b, const uint8 *levels, size_t n, int max_level)
{
	size_t		at = b->len;
	uint32		l;

	pq_buf_u32le(b, 0);
	pq_rle_encode(b, levels, NULL, n, pq_bit_width((uint32) max_level));
	l = (uint32) (b->len - at - 4);
	memcpy(b->data + at, &l, 4);
}

static void
write_chunk(PqWriter *w, WCol *c, PqColumnMeta *cm)
{
	bool		use_dict = false;
	int			bw = 0;
	Stats		st = {0};
	int64		usize = 0,
				csize = 0;
	uint32		vi = 0;
	size_t		off = 0;
	int			ne = 0;

	if (c->dict_on && c->nent > 0)
	{
		bw = Max(pq_bit_width(c->nent - 1), 1);
		use_dict = c->dict_bytes + ((size_t) c->nvals * bw + 7) / 8 < c->plain_bytes;
		if (!use_dict)
			dict_drop(w, c);
	}

	/* statistics */
	if (use_dict)
	{
		for (uint32 e = 0; e < c->nent; e++)
			stats_add(c, &st, c->values.data + c->ent_off[e], c->ent_len[e]);
	}
	else if (c->width > 0)
	{
		for (uint32 i = 0; i < c->nvals; i++)
			stats_add(c, &st, c->values.data + (size_t) i * c->width, c->width);
	}
	else
	{
		size_t		p = 0;

		for (uint32 i = 0; i < c->nvals; i++)
		{
			uint32		l;

			memcpy(&l, c->values.data + p, 4);
			stats_add(c, &st, c->values.data + p, 4 + l);
			p += 4 + l;
		}
	}

	memset(cm, 0, sizeof(*cm));
	cm->type = c->spec.physical;
	cm->path = (char **) c->path;
	cm->path_len = c->path_len;
	cm->codec = w->opts.codec;
	cm->num_values = (int64) c->nlev;
	cm->dictionary_page_offset = -1;
	cm->stats.has_null_count = true;
	cm->stats.null_count = (int64) (c->nlev - c->nvals);
	if (st.have && st.minlen <= PQ_STATS_MAX_LEN && st.maxlen <= PQ_STATS_MAX_LEN)
	{
		cm->stats.has_min = cm->stats.has_max = true;
		cm->stats.min = stats_copy(w, st.min, st.minlen, c->spec.order, true);
		cm->stats.max = stats_copy(w, st.max, st.maxlen, c->spec.order, false);
	}
	cm->encodings[ne++] = PQ_ENC_PLAIN;
	cm->encodings[ne++] = PQ_ENC_RLE;
	if (use_dict)
		cm->encodings[ne++] = PQ_ENC_RLE_DICTIONARY;
	cm->n_encodings = ne;

	/* dictionary page */
	if (use_dict)
	{
		PqPageHeader ph = {0};

		w->page.len = 0;
		for (uint32 e = 0; e < c->nent; e++)
			pq_buf_append(&w->page, c->values.data + c->ent_off[e], c->ent_len[e]);
		ph.type = PQ_PAGE_DICTIONARY;
		ph.num_values = (int32) c->nent;
		ph.encoding = PQ_ENC_PLAIN;
		cm->dictionary_page_offset = (int64) out_pos(w);
		write_page(w, &ph, &usize, &csize);
	}

	/* data pages: one per recorded break, plus the first */
	cm->data_page_offset = (int64) out_pos(w);
	for (int p = 0; p <= c->nbrk; p++)
	{
		uint32		l0 = p == 0 ? 0 : c->brk[p - 1].lev;
		uint32		l1 = p == c->nbrk ? (uint32) c->nlev : c->brk[p].lev;
		uint32		v0 = p == 0 ? 0 : c->brk[p - 1].val;
		uint32		v1 = p == c->nbrk ? c->nvals : c->brk[p].val;
		PqPageHeader ph = {0};

		if (l1 == l0 && p > 0)
			continue;
		CHECK_FOR_INTERRUPTS();
		w->page.len = 0;
		if (c->max_rep > 0)
			page_levels(&w->page, c->rep + l0, l1 - l0, c->max_rep);
		page_levels(&w->page, c->def + l0, l1 - l0, c->max_def);
		if (use_dict)
		{
			pq_buf_byte(&w->page, (uint8) bw);
			pq_rle_encode(&w->page, NULL, c->idx + v0, v1 - v0, bw);
		}
		else if (c->spec.physical == PQ_BOOLEAN)
		{
			size_t		nb = (v1 - v0 + 7) / 8;
			uint8	   *d;

			pq_buf_reserve(&w->page, nb);
			d = w->page.data + w->page.len;
			memset(d, 0, nb);
			for (uint32 i = v0; i < v1; i++)
				if (c->values.data[i])
					d[(i - v0) / 8] |= 1 << ((i - v0) % 8);
			w->page.len += nb;
		}
		else
		{
			size_t		o0 = value_offset(c, v0, &vi, &off);
			size_t		o1 = value_offset(c, v1, &vi, &off);

			pq_buf_append(&w->page, c->values.data + o0, o1 - o0);
		}
		ph.type = PQ_PAGE_DATA;
		ph.num_values = (int32) (l1 - l0);
		ph.encoding = use_dict ? PQ_ENC_RLE_DICTIONARY : PQ_ENC_PLAIN;
		ph.def_encoding = PQ_ENC_RLE;
		ph.rep_encoding = PQ_ENC_RLE;
		write_page(w, &ph, &usize, &csize);
	}
	cm->total_uncompressed_size = usize;
	cm->total_compressed_size = csize;
}

/*
 * Write the rows buffered so far as one row group (nothing when there are
 * none). A continuous sink calls this at each micro-batch commit.
 */
void
pq_writer_flush_row_group(PqWriter *w)
{
	MemoryContext old;
	PqRowGroup *rg;
	uint64		start = out_pos(w);

	if (w->rows_in_group == 0)
		return;
	old = MemoryContextSwitchTo(w->cxt);
	if (w->ngroups >= w->groupcap)
	{
		w->groupcap = w->groupcap ? w->groupcap * 2 : 8;
		w->groups = w->groups ? repalloc(w->groups, sizeof(PqRowGroup) * w->groupcap)
			: palloc(sizeof(PqRowGroup) * w->groupcap);
	}
	rg = &w->groups[w->ngroups];
	memset(rg, 0, sizeof(*rg));
	rg->columns = palloc0(sizeof(PqColumnMeta) * Max(w->ncols, 1));
	rg->n_columns = w->ncols;
	rg->num_rows = (int64) w->rows_in_group;
	rg->ordinal = w->ngroups;
	MemoryContextSwitchTo(w->rg_cxt);
	for (int i = 0; i < w->ncols; i++)
	{
		write_chunk(w, &w->cols[i], &rg->columns[i]);
		rg->total_byte_size += rg->columns[i].total_uncompressed_size;
		rg->total_compressed_size += rg->columns[i].total_compressed_size;
	}
	rg->file_offset = (int64) start;
	w->ngroups++;
	w->rows_in_group = 0;
	MemoryContextReset(w->rg_cxt);
	w->rg_mem = pq_palloc_allocator(w->rg_cxt);
	for (int i = 0; i < w->ncols; i++)
		col_reset(w, &w->cols[i]);
	MemoryContextSwitchTo(old);
}

static void
schema_leaf(PqSchemaElement *se, const WCol *c, const char *name)
{
	memset(se, 0, sizeof(*se));
	se->type = c->spec.physical;
	se->type_length = c->spec.type_length;
	se->repetition = PQ_OPTIONAL;
	se->name = (char *) name;
	se->num_children = -1;
	se->converted_type = c->spec.converted;
	se->scale = c->spec.scale;
	se->precision = c->spec.precision;
	se->logical = c->spec.logical;
}

/* Flush the last row group, write the footer and hand out every byte. */
void
pq_writer_finish(PqWriter *w)
{
	MemoryContext old;
	PqFileMeta	fm = {0};
	int			n = 1;
	PqBuf		footer;
	uint32		flen;

	if (w->finished)
		return;
	pq_writer_flush_row_group(w);
	old = MemoryContextSwitchTo(w->cxt);
	for (int i = 0; i < w->ncols; i++)
		n += w->cols[i].spec.is_array ? 3 : 1;
	fm.schema = palloc0(sizeof(PqSchemaElement) * n);
	fm.schema[0].type = -1;
	fm.schema[0].repetition = -1;
	fm.schema[0].name = "schema";
	fm.schema[0].num_children = w->ncols;
	fm.schema[0].converted_type = PQ_CT_NONE;
	n = 1;
	for (int i = 0; i < w->ncols; i++)
	{
		WCol	   *c = &w->cols[i];

		if (!c->spec.is_array)
		{
			schema_leaf(&fm.schema[n++], c, c->spec.name);
			continue;
		}
		fm.schema[n].type = -1;
		fm.schema[n].repetition = PQ_OPTIONAL;
		fm.schema[n].name = (char *) c->spec.name;
		fm.schema[n].num_children = 1;
		fm.schema[n].converted_type = PQ_CT_LIST;
		fm.schema[n].logical.kind = PQ_LT_LIST;
		n++;
		fm.schema[n].type = -1;
		fm.schema[n].repetition = PQ_REPEATED;
		fm.schema[n].name = "list";
		fm.schema[n].num_children = 1;
		fm.schema[n].converted_type = PQ_CT_NONE;
		n++;
		schema_leaf(&fm.schema[n++], c, "element");
	}
	fm.n_schema = n;
	fm.version = 1;
	fm.num_rows = (int64) w->rows;
	fm.row_groups = w->groups;
	fm.n_row_groups = w->ngroups;
	fm.created_by = "anomstream version 0.1 (PostgreSQL " PG_VERSION ")";
	fm.n_column_orders = w->ncols;
	pq_buf_init(&footer, w->mem, 4096);
	pq_encode_file_meta(&footer, &fm);
	flen = (uint32) footer.len;
	out_append(w, footer.data, footer.len);
	out_append(w, &flen, 4);
	out_append(w, "PAR1", 4);
	out_flush(w);
	w->finished = true;
	MemoryContextSwitchTo(old);
}

uint64
pq_writer_rows(PqWriter *w)
{
	return w->rows;
}

uint64
pq_writer_bytes(PqWriter *w)
{
	return out_pos(w);
}

/* Free the writer's memory and codec state (also after an error). */
void
pq_writer_destroy(PqWriter *w)
{
	if (w == NULL)
		return;
	MemoryContextDelete(w->cxt);	/* runs release_codec */
}
