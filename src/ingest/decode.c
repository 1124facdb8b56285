/*-------------------------------------------------------------------------
 *
 * decode.c
 *	  A single-pass JSON decoder for the anomstream envelope (DESIGN.md §2, §3).
 *
 * Input: {"ts": T, "data": [E1, E2, ...]} where each Ei is a JSON object or a JSON string
 * holding one (double-encoded). No tree is built: the scanner walks the bytes once and writes
 * column values straight into DecodedRow structs, which is what makes ingest keep up with
 * COPY (a DOM per row costs more than COPY's whole path, notes/measurements.md).
 *
 * Invariants:
 *	- Never reads past buf + len, never recurses on input nesting (skipping nested values
 *	  uses a counter with a depth limit), never allocates outside the arena.
 *	- A syntax error of the envelope makes the whole message a dead letter; an error inside
 *	  one row (a double-encoded row that is not valid JSON, a bad value, duplicate keys) makes
 *	  only that row a dead letter, and the message's other rows are kept.
 *	- Keys match column names case-insensitively (ASCII); unknown keys are ignored; two keys
 *	  that name the same column make the row invalid; missing keys give NULL.
 *	- Numbers: int4 columns take integral values only; float8 columns take numbers or strings
 *	  float8in accepts; unit columns take numbers or atop unit strings (reformat.c); text
 *	  columns take strings (valid UTF-8, no NUL) or keep a number's text.
 *	- ts: number or numeric string = seconds since 1970 UTC, rounded to the microsecond like
 *	  to_timestamp(float8); ISO-8601 without offset is UTC. Time zone settings never matter.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/decode.h"
#include "ingest/reformat.h"

#define MAX_NESTING 64				/* deepest value we skip */
#define MAX_NUMBER_LEN 400			/* longer number tokens are rejected */
#define ARENA_CHUNK (1024 * 1024)
#define ARENA_KEEP (64 * 1024 * 1024)	/* bytes of chunks kept across resets */
#define USECS_PER_SEC INT64_C(1000000)
#define SECS_PER_DAY INT64_C(86400)
#define UNIX_EPOCH_JDATE INT64_C(2440588)	/* Julian day of 1970-01-01 */
#define TIMESTAMP_END_JULIAN INT64_C(109203528)	/* PostgreSQL's end of timestamps */

/*---- columns ----*/

#define COL(name, kind) {name, sizeof(name) - 1, kind}

static const DecodeColumn process_columns[] = {
	COL("sequence", KIND_INT4), COL("machine", KIND_INT4), COL("pid", KIND_INT4),
	COL("trun", KIND_FLOAT8), COL("tslpi", KIND_FLOAT8), COL("tslpu", KIND_FLOAT8),
	COL("poli", KIND_TEXT), COL("nice", KIND_FLOAT8), COL("pri", KIND_FLOAT8),
	COL("rtpr", KIND_FLOAT8), COL("cpunr", KIND_FLOAT8), COL("status", KIND_TEXT),
	COL("exc", KIND_FLOAT8), COL("state", KIND_TEXT), COL("cpu", KIND_FLOAT8),
	COL("cmd", KIND_TEXT)
};

static const DecodeColumn memory_columns[] = {
	COL("sequence", KIND_INT4), COL("machine", KIND_INT4), COL("pid", KIND_INT4),
	COL("minflt", KIND_UNIT), COL("majflt", KIND_UNIT), COL("vstext", KIND_UNIT),
	COL("vsize", KIND_FLOAT8), COL("rsize", KIND_UNIT), COL("vgrow", KIND_UNIT),
	COL("rgrow", KIND_UNIT), COL("mem", KIND_FLOAT8), COL("cmd", KIND_TEXT)
};

#define COL_PID 2
#define PROCESS_COL_NICE 7
#define PROCESS_COL_PRI 8
#define PROCESS_COL_CMD 15
#define MEMORY_COL_CMD 11

/*
 * Number of columns of a stream.
 */
int
decode_ncolumns(DecodeStream stream)
{
	return stream == STREAM_PROCESS ? (int) (sizeof(process_columns) / sizeof(process_columns[0]))
		: (int) (sizeof(memory_columns) / sizeof(memory_columns[0]));
}

/*
 * The columns of a stream, in the order of DecodedRow.values.
 */
const DecodeColumn *
decode_columns(DecodeStream stream)
{
	return stream == STREAM_PROCESS ? process_columns : memory_columns;
}

/*---- arena ----*/

typedef struct ArenaChunk
{
	struct ArenaChunk *next;
	size_t		size;
	size_t		used;
	char		data[];
} ArenaChunk;

struct DecodeArena
{
	ArenaChunk *head;			/* chunk being filled */
	ArenaChunk *chunks;			/* chunks in use (head first) */
	ArenaChunk *free;			/* kept chunks not in use since the last reset */
	size_t		total;
};

/*
 * A new, empty arena.
 */
DecodeArena *
decode_arena_create(void)
{
	return calloc(1, sizeof(DecodeArena));
}

/*
 * Forget every allocation. Standard chunks are kept for reuse up to ARENA_KEEP bytes (so a
 * steady stream does not fault in fresh pages every batch); the rest is freed, so a burst
 * of large messages does not pin memory for the worker's lifetime.
 */
