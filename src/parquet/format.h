/*-------------------------------------------------------------------------
 *
 * format.h
 *	  Parquet file-format constants, metadata structs and the byte buffer
 *	  shared by the Thrift codec, the writer and the reader.
 *
 * Plain C: this header and the files that implement the file format
 * (thrift.c, metadata.c, levels.c, codec.c, reader.c) do not include
 * postgres.h, so the reader can be built into a fuzzer without a server.
 * Memory comes from a caller-supplied allocator (PqAllocator): inside
 * PostgreSQL it allocates in a memory context (and raises ERROR when out of
 * memory); outside it is malloc and aborts when out of memory. Allocation
 * sizes that depend on file contents are always capped before allocating,
 * so running out of memory is never caused by a malformed file.
 *
 * Numbers in enums are the Parquet Thrift enum values (parquet.thrift).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_PARQUET_FORMAT_H
#define ANOMSTREAM_PARQUET_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the Parquet code assumes a little-endian host (Parquet PLAIN encoding is little-endian)"
#endif

/* Physical types (Type) */
#define PQ_BOOLEAN			0
#define PQ_INT32			1
#define PQ_INT64			2
#define PQ_INT96			3
#define PQ_FLOAT			4
#define PQ_DOUBLE			5
#define PQ_BYTE_ARRAY		6
#define PQ_FIXED_LEN_BYTE_ARRAY 7

/* Repetition (FieldRepetitionType) */
#define PQ_REQUIRED			0
#define PQ_OPTIONAL			1
#define PQ_REPEATED			2

/* ConvertedType (legacy annotations) */
#define PQ_CT_NONE			(-1)
#define PQ_CT_UTF8			0
#define PQ_CT_MAP			1
#define PQ_CT_MAP_KEY_VALUE 2
#define PQ_CT_LIST			3
#define PQ_CT_ENUM			4
#define PQ_CT_DECIMAL		5
#define PQ_CT_DATE			6
#define PQ_CT_TIME_MILLIS	7
#define PQ_CT_TIME_MICROS	8
#define PQ_CT_TIMESTAMP_MILLIS 9
#define PQ_CT_TIMESTAMP_MICROS 10
#define PQ_CT_UINT_8		11
#define PQ_CT_UINT_16		12
#define PQ_CT_UINT_32		13
#define PQ_CT_UINT_64		14
#define PQ_CT_INT_8			15
#define PQ_CT_INT_16		16
#define PQ_CT_INT_32		17
#define PQ_CT_INT_64		18
#define PQ_CT_JSON			19
#define PQ_CT_BSON			20
#define PQ_CT_INTERVAL		21

/* LogicalType union members (field ids of the union) */
#define PQ_LT_NONE			0
#define PQ_LT_STRING		1
#define PQ_LT_MAP			2
#define PQ_LT_LIST			3
#define PQ_LT_ENUM			4
#define PQ_LT_DECIMAL		5
#define PQ_LT_DATE			6
#define PQ_LT_TIME			7
#define PQ_LT_TIMESTAMP		8
#define PQ_LT_INTEGER		10
#define PQ_LT_NULL			11
#define PQ_LT_JSON			12
#define PQ_LT_BSON			13
#define PQ_LT_UUID			14
#define PQ_LT_FLOAT16		15

/* TimeUnit union members */
#define PQ_UNIT_MILLIS		1
#define PQ_UNIT_MICROS		2
#define PQ_UNIT_NANOS		3

/* Encodings */
#define PQ_ENC_PLAIN		0
#define PQ_ENC_PLAIN_DICTIONARY 2
#define PQ_ENC_RLE			3
#define PQ_ENC_BIT_PACKED	4
#define PQ_ENC_DELTA_BINARY_PACKED 5
#define PQ_ENC_DELTA_LENGTH_BYTE_ARRAY 6
#define PQ_ENC_DELTA_BYTE_ARRAY 7
#define PQ_ENC_RLE_DICTIONARY 8
#define PQ_ENC_BYTE_STREAM_SPLIT 9

/* Compression codecs */
#define PQ_CODEC_UNCOMPRESSED 0
#define PQ_CODEC_SNAPPY		1
#define PQ_CODEC_GZIP		2
#define PQ_CODEC_LZO		3
#define PQ_CODEC_BROTLI		4
#define PQ_CODEC_LZ4		5
#define PQ_CODEC_ZSTD		6
#define PQ_CODEC_LZ4_RAW	7

/* Page types */
#define PQ_PAGE_DATA		0
#define PQ_PAGE_INDEX		1
#define PQ_PAGE_DICTIONARY	2
#define PQ_PAGE_DATA_V2		3

/* Memory supplied by the caller (see the file comment). */
typedef struct PqAllocator
{
	void	   *(*alloc) (void *arg, size_t size);
	void	   *(*realloc) (void *arg, void *ptr, size_t size);
	void		(*free) (void *arg, void *ptr);
	void	   *arg;
} PqAllocator;

/* A growable byte buffer. */
typedef struct PqBuf
{
	uint8_t    *data;
	size_t		len;
	size_t		cap;
	const PqAllocator *mem;
} PqBuf;

extern void pq_buf_init(PqBuf *b, const PqAllocator *mem, size_t cap);
extern void pq_buf_grow(PqBuf *b, size_t need);
extern void pq_buf_free(PqBuf *b);

/* Make room for n more bytes. */
static inline void
pq_buf_reserve(PqBuf *b, size_t n)
{
	if (b->len + n > b->cap)
		pq_buf_grow(b, b->len + n);
}

