/*-------------------------------------------------------------------------
 *
 * codec.c
 *	  Page compression: SNAPPY (raw block format, libsnappy), GZIP (an RFC
 *	  1952 member, zlib), ZSTD (a zstd frame, libzstd) and UNCOMPRESSED.
 *
 * Compression keeps one zstd context per writer (PqCodecState) so pages do
 * not pay for a new context. Decompression writes into a caller buffer of the
 * exact size the page header announces and fails unless the codec produces
 * exactly that many bytes: a page never decompresses into more memory than
 * the caller allocated (and the caller caps that size).
 *
 *-------------------------------------------------------------------------
 */
#include "parquet/format.h"

#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>

struct PqCodecState
{
	const PqAllocator *mem;
	int			codec;
	int			level;
	ZSTD_CCtx  *zctx;
};

const char *
pq_codec_name(int codec)
{
	switch (codec)
	{
		case PQ_CODEC_UNCOMPRESSED:
			return "uncompressed";
		case PQ_CODEC_SNAPPY:
			return "snappy";
		case PQ_CODEC_GZIP:
			return "gzip";
		case PQ_CODEC_LZO:
			return "lzo";
		case PQ_CODEC_BROTLI:
			return "brotli";
		case PQ_CODEC_LZ4:
			return "lz4";
		case PQ_CODEC_ZSTD:
			return "zstd";
		case PQ_CODEC_LZ4_RAW:
			return "lz4_raw";
	}
	return "unknown";
}

PqCodecState *
pq_codec_create(const PqAllocator *mem, int codec, int level)
{
	PqCodecState *cs = mem->alloc(mem->arg, sizeof(PqCodecState));

	cs->mem = mem;
	cs->codec = codec;
	cs->level = level;
	cs->zctx = NULL;
	if (codec == PQ_CODEC_ZSTD)
		cs->zctx = ZSTD_createCCtx();
	return cs;
}

/* Release the library state (not the struct); safe to call twice. */
void
pq_codec_release(PqCodecState *cs)
{
	if (cs && cs->zctx)
	{
		ZSTD_freeCCtx(cs->zctx);
		cs->zctx = NULL;
	}
}

void
pq_codec_destroy(PqCodecState *cs)
{
	if (cs == NULL)
		return;
	pq_codec_release(cs);
	cs->mem->free(cs->mem->arg, cs);
}

/*
 * Append the compressed form of src[0..n) to out. Returns NULL or an error.
 */
const char *
pq_compress(PqCodecState *cs, const uint8_t *src, size_t n, PqBuf *out)
{
	switch (cs->codec)
	{
		case PQ_CODEC_UNCOMPRESSED:
			pq_buf_append(out, src, n);
			return NULL;
		case PQ_CODEC_SNAPPY:
			{
				size_t		cap = snappy_max_compressed_length(n);

				pq_buf_reserve(out, cap);
				if (snappy_compress((const char *) src, n,
									(char *) out->data + out->len, &cap) != SNAPPY_OK)
					return "snappy compression failed";
				out->len += cap;
				return NULL;
			}
		case PQ_CODEC_GZIP:
			{
				z_stream	zs;
				int			rc;

				memset(&zs, 0, sizeof(zs));
				/* windowBits 15 + 16: a gzip (RFC 1952) member, not a zlib stream */
				if (deflateInit2(&zs, cs->level, Z_DEFLATED, 15 + 16, 8,
								 Z_DEFAULT_STRATEGY) != Z_OK)
					return "gzip initialisation failed";
				pq_buf_reserve(out, deflateBound(&zs, n) + 32);
				zs.next_in = (Bytef *) src;
				zs.avail_in = n;
				zs.next_out = out->data + out->len;
				zs.avail_out = out->cap - out->len;
				rc = deflate(&zs, Z_FINISH);
				if (rc != Z_STREAM_END)
				{
					deflateEnd(&zs);
					return "gzip compression failed";
				}
				out->len += zs.total_out;
				deflateEnd(&zs);
				return NULL;
			}
		case PQ_CODEC_ZSTD:
			{
				size_t		cap = ZSTD_compressBound(n);
				size_t		rc;

				pq_buf_reserve(out, cap);
				rc = ZSTD_compressCCtx(cs->zctx, out->data + out->len, cap, src, n, cs->level);
				if (ZSTD_isError(rc))
					return ZSTD_getErrorName(rc);
				out->len += rc;
				return NULL;
			}
	}
	return "unsupported compression codec";
}

/*
 * Decompress src[0..n) into exactly dst_len bytes at dst. Returns NULL or an
 * error.
 */
const char *
pq_decompress(int codec, const uint8_t *src, size_t n, uint8_t *dst, size_t dst_len)
{
	switch (codec)
	{
		case PQ_CODEC_UNCOMPRESSED:
			if (n != dst_len)
				return "uncompressed page sizes disagree";
			if (n)
				memcpy(dst, src, n);
			return NULL;
		case PQ_CODEC_SNAPPY:
			{
				size_t		ulen;

				if (snappy_uncompressed_length((const char *) src, n, &ulen) != SNAPPY_OK)
					return "corrupt snappy page";
				if (ulen != dst_len)
					return "snappy page size disagrees with the page header";
				if (ulen == 0)
					return NULL;
				if (snappy_validate_compressed_buffer((const char *) src, n) != SNAPPY_OK)
					return "corrupt snappy page";
				if (snappy_uncompress((const char *) src, n, (char *) dst, &ulen) != SNAPPY_OK ||
					ulen != dst_len)
					return "corrupt snappy page";
				return NULL;
			}
		case PQ_CODEC_GZIP:
			{
				z_stream	zs;
				int			rc;
				size_t		produced;

				memset(&zs, 0, sizeof(zs));
				/* 15 + 32: accept a gzip member (and, leniently, a zlib stream) */
				if (inflateInit2(&zs, 15 + 32) != Z_OK)
					return "gzip initialisation failed";
				zs.next_in = (Bytef *) src;
				zs.avail_in = n;
				zs.next_out = dst;
				zs.avail_out = dst_len;
				rc = inflate(&zs, Z_FINISH);
				produced = zs.total_out;
				inflateEnd(&zs);
				if (rc != Z_STREAM_END)
					return "corrupt gzip page (or larger than the page header says)";
				if (produced != dst_len)
					return "gzip page size disagrees with the page header";
				return NULL;
			}
		case PQ_CODEC_ZSTD:
			{
				size_t		rc = ZSTD_decompress(dst, dst_len, src, n);

				if (ZSTD_isError(rc))
					return "corrupt zstd page (or larger than the page header says)";
				if (rc != dst_len)
					return "zstd page size disagrees with the page header";
				return NULL;
			}
	}
	return "unsupported compression codec (anomstream reads uncompressed, snappy, gzip and zstd)";
}
