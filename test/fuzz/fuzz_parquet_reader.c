/*-------------------------------------------------------------------------
 *
 * fuzz_parquet_reader.c
 *	  libFuzzer target for the Parquet reader (src/parquet/reader.c and the
 *	  file-format code under it), built without a server:
 *
 *	clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
 *	    src/parquet/buf.c src/parquet/thrift.c src/parquet/metadata.c \
 *	    src/parquet/levels.c src/parquet/codec.c src/parquet/delta.c \
 *	    src/parquet/reader.c test/fuzz/fuzz_parquet_reader.c \
 *	    -lzstd -lsnappy -lz -o test/fuzz/bin/fuzz_parquet_reader
 *	test/fuzz/bin/fuzz_parquet_reader -max_total_time=60 -rss_limit_mb=1024 \
 *	    <corpus dir> test/fuzz/parquet_seeds
 *
 * Each input is a whole file: open it, then read every leaf column of every
 * row group to the end, as COPY FROM does. Any outcome but a crash, a
 * sanitizer report, a leak or a timeout is fine: malformed input must end in
 * an error string. Allocations go through a tracking allocator that frees
 * whatever is left after each input, as a memory context would.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>

#include "parquet/reader.h"

typedef struct Block
{
	struct Block *prev;
	struct Block *next;
	size_t		size;
	max_align_t	data[];
} Block;

static Block head = {&head, &head, 0};

static void *
t_alloc(void *arg, size_t size)
{
	Block	   *b = malloc(sizeof(Block) + size);

	if (b == NULL)
		abort();				/* sizes are capped by the reader's limits */
	b->size = size;
	b->next = head.next;
	b->prev = &head;
	head.next->prev = b;
	head.next = b;
	return b->data;
}

static void
t_free(void *arg, void *p)
{
	Block	   *b = (Block *) ((char *) p - offsetof(Block, data));

	b->prev->next = b->next;
	b->next->prev = b->prev;
	free(b);
}

static void *
t_realloc(void *arg, void *p, size_t size)
{
	Block	   *old = (Block *) ((char *) p - offsetof(Block, data));
	void	   *n = t_alloc(arg, size);

	memcpy(n, p, old->size < size ? old->size : size);
	t_free(arg, p);
	return n;
}

static void
t_free_all(void)
{
	while (head.next != &head)
		t_free(NULL, head.next->data);
}

typedef struct Input
{
	const uint8_t *data;
	size_t		size;
} Input;

static const char *
read_at(void *arg, uint64_t offset, size_t len, uint8_t *dst)
{
	Input	   *in = arg;

	if (offset > in->size || len > in->size - offset)
		return "read past the end";
	memcpy(dst, in->data + offset, len);
	return NULL;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const PqAllocator mem = {t_alloc, t_realloc, t_free, NULL};
	static const PqReaderLimits lim = {
		.max_footer = 1 << 20,
		.max_chunk = 16 << 20,
		.max_page = 16 << 20,
		.max_page_values = 1 << 20,
	};
	Input		in = {data, size};
	PqReadSource src = {size, read_at, &in};
	PqFile	   *f = NULL;
	long		budget = 4 * 1000 * 1000;	/* level entries read per input */

	if (pq_file_open(&src, &mem, &lim, &f) == NULL)
	{
		for (int g = 0; g < f->meta.n_row_groups && budget > 0; g++)
		{
			for (int l = 0; l < f->n_leaves && budget > 0; l++)
			{
				PqCursor   *c = NULL;

				if (pq_cursor_open(f, g, l, &c) == NULL)
				{
					for (; budget > 0; budget--)
					{
						bool		done;
						uint32_t	def,
									rep;
						PqValue		v;

						if (pq_cursor_peek_rep(c, &done, &rep) != NULL || done)
							break;
						if (pq_cursor_next(c, &done, &def, &rep, &v) != NULL || done)
							break;
						/* touch the value's bytes, so ASan sees any bad pointer */
						if (def == (uint32_t) c->leaf->max_def && c->leaf->el->type >= PQ_INT96 &&
							c->leaf->el->type != PQ_FLOAT && c->leaf->el->type != PQ_DOUBLE &&
							v.b.len > 0)
							budget -= (v.b.ptr[0] + v.b.ptr[v.b.len - 1]) & 1;
					}
				}
				pq_cursor_close(c);
			}
		}
	}
	pq_file_close(f);
	t_free_all();
	return 0;
}