void
decode_arena_reset(DecodeArena *arena)
{
	ArenaChunk *keep = NULL;
	ArenaChunk *c = arena->chunks;
	size_t		kept = 0;

	/* chunks left unused since the last reset go through the same sieve */
	if (arena->free)
	{
		ArenaChunk *last = arena->free;

		while (last->next)
			last = last->next;
		last->next = arena->chunks;
		c = arena->free;
		arena->free = NULL;
	}
	while (c)
	{
		ArenaChunk *next = c->next;

		if (c->size == ARENA_CHUNK && kept + c->size <= ARENA_KEEP)
		{
			c->used = 0;
			c->next = keep;
			keep = c;
			kept += c->size;
		}
		else
			free(c);
		c = next;
	}
	arena->chunks = keep;
	arena->free = keep ? keep->next : NULL;
	arena->head = keep;
	if (keep)
		keep->next = NULL;
	arena->total = kept;
}

/*
 * Free the arena and everything in it.
 */
void
decode_arena_destroy(DecodeArena *arena)
{
	ArenaChunk *c;

	if (arena == NULL)
		return;
	for (int list = 0; list < 2; list++)
	{
		c = list == 0 ? arena->chunks : arena->free;
		while (c)
		{
			ArenaChunk *next = c->next;

			free(c);
			c = next;
		}
	}
	free(arena);
}

/*
 * Bytes the arena holds.
 */
size_t
decode_arena_bytes(const DecodeArena *arena)
{
	return arena->total;
}

/*
 * Allocate size bytes, 8-aligned; NULL when out of memory.
 */
static void *
arena_alloc(DecodeArena *arena, size_t size)
{
	ArenaChunk *c = arena->head;
	void	   *p;

	size = (size + 7) & ~(size_t) 7;
	if (c == NULL || c->size - c->used < size)
	{
		size_t		csize = size > ARENA_CHUNK ? size : ARENA_CHUNK;

		if (csize == ARENA_CHUNK && arena->free != NULL)
		{
			c = arena->free;
			arena->free = c->next;
			c->used = 0;
			c->next = arena->chunks;
			arena->chunks = c;
			arena->head = c;
			goto have_chunk;
		}
		c = malloc(sizeof(ArenaChunk) + csize);
		if (c == NULL)
			return NULL;
		c->size = csize;
		c->used = 0;
		c->next = arena->chunks;
		arena->chunks = c;
		arena->head = c;
		arena->total += csize;
	}
have_chunk:
	p = c->data + c->used;
	c->used += size;
	return p;
}

/*---- scanner ----*/

typedef struct Scanner
{
	const char *p;				/* next byte */
	const char *end;
	const char *error;			/* first error, a static string or arena text */
	DecodeArena *arena;
	bool		oom;
} Scanner;

typedef enum TokenType
{
	TOK_STRING,
	TOK_NUMBER,
	TOK_TRUE,
	TOK_FALSE,
	TOK_NULL,
	TOK_OBJECT,					/* '{' seen, not consumed further */
	TOK_ARRAY,					/* '[' seen */
	TOK_ERROR
} TokenType;

/* A scanned string or number token */
typedef struct Token
{
	TokenType	type;
	const char *ptr;			/* string: unescaped bytes; number: its text */
	size_t		len;
	bool		has_nul;		/* string contained \u0000 */
} Token;

/*
 * Record the first error of a scan.
 */
static void
scan_fail(Scanner *s, const char *msg)
{
	if (s->error == NULL)
		s->error = msg;
}

/*
 * Skip JSON white space.
 */
static inline void
skip_ws(Scanner *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
		s->p++;
}

/*
 * Value of one hex digit, or -1.
 */
static inline int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Read four hex digits at p (caller checked the length).
 */
static int
read_hex4(const char *p)
{
	int			v = 0;

	for (int i = 0; i < 4; i++)
	{
		int			h = hexval(p[i]);

		if (h < 0)
			return -1;
		v = (v << 4) | h;
	}
	return v;
}

/*
 * Append code point cp as UTF-8 at out; returns bytes written.
 */
