/*-------------------------------------------------------------------------
 *
 * reader.h
 *	  Parquet file reader: footer and schema (PqFile), and a cursor that
 *	  yields one column chunk's levels and values page by page (PqCursor).
 *
 * Plain C (no postgres.h), so the reader builds into a fuzzer. Every
 * function returns NULL on success or a static error string; nothing raises
 * or aborts on malformed input. copy_from.c wraps it for PostgreSQL.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_PARQUET_READER_H
#define ANOMSTREAM_PARQUET_READER_H

#include "parquet/format.h"

/* Where the bytes come from: read exactly len bytes at offset into dst. */
typedef struct PqReadSource
{
	uint64_t	size;
	const char *(*read_at) (void *arg, uint64_t offset, size_t len, uint8_t *dst);
	void	   *arg;
} PqReadSource;

/* Caps on sizes that a file announces before the reader allocates for them. */
typedef struct PqReaderLimits
{
	size_t		max_footer;		/* FileMetaData bytes */
	size_t		max_chunk;		/* one column chunk as stored */
	size_t		max_page;		/* one page, decompressed */
	int32_t		max_page_values;	/* levels in one page, entries in a dictionary */
} PqReaderLimits;

extern const PqReaderLimits pq_default_limits;

/* One value as decoded: integers (and booleans) in i, FLOAT and DOUBLE in d,
 * BYTE_ARRAY, FIXED_LEN_BYTE_ARRAY and INT96 as bytes in b. */
typedef union PqValue
{
	int64_t		i;
	double		d;
	PqBytes		b;
} PqValue;

/* A leaf (primitive) column of the schema. */
typedef struct PqLeaf
{
	const PqSchemaElement *el;
	int			max_def;
	int			max_rep;
	int			field;			/* index of its top-level field */
} PqLeaf;

/*
 * A top-level field. Scalars: def < null_below means NULL. Lists (LIST
 * groups of one primitive, and legacy repeated primitives): def < null_below
 * is a NULL list, def < elem_below an empty list, def < max_def a NULL
 * element, otherwise a value; a repetition level of 0 starts a new row.
 */
typedef struct PqField
{
	const char *name;
	const PqSchemaElement *el;	/* the top-level schema element */
	int			leaf;			/* its leaf, or -1 when unsupported */
	bool		is_list;
	int			null_below;
	int			elem_below;
	const char *unsupported;	/* why it cannot be read, or NULL */
} PqField;

typedef struct PqFile
{
	PqReadSource src;
	const PqAllocator *mem;
	PqReaderLimits lim;
	uint8_t    *footer;
	PqFileMeta	meta;
	PqLeaf	   *leaves;
	int			n_leaves;
	PqField    *fields;
	int			n_fields;
} PqFile;

typedef struct PqCursor
{
	PqFile	   *f;
	const PqLeaf *leaf;
	const PqColumnMeta *cm;
	uint8_t    *chunk;			/* the column chunk as stored */
	size_t		chunk_len;
	size_t		pos;			/* next page header in chunk */
	int64_t		levels_read;	/* levels of the pages loaded so far */
	PqValue    *dict;
	int32_t		n_dict;
	uint8_t    *dict_buf;
	uint8_t    *page_buf;
	uint8_t    *extra_buf;		/* values assembled outside page_buf */
	uint32_t   *def;
	uint32_t   *rep;
	PqValue    *vals;
	int32_t		n_levels;
	int32_t		li;				/* next level */
	int32_t		vi;				/* next value */
	int32_t		n_vals;
} PqCursor;

extern const char *pq_file_open(const PqReadSource *src, const PqAllocator *mem,
								const PqReaderLimits *lim, PqFile **out);
extern void pq_file_close(PqFile *f);
extern const char *pq_cursor_open(PqFile *f, int row_group, int leaf, PqCursor **out);
extern void pq_cursor_close(PqCursor *c);
extern const char *pq_cursor_next(PqCursor *c, bool *done, uint32_t *def, uint32_t *rep,
								  PqValue *val);
extern const char *pq_cursor_peek_rep(PqCursor *c, bool *done, uint32_t *rep);

#endif