static inline void
pq_buf_append(PqBuf *b, const void *p, size_t n)
{
	pq_buf_reserve(b, n);
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
}

static inline void
pq_buf_byte(PqBuf *b, uint8_t v)
{
	pq_buf_reserve(b, 1);
	b->data[b->len++] = v;
}

static inline void
pq_buf_u32le(PqBuf *b, uint32_t v)
{
	pq_buf_append(b, &v, 4);
}

static inline void
pq_buf_uleb(PqBuf *b, uint64_t v)
{
	pq_buf_reserve(b, 10);
	while (v >= 0x80)
	{
		b->data[b->len++] = (uint8_t) (v | 0x80);
		v >>= 7;
	}
	b->data[b->len++] = (uint8_t) v;
}

/* A byte range inside a buffer that outlives it (not NUL-terminated). */
typedef struct PqBytes
{
	const uint8_t *ptr;
	uint32_t	len;
} PqBytes;

/* LogicalType annotation (only the members anomstream reads or writes). */
typedef struct PqLogical
{
	int			kind;			/* PQ_LT_* */
	int			scale;			/* DECIMAL */
	int			precision;		/* DECIMAL */
	bool		utc;			/* TIME, TIMESTAMP: isAdjustedToUTC */
	int			unit;			/* TIME, TIMESTAMP: PQ_UNIT_* */
	int			bit_width;		/* INTEGER */
	bool		is_signed;		/* INTEGER */
} PqLogical;

typedef struct PqSchemaElement
{
	int			type;			/* PQ_BOOLEAN...; -1 for a group */
	int			type_length;	/* FIXED_LEN_BYTE_ARRAY */
	int			repetition;		/* PQ_REQUIRED...; -1 if absent (root) */
	char	   *name;			/* NUL-terminated */
	int			num_children;	/* groups; -1 for a leaf */
	int			converted_type; /* PQ_CT_*; PQ_CT_NONE if absent */
	int			scale;
	int			precision;
	PqLogical	logical;
} PqSchemaElement;

typedef struct PqStatistics
{
	bool		has_null_count;
	int64_t		null_count;
	bool		has_min;
	bool		has_max;
	PqBytes		min;			/* PLAIN encoding without length prefix */
	PqBytes		max;
} PqStatistics;

typedef struct PqColumnMeta
{
	int			type;
	int			encodings[8];
	int			n_encodings;
	char	  **path;			/* path_in_schema (decoded files only) */
	int			path_len;
	int			codec;
	int64_t		num_values;
	int64_t		total_uncompressed_size;
	int64_t		total_compressed_size;
	int64_t		data_page_offset;
	int64_t		dictionary_page_offset; /* -1 if none */
	PqStatistics stats;
} PqColumnMeta;

typedef struct PqRowGroup
{
	PqColumnMeta *columns;
	int			n_columns;
	int64_t		total_byte_size;
	int64_t		num_rows;
	int64_t		file_offset;
	int64_t		total_compressed_size;
	int			ordinal;
} PqRowGroup;

typedef struct PqFileMeta
{
	int			version;
	PqSchemaElement *schema;
	int			n_schema;
	int64_t		num_rows;
	PqRowGroup *row_groups;
	int			n_row_groups;
	const char *created_by;
	int			n_column_orders;	/* writer: TYPE_ORDER for this many leaves */
} PqFileMeta;

typedef struct PqPageHeader
{
	int			type;
	int32_t		uncompressed_size;
	int32_t		compressed_size;
	int32_t		num_values;		/* data (v1, v2) and dictionary pages */
	int			encoding;
	int			def_encoding;	/* v1 */
	int			rep_encoding;	/* v1 */
	int32_t		num_nulls;		/* v2 */
	int32_t		num_rows;		/* v2 */
	int32_t		def_length;		/* v2 */
	int32_t		rep_length;		/* v2 */
	bool		is_compressed;	/* v2 */
	bool		has_stats;		/* v1 writer: write stats below */
	PqStatistics stats;
} PqPageHeader;

/* metadata.c */
extern void pq_encode_file_meta(PqBuf *out, const PqFileMeta *fm);
extern void pq_encode_page_header(PqBuf *out, const PqPageHeader *ph);
extern const char *pq_decode_file_meta(const uint8_t *p, size_t len,
									   const PqAllocator *mem, PqFileMeta *fm);
extern const char *pq_decode_page_header(const uint8_t *p, size_t len,
										 size_t *header_len, PqPageHeader *ph);

/* levels.c: RLE / bit-packed hybrid */
extern void pq_rle_encode(PqBuf *out, const uint8_t *vals8, const uint32_t *vals32,
						  size_t n, int bit_width);
extern const char *pq_rle_decode(const uint8_t *p, size_t len, int bit_width,
								 uint32_t *out, size_t n);
extern int	pq_bit_width(uint32_t max_value);

/* codec.c */
typedef struct PqCodecState PqCodecState;
extern PqCodecState *pq_codec_create(const PqAllocator *mem, int codec, int level);
extern void pq_codec_release(PqCodecState *cs);
extern void pq_codec_destroy(PqCodecState *cs);
extern const char *pq_compress(PqCodecState *cs, const uint8_t *src, size_t n, PqBuf *out);
extern const char *pq_decompress(int codec, const uint8_t *src, size_t n,
								 uint8_t *dst, size_t dst_len);
extern const char *pq_codec_name(int codec);

#endif