static int
put_utf8(char *out, unsigned cp)
{
	if (cp < 0x80)
	{
		out[0] = (char) cp;
		return 1;
	}
	if (cp < 0x800)
	{
		out[0] = (char) (0xC0 | (cp >> 6));
		out[1] = (char) (0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000)
	{
		out[0] = (char) (0xE0 | (cp >> 12));
		out[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char) (0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char) (0xF0 | (cp >> 18));
	out[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char) (0x80 | (cp & 0x3F));
	return 4;
}

/*
 * Scan a string whose opening quote is at s->p. Without escapes the token points into the
 * input; with escapes the unescaped bytes go to the arena.
 */
static bool
scan_string(Scanner *s, Token *tok)
{
	const char *start = ++s->p;
	const char *q = start;
	char	   *out;
	size_t		n = 0;

	tok->type = TOK_STRING;
	tok->has_nul = false;

	/* Fast path: find the closing quote; fall back when a backslash appears. */
	while (q < s->end && *q != '"' && *q != '\\')
	{
		if ((unsigned char) *q < 0x20)
		{
			scan_fail(s, "invalid JSON: control character in string");
			return false;
		}
		q++;
	}
	if (q >= s->end)
	{
		scan_fail(s, "invalid JSON: unterminated string");
		return false;
	}
	if (*q == '"')
	{
		tok->ptr = start;
		tok->len = q - start;
		s->p = q + 1;
		return true;
	}

	/* Slow path: unescape. The output is never longer than the input. */
	out = arena_alloc(s->arena, (size_t) (s->end - start) + 1);
	if (out == NULL)
	{
		s->oom = true;
		scan_fail(s, "out of memory");
		return false;
	}
	memcpy(out, start, q - start);
	n = q - start;
	while (q < s->end && *q != '"')
	{
		unsigned char c = (unsigned char) *q;

		if (c != '\\')
		{
			/* copy the run up to the next quote, backslash or control character */
			const char *r = q;

			while (r < s->end && *r != '"' && *r != '\\' && (unsigned char) *r >= 0x20)
				r++;
			if (r == q)
			{
				scan_fail(s, "invalid JSON: control character in string");
				return false;
			}
			memcpy(out + n, q, r - q);
			n += r - q;
			q = r;
			continue;
		}
		if (q + 1 >= s->end)
			break;
		switch (q[1])
		{
			case '"':
				out[n++] = '"';
				break;
			case '\\':
				out[n++] = '\\';
				break;
			case '/':
				out[n++] = '/';
				break;
			case 'b':
				out[n++] = '\b';
				break;
			case 'f':
				out[n++] = '\f';
				break;
			case 'n':
				out[n++] = '\n';
				break;
			case 'r':
				out[n++] = '\r';
				break;
			case 't':
				out[n++] = '\t';
				break;
			case 'u':
				{
					int			cp;

					if (s->end - q < 6 || (cp = read_hex4(q + 2)) < 0)
					{
						scan_fail(s, "invalid JSON: bad \\u escape");
						return false;
					}
					q += 6;
					if (cp >= 0xD800 && cp <= 0xDBFF)
					{
						int			lo;

						if (s->end - q < 6 || q[0] != '\\' || q[1] != 'u' ||
							(lo = read_hex4(q + 2)) < 0xDC00 || lo > 0xDFFF)
						{
							scan_fail(s, "invalid JSON: unpaired surrogate in \\u escape");
							return false;
						}
						cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
						q += 6;
					}
					else if (cp >= 0xDC00 && cp <= 0xDFFF)
					{
						scan_fail(s, "invalid JSON: unpaired surrogate in \\u escape");
						return false;
					}
					if (cp == 0)
						tok->has_nul = true;
					n += put_utf8(out + n, (unsigned) cp);
					continue;
				}
			default:
				scan_fail(s, "invalid JSON: bad escape in string");
				return false;
		}
		q += 2;
	}
	if (q >= s->end)
	{
		scan_fail(s, "invalid JSON: unterminated string");
		return false;
	}
	out[n] = '\0';
	tok->ptr = out;
	tok->len = n;
	s->p = q + 1;
	return true;
}

/*
 * Scan a number per the JSON grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
 */
static bool
scan_number(Scanner *s, Token *tok)
{
	const char *q = s->p;

	tok->type = TOK_NUMBER;
	tok->ptr = q;
	if (q < s->end && *q == '-')
		q++;
	if (q >= s->end)
		goto bad;
	if (*q == '0')
		q++;
	else if (*q >= '1' && *q <= '9')
		while (q < s->end && *q >= '0' && *q <= '9')
			q++;
	else
		goto bad;
	if (q < s->end && *q == '.')
	{
		q++;
		if (q >= s->end || *q < '0' || *q > '9')
			goto bad;
		while (q < s->end && *q >= '0' && *q <= '9')
			q++;
	}
	if (q < s->end && (*q == 'e' || *q == 'E'))
	{
		q++;
		if (q < s->end && (*q == '+' || *q == '-'))
			q++;
		if (q >= s->end || *q < '0' || *q > '9')
			goto bad;
		while (q < s->end && *q >= '0' && *q <= '9')
			q++;
	}
	tok->len = q - s->p;
	s->p = q;
	return true;
bad:
	scan_fail(s, "invalid JSON: bad number");
	return false;
}

/*
 * Scan a literal word (true, false, null).
 */
static bool
scan_word(Scanner *s, const char *word, size_t wlen, TokenType type, Token *tok)
{
	if ((size_t) (s->end - s->p) < wlen || memcmp(s->p, word, wlen) != 0)
	{
		scan_fail(s, "invalid JSON: unexpected token");
		return false;
	}
	s->p += wlen;
	tok->type = type;
	tok->ptr = NULL;
	tok->len = 0;
	return true;
}

/*
 * Scan the next value's token. Objects and arrays are only announced (their opening
 * bracket is consumed); the caller walks or skips them.
 */
static bool
scan_value(Scanner *s, Token *tok)
{
	skip_ws(s);
	if (s->p >= s->end)
	{
		scan_fail(s, "invalid JSON: unexpected end of input");
		tok->type = TOK_ERROR;
		return false;
	}
	switch (*s->p)
	{
		case '"':
			return scan_string(s, tok);
		case '{':
			s->p++;
			tok->type = TOK_OBJECT;
			return true;
		case '[':
			s->p++;
			tok->type = TOK_ARRAY;
			return true;
		case 't':
			return scan_word(s, "true", 4, TOK_TRUE, tok);
		case 'f':
			return scan_word(s, "false", 5, TOK_FALSE, tok);
		case 'n':
			return scan_word(s, "null", 4, TOK_NULL, tok);
		default:
			if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
				return scan_number(s, tok);
			scan_fail(s, "invalid JSON: unexpected character");
			tok->type = TOK_ERROR;
			return false;
	}
}

/*
 * Consume ch (after white space) or fail.
 */
static bool
expect(Scanner *s, char ch, const char *msg)
{
	skip_ws(s);
	if (s->p < s->end && *s->p == ch)
	{
		s->p++;
		return true;
	}
	scan_fail(s, msg);
	return false;
}

/*
 * Skip the rest of an object or array whose opening bracket was consumed. Nesting is
 * tracked with a small stack of expected closing brackets, not by recursion.
 */
static bool
skip_container(Scanner *s, TokenType opened)
{
	char		stack[MAX_NESTING];
	int			depth = 0;
	bool		fresh = true;	/* just inside an opening bracket */
	Token		tok;

	stack[depth++] = (opened == TOK_OBJECT) ? '}' : ']';
	for (;;)
	{
		skip_ws(s);
		if (fresh && s->p < s->end && *s->p == stack[depth - 1])
		{
			s->p++;				/* empty container */
			depth--;
		}
		else
		{
			if (stack[depth - 1] == '}')
			{
				if (s->p >= s->end || *s->p != '"')
				{
					scan_fail(s, "invalid JSON: expected object key");
					return false;
				}
				if (!scan_string(s, &tok) || !expect(s, ':', "invalid JSON: expected ':'"))
					return false;
			}
			if (!scan_value(s, &tok))
				return false;
			if (tok.type == TOK_OBJECT || tok.type == TOK_ARRAY)
			{
				if (depth >= MAX_NESTING)
				{
					scan_fail(s, "invalid JSON: nesting too deep");
					return false;
				}
				stack[depth++] = (tok.type == TOK_OBJECT) ? '}' : ']';
				fresh = true;
				continue;
			}
		}

		/* After a value: a comma, or closing brackets until one is followed by a comma. */
		for (;;)
		{
			if (depth == 0)
				return true;
			skip_ws(s);
			if (s->p < s->end && *s->p == ',')
			{
				s->p++;
				fresh = false;
				break;
			}
			if (s->p < s->end && *s->p == stack[depth - 1])
			{
				s->p++;
				depth--;
				continue;
			}
			scan_fail(s, "invalid JSON: expected ',' or closing bracket");
			return false;
		}
	}
}

/*---- value conversion ----*/

static const double pow10_exact[] = {
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
};

/*
 * Convert a JSON number token to double. Short decimals take an exact fast path (an integer
 * mantissa below 2^53 scaled by an exactly representable power of ten rounds once); others
 * go to strtod. Returns false if the value overflows double (as float8in would).
 */
static bool
number_to_double(const char *p, size_t len, double *out)
{
	uint64_t	mant = 0;
	int			ndigits = 0;
	int			exp10 = 0;
	bool		neg = false;
	size_t		i = 0;
	char		buf[MAX_NUMBER_LEN + 1];
	char	   *endp;
	double		v;

	if (i < len && p[i] == '-')
		neg = true, i++;
	for (; i < len && p[i] >= '0' && p[i] <= '9'; i++)
	{
		if (ndigits < 19)
			mant = mant * 10 + (p[i] - '0');
		else
			goto slow;
		if (mant != 0)
			ndigits++;
	}
	if (i < len && p[i] == '.')
	{
		for (i++; i < len && p[i] >= '0' && p[i] <= '9'; i++)
		{
			if (ndigits < 19)
				mant = mant * 10 + (p[i] - '0');
			else
				goto slow;
			if (mant != 0)
				ndigits++;
			exp10--;
		}
	}
	if (i != len)
		goto slow;				/* exponent part */
	if (mant <= (UINT64_C(1) << 53) && exp10 >= -22)
	{
		v = (double) mant;
		v = exp10 < 0 ? v / pow10_exact[-exp10] : v;
		*out = neg ? -v : v;
		return true;
	}
slow:
	if (len > MAX_NUMBER_LEN)
		return false;
	memcpy(buf, p, len);
	buf[len] = '\0';
	errno = 0;
	v = strtod(buf, &endp);
	if (endp != buf + len)
		return false;
	if (errno == ERANGE && (v == 0.0 || isinf(v)))
		return false;
	*out = v;
	return true;
}

/*
 * Case-insensitive ASCII prefix match for the special words float8in accepts.
 */
static bool
word_ieq(const char *s, size_t len, const char *word)
{
	size_t		wl = strlen(word);

	if (len != wl)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		char		c = s[i];

		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		if (c != word[i])
			return false;
	}
	return true;
}

/*
 * Parse a string the way float8in does: optional white space around a strtod number or
 * NaN/Infinity/inf (any case, with sign). Out-of-range values are rejected.
 */
bool
decode_float8(const char *s, size_t len, double *result)
{
	char		buf[MAX_NUMBER_LEN + 1];
	size_t		a = 0,
				b = len;
	char	   *endp;
	double		v;

	while (a < b && (s[a] == ' ' || s[a] == '\t' || s[a] == '\n' || s[a] == '\r' ||
					 s[a] == '\f' || s[a] == '\v'))
		a++;
	while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t' || s[b - 1] == '\n' ||
					 s[b - 1] == '\r' || s[b - 1] == '\f' || s[b - 1] == '\v'))
		b--;
	if (a == b || b - a > MAX_NUMBER_LEN)
		return false;
	s += a;
	len = b - a;
	if (word_ieq(s, len, "nan"))
	{
		*result = NAN;
		return true;
	}
	if (word_ieq(s, len, "infinity") || word_ieq(s, len, "+infinity") ||
		word_ieq(s, len, "inf") || word_ieq(s, len, "+inf"))
	{
		*result = INFINITY;
		return true;
	}
	if (word_ieq(s, len, "-infinity") || word_ieq(s, len, "-inf"))
	{
		*result = -INFINITY;
		return true;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	/* strtod also reads hex floats and "nan(...)"; float8in's strtod would too, but the
	 * special words are handled above, and hex needs an 'x' we refuse here. */
	for (size_t i = 0; i < len; i++)
		if (buf[i] == 'x' || buf[i] == 'X' || buf[i] == 'n' || buf[i] == 'N' ||
			buf[i] == 'i' || buf[i] == 'I')
			return false;
	errno = 0;
	v = strtod(buf, &endp);
	if (endp == buf || *endp != '\0')
		return false;
	if (errno == ERANGE && (v == 0.0 || isinf(v)))
		return false;
	*result = v;
	return true;
}

