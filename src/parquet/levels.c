/*-------------------------------------------------------------------------
 *
 * levels.c
 *	  The RLE / bit-packed hybrid encoding, used for definition and
 *	  repetition levels and for dictionary indices.
 *
 * A stream is a sequence of runs. An RLE run is ULEB128(count << 1) followed
 * by the value in ceil(bit_width / 8) little-endian bytes. A bit-packed run is
 * ULEB128(groups << 1 | 1) followed by groups * 8 values packed LSB first,
 * bit_width bits each. Only the last bit-packed run of a stream may hold
 * padding (the reader knows how many values to take), so the encoder ends a
 * bit-packed run in the middle of a stream only on a multiple of 8 values.
 *
 * The decoder produces exactly n values or reports an error; it never reads
 * past len and never writes past n, whatever the run headers claim.
 *
 *-------------------------------------------------------------------------
 */
#include "parquet/format.h"

/* Number of bits needed for values 0..max_value. */
int
pq_bit_width(uint32_t max_value)
{
	int			w = 0;

	while (max_value)
	{
		w++;
		max_value >>= 1;
	}
	return w;
}

static inline uint32_t
val_at(const uint8_t *v8, const uint32_t *v32, size_t i)
{
	return v8 ? v8[i] : v32[i];
}

/* Length of the run of equal values starting at i, looking at most limit values. */
static size_t
run_length(const uint8_t *v8, const uint32_t *v32, size_t i, size_t n, size_t limit)
{
	uint32_t	v = val_at(v8, v32, i);
	size_t		j = i + 1;

	if (v8)
	{
		while (j < n && j - i < limit && v8[j] == v)
			j++;
	}
	else
	{
		while (j < n && j - i < limit && v32[j] == v)
			j++;
	}
	return j - i;
}

static void
emit_bitpacked(PqBuf *out, const uint8_t *v8, const uint32_t *v32,
			   size_t start, size_t count, int bit_width)
{
	size_t		groups = (count + 7) / 8;
	size_t		nbytes = groups * (size_t) bit_width;
	uint64_t	acc = 0;
	int			bits = 0;
	uint8_t    *dst;

	pq_buf_uleb(out, ((uint64_t) groups << 1) | 1);
	pq_buf_reserve(out, nbytes);
	dst = out->data + out->len;
	for (size_t i = 0; i < groups * 8; i++)
	{
		uint64_t	v = i < count ? val_at(v8, v32, start + i) : 0;

		acc |= v << bits;
		bits += bit_width;
		while (bits >= 8)
		{
			*dst++ = (uint8_t) acc;
			acc >>= 8;
			bits -= 8;
		}
	}
	out->len += nbytes;
}

/*
 * Append n values (from vals8 or vals32, whichever is not NULL) to out.
 * Runs of 8 or more equal values become RLE runs, the rest bit-packed runs.
 */
void
pq_rle_encode(PqBuf *out, const uint8_t *vals8, const uint32_t *vals32,
			  size_t n, int bit_width)
{
	size_t		i = 0;
	int			vbytes = (bit_width + 7) / 8;

	while (i < n)
	{
		size_t		r = run_length(vals8, vals32, i, n, SIZE_MAX);
		size_t		start;

		if (r >= 8)
		{
			uint32_t	v = val_at(vals8, vals32, i);

			pq_buf_uleb(out, (uint64_t) r << 1);
			pq_buf_append(out, &v, vbytes);
			i += r;
			continue;
		}
		start = i;
		for (;;)
		{
			i = (i + 8 <= n) ? i + 8 : n;
			if (i >= n || run_length(vals8, vals32, i, n, 8) >= 8)
				break;
		}
		emit_bitpacked(out, vals8, vals32, start, i - start, bit_width);
	}
}

/*
 * Decode exactly n values of bit_width bits from p[0..len) into out.
 * Returns NULL on success, else an error.
 */
const char *
pq_rle_decode(const uint8_t *p, size_t len, int bit_width, uint32_t *out, size_t n)
{
	const uint8_t *end = p + len;
	size_t		got = 0;
	int			vbytes = (bit_width + 7) / 8;
	uint32_t	mask = bit_width >= 32 ? 0xFFFFFFFFu : ((1u << bit_width) - 1);

	if (bit_width < 0 || bit_width > 32)
		return "RLE bit width out of range";
	while (got < n)
	{
		uint64_t	header = 0;
		int			shift = 0;

		for (;;)
		{
			uint8_t		b;

			if (p >= end)
				return "RLE data ended before all values were read";
			if (shift > 63)
				return "RLE run header too long";
			b = *p++;
			header |= (uint64_t) (b & 0x7F) << shift;
			if (!(b & 0x80))
				break;
			shift += 7;
		}
		if (header & 1)
		{
			uint64_t	groups = header >> 1;
			uint64_t	take;
			const uint8_t *run_end;
			uint64_t	acc = 0;
			int			bits = 0;

			if (groups == 0)
				return "empty bit-packed run";
			if (bit_width > 0 && groups > (uint64_t) (end - p))
				return "bit-packed run longer than the data";
			if ((uint64_t) bit_width * groups > (uint64_t) (end - p))
				return "bit-packed run longer than the data";
			run_end = p + bit_width * groups;
			take = groups > UINT64_MAX / 8 ? UINT64_MAX : groups * 8;
			if (take > n - got)
				take = n - got;
			for (uint64_t i = 0; i < take; i++)
			{
				while (bits < bit_width)
				{
					acc |= (uint64_t) (*p++) << bits;
					bits += 8;
				}
				out[got++] = (uint32_t) acc & mask;
				acc >>= bit_width;
				bits -= bit_width;
			}
			p = run_end;
		}
		else
		{
			uint64_t	count = header >> 1;
			uint32_t	v = 0;

			if (count == 0)
				return "empty RLE run";
			if ((size_t) (end - p) < (size_t) vbytes)
				return "RLE run value truncated";
			for (int k = 0; k < vbytes; k++)
				v |= (uint32_t) p[k] << (8 * k);
			p += vbytes;
			if (v > mask)
				return "RLE run value wider than the bit width";
			if (count > n - got)
				count = n - got;
			for (uint64_t i = 0; i < count; i++)
				out[got++] = v;
		}
	}
	return NULL;
}
