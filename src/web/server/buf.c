/*-------------------------------------------------------------------------
 *
 * buf.c
 *	  Bounded growable buffers for response bodies.
 *
 * A Buf never grows past its limit: an append that would exceed it is dropped and the buffer is
 * marked overflowed, so a caller can answer with an error instead of an unbounded allocation.
 * Allocation failure is treated the same way.
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "web.h"

void
buf_init(Buf *b, size_t limit)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->limit = limit;
	b->overflow = false;
}

void
buf_free(Buf *b)
{
	free(b->data);
	buf_init(b, b->limit);
}

void
buf_reset(Buf *b)
{
	b->len = 0;
	b->overflow = false;
	if (b->data)
		b->data[0] = '\0';
}

/*
 * Make room for n more bytes plus a terminating NUL; false (and overflow set) if impossible.
 */
static bool
buf_reserve(Buf *b, size_t n)
{
	size_t		need;
	size_t		cap;
	char	   *p;

	if (b->overflow)
		return false;
	if (n > b->limit || b->len + n + 1 > b->limit)
	{
		b->overflow = true;
		return false;
	}
	need = b->len + n + 1;
	if (need <= b->cap)
		return true;
	cap = b->cap ? b->cap : 1024;
	while (cap < need)
		cap *= 2;
	if (cap > b->limit)
		cap = b->limit;
	p = realloc(b->data, cap);
	if (p == NULL)
	{
		b->overflow = true;
		return false;
	}
	b->data = p;
	b->cap = cap;
	return true;
}

void
buf_append(Buf *b, const char *s, size_t n)
{
	if (!buf_reserve(b, n))
		return;
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
buf_puts(Buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void
buf_printf(Buf *b, const char *fmt,...)
{
	va_list		ap;
	char		small[256];
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
	{
		b->overflow = true;
		return;
	}
	if ((size_t) n < sizeof(small))
	{
		buf_append(b, small, n);
		return;
	}
	if (!buf_reserve(b, n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, n + 1, fmt, ap);
	va_end(ap);
	b->len += n;
}

/*
 * Milliseconds of a monotonic clock.
 */
int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