/*
 * Valid UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF)?
 */
static bool
utf8_valid(const unsigned char *s, size_t len)
{
	size_t		i = 0;

	while (i < len)
	{
		unsigned char c = s[i];

		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
		{
			if (i + 1 >= len || (s[i + 1] & 0xC0) != 0x80)
				return false;
			i += 2;
		}
		else if (c >= 0xE0 && c <= 0xEF)
		{
			if (i + 2 >= len || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80)
				return false;
			if (c == 0xE0 && s[i + 1] < 0xA0)
				return false;
			if (c == 0xED && s[i + 1] >= 0xA0)
				return false;
			i += 3;
		}
		else if (c >= 0xF0 && c <= 0xF4)
		{
			if (i + 3 >= len || (s[i + 1] & 0xC0) != 0x80 ||
				(s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80)
				return false;
			if (c == 0xF0 && s[i + 1] < 0x90)
				return false;
			if (c == 0xF4 && s[i + 1] >= 0x90)
				return false;
			i += 4;
		}
		else
			return false;
	}
	return true;
}

/*
 * An error text naming the column, in the arena (static fallback if out of memory).
 */
static const char *
column_error(DecodeArena *arena, const char *what, const char *column)
{
	size_t		n = strlen(what) + strlen(column) + 16;
	char	   *msg = arena_alloc(arena, n);

	if (msg == NULL)
		return "invalid value";
	snprintf(msg, n, "%s \"%s\"", what, column);
	return msg;
}

/*
 * Convert one token into a column value; returns an error text or NULL.
 */
static const char *
convert_value(DecodeArena *arena, const DecodeColumn *col, const Token *tok, DecodeValue *val)
{
	double		d;

	val->isnull = false;
	if (tok->type == TOK_NULL)
	{
		val->isnull = true;
		return NULL;
	}
	if (tok->type == TOK_OBJECT || tok->type == TOK_ARRAY)
		return column_error(arena, "wrong type (object or array) for column", col->name);

	switch (col->kind)
	{
		case KIND_INT4:
			if (tok->type == TOK_NUMBER)
			{
				if (!number_to_double(tok->ptr, tok->len, &d))
					return column_error(arena, "number out of range for column", col->name);
			}
			else if (tok->type == TOK_STRING)
			{
				if (!decode_float8(tok->ptr, tok->len, &d))
					return column_error(arena, "invalid integer for column", col->name);
			}
			else
				return column_error(arena, "wrong type (boolean) for column", col->name);
			if (!(d >= -2147483648.0 && d <= 2147483647.0) || d != floor(d))
				return column_error(arena, "not an integer in int4 range for column", col->name);
			val->v.i = (int32_t) d;
			return NULL;

		case KIND_FLOAT8:
		case KIND_UNIT:
			if (tok->type == TOK_NUMBER)
			{
				if (!number_to_double(tok->ptr, tok->len, &d))
					return column_error(arena, "number out of range for column", col->name);
			}
			else if (tok->type == TOK_STRING)
			{
				bool		ok = col->kind == KIND_UNIT
					? reformat_parse(tok->ptr, tok->len, &d)
					: decode_float8(tok->ptr, tok->len, &d);

				if (!ok)
					return column_error(arena, col->kind == KIND_UNIT
										? "invalid unit value for column"
										: "invalid number for column", col->name);
			}
			else
				return column_error(arena, "wrong type (boolean) for column", col->name);
			val->v.f = d;
			return NULL;

		case KIND_TEXT:
			if (tok->type == TOK_STRING)
			{
				if (tok->has_nul)
					return column_error(arena, "text contains NUL (\\u0000) in column", col->name);
				if (!utf8_valid((const unsigned char *) tok->ptr, tok->len))
					return column_error(arena, "text is not valid UTF-8 in column", col->name);
				val->v.s.ptr = tok->ptr;
				val->v.s.len = (uint32_t) tok->len;
			}
			else if (tok->type == TOK_NUMBER)
			{
				val->v.s.ptr = tok->ptr;
				val->v.s.len = (uint32_t) tok->len;
			}
			else
			{
				val->v.s.ptr = tok->type == TOK_TRUE ? "true" : "false";
				val->v.s.len = tok->type == TOK_TRUE ? 4 : 5;
			}
			return NULL;
	}
	return "invalid column kind";
}

/*
 * Index of the column a key names (ASCII case-insensitive), or -1.
 */
static int
lookup_column(DecodeStream stream, const char *key, size_t len)
{
	const DecodeColumn *cols = decode_columns(stream);
	int			ncols = decode_ncolumns(stream);
	char		lower[16];

	if (len == 0 || len > sizeof(lower))
		return -1;
	for (size_t i = 0; i < len; i++)
	{
		char		c = key[i];

		lower[i] = (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
	}
	for (int c = 0; c < ncols; c++)
		if (cols[c].name_len == len && cols[c].name[0] == lower[0] &&
			memcmp(cols[c].name, lower, len) == 0)
			return c;
	return -1;
}

/*
 * Parse the members of a row object (its '{' consumed) into row. Returns false on a JSON
 * syntax error (in s->error); a bad value only sets row->error and parsing goes on, so the
 * envelope stays in sync.
 */
static bool
parse_row_members(Scanner *s, DecodeStream stream, DecodedRow *row)
{
	const DecodeColumn *cols = decode_columns(stream);
	uint32_t	seen = 0;
	Token		key;
	Token		val;

	skip_ws(s);
	if (s->p < s->end && *s->p == '}')
	{
		s->p++;
		return true;
	}
	for (;;)
	{
		int			c;

		skip_ws(s);
		if (s->p >= s->end || *s->p != '"')
		{
			scan_fail(s, "invalid JSON: expected object key");
			return false;
		}
		if (!scan_string(s, &key) || !expect(s, ':', "invalid JSON: expected ':'"))
			return false;
		if (!scan_value(s, &val))
			return false;
		c = lookup_column(stream, key.ptr, key.len);
		if (c >= 0)
		{
			if (seen & (UINT32_C(1) << c))
			{
				if (row->error == NULL)
					row->error = column_error(s->arena, "duplicate key for column", cols[c].name);
			}
			seen |= UINT32_C(1) << c;
			if (row->error == NULL)
				row->error = convert_value(s->arena, &cols[c], &val, &row->values[c]);
		}
		if ((val.type == TOK_OBJECT || val.type == TOK_ARRAY) && !skip_container(s, val.type))
			return false;
		skip_ws(s);
		if (s->p < s->end && *s->p == ',')
		{
			s->p++;
			continue;
		}
		if (s->p < s->end && *s->p == '}')
		{
			s->p++;
			return true;
		}
		scan_fail(s, "invalid JSON: expected ',' or '}' in row");
		return false;
	}
}

/*
 * Fill the derived columns of a valid row: NICE = PRI - 120, CMD_PID = CMD || '_' || PID.
 */
static void
derive_columns(DecodeArena *arena, DecodeStream stream, DecodedRow *row)
{
	int			cmd_col = stream == STREAM_PROCESS ? PROCESS_COL_CMD : MEMORY_COL_CMD;
	DecodeValue *cmd = &row->values[cmd_col];
	DecodeValue *pid = &row->values[COL_PID];

	if (stream == STREAM_PROCESS)
	{
		DecodeValue *pri = &row->values[PROCESS_COL_PRI];

		row->values[PROCESS_COL_NICE].isnull = pri->isnull;
		row->values[PROCESS_COL_NICE].v.f = pri->isnull ? 0 : pri->v.f - 120.0;
	}
	row->cmd_pid = NULL;
	row->cmd_pid_len = 0;
	if (!cmd->isnull && !pid->isnull)
	{
		char	   *buf = arena_alloc(arena, cmd->v.s.len + 16);

		if (buf == NULL)
		{
			row->error = "out of memory";
			return;
		}
		{
		char		digits[12];
		int			nd = 0;
		uint32_t	u = pid->v.i < 0 ? (uint32_t) 0 - (uint32_t) pid->v.i : (uint32_t) pid->v.i;
		uint32_t	n = cmd->v.s.len;

		memcpy(buf, cmd->v.s.ptr, n);
		buf[n++] = '_';
		if (pid->v.i < 0)
			buf[n++] = '-';
		do
		{
			digits[nd++] = (char) ('0' + u % 10);
			u /= 10;
		} while (u);
		while (nd)
			buf[n++] = digits[--nd];
		row->cmd_pid_len = n;
		row->cmd_pid = buf;
		}
	}
}

/*
 * Decode one element of data[] into row.
 */
static bool
parse_row(Scanner *s, DecodeStream stream, DecodedRow *row)
{
	Token		tok;
	const char *start;
	int			ncols = decode_ncolumns(stream);

	for (int c = 0; c < ncols; c++)
		row->values[c].isnull = true;

	skip_ws(s);
	start = s->p;
	if (!scan_value(s, &tok))
		return false;

	if (tok.type == TOK_OBJECT)
	{
		if (!parse_row_members(s, stream, row))
			return false;
		row->raw = start;
		row->raw_len = s->p - start;
	}
	else if (tok.type == TOK_STRING)
	{
		/* Double-encoded: the string holds the row's JSON; errors in it are the row's. */
		Scanner		inner = {tok.ptr, tok.ptr + tok.len, NULL, s->arena, false};
		Token		itok;

		row->raw = tok.ptr;
		row->raw_len = tok.len;
		if (!scan_value(&inner, &itok) || itok.type != TOK_OBJECT)
		{
			if (inner.oom)
			{
				s->oom = true;
				return false;
			}
			row->error = inner.error ? inner.error : "row string does not hold a JSON object";
			return true;
		}
		if (!parse_row_members(&inner, stream, row))
		{
			if (inner.oom)
			{
				s->oom = true;
				return false;
			}
			row->error = inner.error;
			return true;
		}
		skip_ws(&inner);
		if (inner.p != inner.end)
		{
			row->error = "invalid JSON: trailing characters after row object";
			return true;
		}
	}
	else
	{
		row->raw = start;
		row->raw_len = s->p - start;
		row->error = "row is neither a JSON object nor a string holding one";
		if ((tok.type == TOK_ARRAY) && !skip_container(s, tok.type))
			return false;
		return true;
	}
	if (row->error == NULL)
		derive_columns(s->arena, stream, row);
	return true;
}

/*---- ts ----*/

/*
 * Days from 1970-01-01 to the given proleptic Gregorian date.
 */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	int64_t		era;
	int64_t		yoe,
				doy,
				doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/*
 * Read exactly n digits at *p into *v.
 */
static bool
read_digits(const char **p, const char *end, int n, int *v)
{
	int			x = 0;

	if (end - *p < n)
		return false;
	for (int i = 0; i < n; i++)
	{
		char		c = (*p)[i];

		if (c < '0' || c > '9')
			return false;
		x = x * 10 + (c - '0');
	}
	*p += n;
	*v = x;
	return true;
}

/*
 * ISO-8601 date-time: YYYY-MM-DD[T ]HH:MM[:SS[.fraction]][Z|+HH[:MM]|-HH[:MM]|+HHMM].
 * Without an offset the time is UTC. Fractions round to the microsecond.
 */
bool
decode_iso8601(const char *s, size_t len, int64_t *unix_usec)
{
	const char *p = s;
	const char *end = s + len;
	int			y,
				mo,
				d,
				h,
				mi,
				sec = 0;
	int64_t		usec = 0;
	int64_t		offset_sec = 0;
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool		leap;

	if (!read_digits(&p, end, 4, &y) || p >= end || *p++ != '-' ||
		!read_digits(&p, end, 2, &mo) || p >= end || *p++ != '-' ||
		!read_digits(&p, end, 2, &d) || p >= end || (*p != 'T' && *p != 't' && *p != ' '))
		return false;
	p++;
	if (!read_digits(&p, end, 2, &h) || p >= end || *p++ != ':' ||
		!read_digits(&p, end, 2, &mi))
		return false;
	if (p < end && *p == ':')
	{
		p++;
		if (!read_digits(&p, end, 2, &sec))
			return false;
		if (p < end && (*p == '.' || *p == ','))
		{
			int64_t		scale = 100000;
			int			ndig = 0;
			bool		round_up = false;

			p++;
			while (p < end && *p >= '0' && *p <= '9')
			{
				if (ndig < 6)
				{
					usec += (*p - '0') * scale;
					scale /= 10;
				}
				else if (ndig == 6)
					round_up = *p >= '5';
				ndig++;
				p++;
			}
			if (ndig == 0)
				return false;
			if (round_up)
				usec++;
		}
	}
	if (p < end)
	{
		if (*p == 'Z' || *p == 'z')
			p++;
		else if (*p == '+' || *p == '-')
		{
			int			sign = *p == '-' ? -1 : 1;
			int			oh,
						om = 0;

			p++;
			if (!read_digits(&p, end, 2, &oh))
				return false;
			if (p < end && *p == ':')
				p++;
			if (p < end && !read_digits(&p, end, 2, &om))
				return false;
			if (oh > 15 || om > 59)
				return false;
			offset_sec = sign * (oh * 3600 + om * 60);
		}
		else
			return false;
	}
	if (p != end)
		return false;
	leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (mo < 1 || mo > 12 || d < 1 ||
		d > mdays[mo - 1] + (mo == 2 && leap ? 1 : 0) ||
		h > 23 || mi > 59 || sec > 59)
		return false;
	*unix_usec = ((days_from_civil(y, mo, d) * SECS_PER_DAY + h * 3600 + mi * 60 + sec
				   - offset_sec) * USECS_PER_SEC) + usec;
	return true;
}

/*
 * Seconds since 1970 (as double) to microseconds, as to_timestamp(float8) does: NaN,
 * infinities and values outside PostgreSQL's timestamp range are invalid.
 */
static bool
seconds_to_usec(double secs, int64_t *unix_usec)
{
	if (isnan(secs) || isinf(secs))
		return false;
	if (secs < (double) (-UNIX_EPOCH_JDATE * SECS_PER_DAY) ||
		secs >= (double) ((TIMESTAMP_END_JULIAN - UNIX_EPOCH_JDATE) * SECS_PER_DAY))
		return false;
	*unix_usec = (int64_t) rint(secs * (double) USECS_PER_SEC);
	return true;
}

/*
 * Interpret the envelope's ts token.
 */
static bool
convert_ts(const Token *tok, int64_t *unix_usec)
{
	double		secs;

	if (tok->type == TOK_NUMBER)
		return number_to_double(tok->ptr, tok->len, &secs) && seconds_to_usec(secs, unix_usec);
	if (tok->type != TOK_STRING)
		return false;
	if (decode_iso8601(tok->ptr, tok->len, unix_usec))
		return true;
	/* a numeric string: the JSON number grammar, optionally with white space around */
	{
		Scanner		ns = {tok->ptr, tok->ptr + tok->len, NULL, NULL, false};
		Token		ntok;

		skip_ws(&ns);
		if (ns.p >= ns.end || !(*ns.p == '-' || (*ns.p >= '0' && *ns.p <= '9')) ||
			!scan_number(&ns, &ntok))
			return false;
		skip_ws(&ns);
		if (ns.p != ns.end)
			return false;
		return number_to_double(ntok.ptr, ntok.len, &secs) && seconds_to_usec(secs, unix_usec);
	}
}

/*---- envelope ----*/

/*
 * Decode one message; see decode.h.
 */
bool
decode_message(DecodeArena *arena, DecodeStream stream, const char *buf, size_t len,
			   int64_t kafka_ts_usec, int64_t max_future_usec, DecodedMessage *out)
{
	Scanner		s = {buf, buf + len, NULL, arena, false};
	Token		key;
	Token		val;
	bool		have_ts = false;
	bool		have_data = false;
	bool		ts_valid = false;
	int32_t		cap = 0;

	memset(out, 0, sizeof(*out));

	if (!expect(&s, '{', "message is not a JSON object"))
		goto fail;
	skip_ws(&s);
	if (s.p < s.end && *s.p == '}')
		s.p++;
	else
		for (;;)
		{
			skip_ws(&s);
			if (s.p >= s.end || *s.p != '"')
			{
				scan_fail(&s, "invalid JSON: expected object key");
				goto fail;
			}
			if (!scan_string(&s, &key) || !expect(&s, ':', "invalid JSON: expected ':'"))
				goto fail;
			if (key.len == 2 && memcmp(key.ptr, "ts", 2) == 0)
			{
				if (have_ts)
				{
					scan_fail(&s, "duplicate key \"ts\"");
					goto fail;
				}
				have_ts = true;
				if (!scan_value(&s, &val))
					goto fail;
				ts_valid = convert_ts(&val, &out->ts_unix_usec);
				if ((val.type == TOK_OBJECT || val.type == TOK_ARRAY) &&
					!skip_container(&s, val.type))
					goto fail;
			}
			else if (key.len == 4 && memcmp(key.ptr, "data", 4) == 0)
			{
				if (have_data)
				{
					scan_fail(&s, "duplicate key \"data\"");
					goto fail;
				}
				have_data = true;
				if (!scan_value(&s, &val))
					goto fail;
				if (val.type != TOK_ARRAY)
				{
					scan_fail(&s, "data is not an array");
					goto fail;
				}
				skip_ws(&s);
				if (s.p < s.end && *s.p == ']')
					s.p++;
				else
					for (;;)
					{
						DecodedRow *row;

						if (out->nrows == cap)
						{
							int32_t		ncap = cap ? cap * 2 : 64;
							DecodedRow *nrows = arena_alloc(arena, sizeof(DecodedRow) * ncap);

							if (nrows == NULL)
							{
								s.oom = true;
								goto fail;
							}
							if (cap)
								memcpy(nrows, out->rows, sizeof(DecodedRow) * cap);
							out->rows = nrows;
							cap = ncap;
						}
						row = &out->rows[out->nrows];
						memset(row, 0, offsetof(DecodedRow, values));
						row->row_index = out->nrows;
						if (!parse_row(&s, stream, row))
							goto fail;
						out->nrows++;
						skip_ws(&s);
						if (s.p < s.end && *s.p == ',')
						{
							s.p++;
							continue;
						}
						if (s.p < s.end && *s.p == ']')
						{
							s.p++;
							break;
						}
						scan_fail(&s, "invalid JSON: expected ',' or ']' in data");
						goto fail;
					}
			}
			else
			{
				if (!scan_value(&s, &val))
					goto fail;
				if ((val.type == TOK_OBJECT || val.type == TOK_ARRAY) &&
					!skip_container(&s, val.type))
					goto fail;
			}
			skip_ws(&s);
			if (s.p < s.end && *s.p == ',')
			{
				s.p++;
				continue;
			}
			if (s.p < s.end && *s.p == '}')
			{
				s.p++;
				break;
			}
			scan_fail(&s, "invalid JSON: expected ',' or '}'");
			goto fail;
		}
	skip_ws(&s);
	if (s.p != s.end)
	{
		scan_fail(&s, "invalid JSON: trailing characters after message");
		goto fail;
	}
	if (!have_ts)
		scan_fail(&s, "missing ts");
	else if (!ts_valid)
		scan_fail(&s, "invalid ts");
	else if (!have_data)
		scan_fail(&s, "missing data");
	else if (kafka_ts_usec != INT64_MIN &&
			 out->ts_unix_usec - kafka_ts_usec > max_future_usec)
		scan_fail(&s, "ts in the future");
	if (s.error)
		goto fail;
	return true;

fail:
	out->error = s.error ? s.error : "invalid message";
	out->nrows = 0;
	out->rows = NULL;
	return !s.oom;
}
