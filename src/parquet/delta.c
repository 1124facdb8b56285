/*-------------------------------------------------------------------------
 *
 * delta.c
 *	  Decoders for the encodings newer writers use in data pages:
 *	  DELTA_BINARY_PACKED (integers, and the lengths of the two below),
 *	  DELTA_LENGTH_BYTE_ARRAY, DELTA_BYTE_ARRAY and BYTE_STREAM_SPLIT.
 *
 * DELTA_BINARY_PACKED: a header (values per block, miniblocks per block,
 * total count, first value as zigzag), then blocks of (zigzag min delta,
 * one bit width per miniblock, the miniblocks bit-packed LSB first); each
 * value is the previous one plus min delta plus its packed number, with
 * wrapping two's complement arithmetic.
 *
 * Invariants: reads stay inside [p, p + len); exactly n values are produced
 * or an error is returned; bit widths above 64 and block shapes that do not
 * divide evenly are errors; the bytes DELTA_BYTE_ARRAY assembles are capped
 * by the caller's limit. Plain C (no postgres.h), like the rest of the reader.
 *
 *-------------------------------------------------------------------------
 */
#include "parquet/delta.h"

static bool
uleb(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	int			shift = 0;

	*v = 0;
	while (*p < end && shift <= 63)
	{
		uint8_t		b = *(*p)++;

		*v |= (uint64_t) (b & 0x7F) << shift;
		if (!(b & 0x80))
			return true;
		shift += 7;
	}
	return false;
}

static bool
zigzag(const uint8_t **p, const uint8_t *end, int64_t *v)
{
	uint64_t	u;

	if (!uleb(p, end, &u))
		return false;
	*v = (int64_t) (u >> 1) ^ -(int64_t) (u & 1);
	return true;
}

/*
 * Decode n values into out; *used receives the bytes consumed (the whole
 * blocks read). Returns NULL or an error.
 */
const char *
pq_delta_decode(const uint8_t *p, size_t len, int64_t *out, size_t n, size_t *used)
{
	const uint8_t *start = p;
	const uint8_t *end = p + len;
	uint64_t	block,
				minis,
				total;
	int64_t		first;
	uint64_t	per_mini;
	size_t		got = 0;
	uint64_t	prev;

	if (!uleb(&p, end, &block) || !uleb(&p, end, &minis) || !uleb(&p, end, &total) ||
		!zigzag(&p, end, &first))
		return "DELTA_BINARY_PACKED header truncated";
	if (block == 0 || block % 128 != 0 || minis == 0 || minis > block || block % minis != 0 ||
		(block / minis) % 32 != 0 || block > (1 << 20))
		return "DELTA_BINARY_PACKED block shape is invalid";
	if (total < n)
		return "DELTA_BINARY_PACKED holds fewer values than the page";
	per_mini = block / minis;
	prev = (uint64_t) first;
	if (n > 0)
		out[got++] = first;
	/* the header counts every value; read whole blocks until n are decoded */
	while (got < n)
	{
		int64_t		min_delta;
		const uint8_t *widths;

		if (!zigzag(&p, end, &min_delta))
			return "DELTA_BINARY_PACKED block header truncated";
		if ((uint64_t) (end - p) < minis)
			return "DELTA_BINARY_PACKED bit widths truncated";
		widths = p;
		p += minis;
		for (uint64_t m = 0; m < minis && got < n; m++)
		{
			int			w = widths[m];
			uint64_t	bytes = per_mini * (uint64_t) w / 8;
			unsigned __int128 acc = 0;
			int			bits = 0;

			if (w > 64)
				return "DELTA_BINARY_PACKED bit width above 64";
			if ((uint64_t) (end - p) < bytes)
				return "DELTA_BINARY_PACKED miniblock truncated";
			for (uint64_t i = 0; i < per_mini && got < n; i++)
			{
				uint64_t	v;

				while (bits < w)
				{
					acc |= (unsigned __int128) (*p++) << bits;
					bits += 8;
				}
				v = w == 64 ? (uint64_t) acc : (uint64_t) acc & ((UINT64_C(1) << w) - 1);
				acc >>= w;
				bits -= w;
				prev = prev + (uint64_t) min_delta + v;
				out[got++] = (int64_t) prev;
			}
			/* skip what is left of the miniblock (padding, or unneeded values) */
			p = widths + minis;
			for (uint64_t k = 0; k <= m; k++)
				p += per_mini * widths[k] / 8;
		}
	}
	if (used)
		*used = (size_t) (p - start);
	return NULL;
}

/* BYTE_STREAM_SPLIT: byte k of value i is at k * n + i; out gets n * width bytes. */
const char *
pq_byte_stream_split_decode(const uint8_t *p, size_t len, size_t width, uint8_t *out, size_t n)
{
	if (width == 0 || n > len / width)
		return "BYTE_STREAM_SPLIT data truncated";
	for (size_t k = 0; k < width; k++)
		for (size_t i = 0; i < n; i++)
			out[i * width + k] = p[k * n + i];
	return NULL;
}
