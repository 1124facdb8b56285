/*-------------------------------------------------------------------------
 *
 * buf.c
 *	  The growable byte buffer (PqBuf) used by the Parquet encoder and reader.
 *
 * Invariant: len <= cap; data is NULL only while cap is 0. Growth doubles, so
 * appending n bytes one at a time costs O(n). Memory comes from the buffer's
 * allocator (see format.h).
 *
 *-------------------------------------------------------------------------
 */
#include "parquet/format.h"

void
pq_buf_init(PqBuf *b, const PqAllocator *mem, size_t cap)
{
	b->mem = mem;
	b->len = 0;
	b->cap = cap;
	b->data = cap ? mem->alloc(mem->arg, cap) : NULL;
}

/* Make the capacity at least need bytes. */
void
pq_buf_grow(PqBuf *b, size_t need)
{
	size_t		cap = b->cap ? b->cap : 256;

	while (cap < need)
		cap *= 2;
	if (b->data == NULL)
		b->data = b->mem->alloc(b->mem->arg, cap);
	else
		b->data = b->mem->realloc(b->mem->arg, b->data, cap);
	b->cap = cap;
}

void
pq_buf_free(PqBuf *b)
{
	if (b->data)
		b->mem->free(b->mem->arg, b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}
