/*
 * anomstream-replay -- stream atop CSV rows into Kafka the way the real
 * producer does (DESIGN.md section 2), wrapped in anomstream's envelope.
 *
 * Input: CSV files with a header (the real Streaming_Linux_*.csv files or
 * anomstream-generate output); a "machine" column is required, a "sequence"
 * column orders each machine's rows (file order otherwise).
 *
 * Cadence mode (default).  Step k = 0, 1, 2, ... has event time
 * ts_k = start_ts + 5k and runs at wall time t0 + 5k/speedup (no waiting
 * with --speedup 0).  At every step, for each machine (ascending), the next
 * X in [10,50] process rows in sequence order (wrapping to the start) go out
 * as one message.  At every even step (a memory cycle, every 10 s), for each
 * machine: X in [20,80] memory rows stamped ts_k, then the previous memory
 * cycle's Y late rows; Y in [0,5] further rows are stamped ts_k but held
 * back until the next memory cycle (at the end they are sent at once).
 * X and Y come from two PRNG streams seeded by --seed (one per topic), so
 * the choice of rows per message depends only on --seed and the input.
 *
 * Rate mode (--rate R): no cadence; rounds of one message of K rows
 * (--rows-per-message) per machine per topic, about R rows/s in total
 * (R = 0: as fast as possible); ts = start_ts + whole seconds elapsed.
 *
 * Message: key = machine as decimal text; value
 *   {"ts":T,"data":["{\"sequence\":1,\"machine\":4,...}", ...]}
 * Each row object has the CSV header names as keys in header order; a field
 * that is a JSON number (-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?) is
 * written verbatim as a number, an empty field as null, anything else as a
 * string.  --plain-rows puts the objects themselves into data.
 *
 * --log FILE: written from delivery reports, so it lists exactly what the
 * broker acknowledged.  Lines (tab-separated, fields escaped \t \n \r \\):
 *   #\t<topic>\tpartition\toffset\trow_index\tkey\tts\t<column names...>
 *   <topic>\t<partition>\t<offset>\t<row_index>\t<key>\t<ts>\t<fields...>
 *   BAD\t<topic>\t<partition>\t<offset>\t<kind>\t<row_index or -1>
 * (topic, partition, offset, row_index) is a row's identity.  With --print
 * the partition is -1 and the offset counts messages per topic from 0.
 *
 * --inject-bad N: every Nth message (counted over both topics) is malformed;
 * kinds rotate: broken-json, missing-ts, data-not-array (whole message bad, no
 * row lines), bad-pid, bad-unit (memory only; one row bad -- its other rows
 * are valid and logged as usual, the BAD line names the bad row_index).
 *
 * Invariants: every message carries the rows of one machine and one ts; a
 * machine's rows are sent in sequence order per topic, except memory late
 * rows, which follow the next cycle's rows (in (ts, offset) order the
 * sequence is continuous); the log is written only
 * for acknowledged messages; exit 0 iff every produced message was
 * acknowledged (1: delivery failure or runtime error, 2: usage or input
 * error).  Statistics go to stderr; stdout is used only by --print.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "prng.h"

#define PROG "anomstream-replay"

static volatile sig_atomic_t stop_requested = 0;

static void
on_signal(int signo)
{
	(void) signo;
	stop_requested++;
}

static void *
xmalloc(size_t n)
{
	void	   *p = malloc(n ? n : 1);

	if (p == NULL)
	{
		fprintf(stderr, PROG ": out of memory\n");
		exit(1);
	}
	return p;
}

static void *
xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (p == NULL)
	{
		fprintf(stderr, PROG ": out of memory\n");
		exit(1);
	}
	return p;
}

/* ---------- growable byte buffer ---------- */

typedef struct buf
{
	char	   *p;
	size_t		len;
	size_t		cap;
} buf;

static inline void
buf_reserve(buf *b, size_t n)
{
	if (b->len + n > b->cap)
	{
		size_t		c = b->cap ? b->cap : 4096;

		while (c < b->len + n)
			c *= 2;
		b->p = xrealloc(b->p, c);
		b->cap = c;
	}
}

static inline void
buf_put(buf *b, const char *s, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static inline void
buf_puts(buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

static inline void
buf_ch(buf *b, char c)
{
	buf_reserve(b, 1);
	b->p[b->len++] = c;
}

/*
 * Append s as the inside of a JSON string literal, escaped `level` times
 * (1: plain JSON string; 2: the escaped text escaped again, for a row that is
 * itself inside a JSON string).
 */
static void
buf_json_escaped(buf *b, const char *s, int level)
{
	for (const unsigned char *c = (const unsigned char *) s; *c; c++)
	{
		char		e1[8];
		int			n1;

		if (*c >= 0x20 && *c != '"' && *c != '\\')
		{
			buf_ch(b, (char) *c);
			continue;
		}
		if (*c == '"' || *c == '\\')
		{
			e1[0] = '\\';
			e1[1] = (char) *c;
			n1 = 2;
		}
		else if (*c == '\n')
			n1 = (memcpy(e1, "\\n", 2), 2);
		else if (*c == '\t')
			n1 = (memcpy(e1, "\\t", 2), 2);
		else if (*c == '\r')
			n1 = (memcpy(e1, "\\r", 2), 2);
		else
			n1 = snprintf(e1, sizeof(e1), "\\u%04x", *c);
		if (level == 1)
			buf_put(b, e1, (size_t) n1);
		else
			for (int i = 0; i < n1; i++)
			{
				if (e1[i] == '"' || e1[i] == '\\')
					buf_ch(b, '\\');
				buf_ch(b, e1[i]);
			}
	}
}

/* Is s a complete JSON number (so it can be written verbatim)? */
static int
is_json_number(const char *s)
{
	const char *p = s;

	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (*p >= '0' && *p <= '9')
			p++;
	else
		return 0;
	if (*p == '.')
	{
		p++;
		if (!(*p >= '0' && *p <= '9'))
			return 0;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'e' || *p == 'E')
	{
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!(*p >= '0' && *p <= '9'))
			return 0;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	return *p == '\0';
}

/* ---------- CSV input ---------- */

typedef struct row
{
	const char *f;				/* first field; fields are consecutive NUL-terminated strings */
	int64_t		seq;
	uint32_t	fileno;			/* position in the file, for a stable sort */
	int32_t		machine;
} row;

typedef struct machine_rows
{
	int32_t		machine;
	char		key[16];
	size_t		n;
	row		  **rows;			/* in sequence order */
	size_t		cursor;			/* next row to send */
	/* memory late rows held back for the next cycle */
	row		  **late;
	size_t		nlate;
	int64_t		late_ts;
} machine_rows;

typedef struct stream
{
	const char *name;			/* "process" / "memory" */
	const char *topic;
	const char *path;
	char	   *data;			/* file contents, fields unescaped in place */
	int			ncols;
	char	  **cols;
	int		   *drop;			/* per column: 1 = not sent */
	char	  **key_plain;		/* "KEY": */
	char	  **key_double;		/* \"KEY\": */
	int			col_pid, col_minflt;
	row		   *rows;
	size_t		nrows;
	machine_rows *m;
	int			nm;
	prng_t		rng;
	int64_t		msgs_printed;	/* offsets for --print */
} stream;

/*
 * Split one CSV record starting at *pp (RFC 4180 quoting), unescaping in
 * place; fields become consecutive NUL-terminated strings starting at the
 * returned pointer.  Returns NULL at end of data.  *nfields receives the
 * count; *pp moves past the record's line end.  Blank lines give 0 fields.
 */
static char *
csv_record(char **pp, char *end, int *nfields, int *bad)
{
	char	   *p = *pp;
	char	   *w = p;
	char	   *start = p;
	int			n = 0;

	*bad = 0;
	if (p >= end)
		return NULL;
	if (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n'))
	{
		*pp = p + (*p == '\r' ? 2 : 1);
		*nfields = 0;
		return start;
	}
	for (;;)
	{
		/* one field */
		if (p < end && *p == '"')
		{
			p++;
			for (;;)
			{
				if (p >= end)
				{
					*bad = 1;
					break;
				}
				if (*p == '"')
				{
					if (p + 1 < end && p[1] == '"')
					{
						*w++ = '"';
						p += 2;
						continue;
					}
					p++;
					break;
				}
				*w++ = *p++;
			}
			/* anything between the closing quote and the separator is kept */
			while (p < end && *p != ',' && *p != '\n' && *p != '\r')
				*w++ = *p++;
		}
		else
			while (p < end && *p != ',' && *p != '\n' && *p != '\r')
				*w++ = *p++;
		n++;
		if (p < end && *p == ',')
		{
			*w++ = '\0';
			p++;
			continue;
		}
		/* end of record (look at the line end before w, which may equal p, overwrites it) */
		if (p < end && *p == '\r')
			p++;
		if (p < end && *p == '\n')
			p++;
		*w = '\0';
		break;
	}
	*pp = p;
	*nfields = n;
	return start;
}

static int
cmp_row(const void *a, const void *b)
{
	const row  *x = *(row * const *) a;
	const row  *y = *(row * const *) b;

	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return x->fileno < y->fileno ? -1 : (x->fileno > y->fileno);
}

static int
cmp_machine(const void *a, const void *b)
{
	const machine_rows *x = a, *y = b;

	return (x->machine > y->machine) - (x->machine < y->machine);
}

static int
parse_i64(const char *s, int64_t *out)
{
	char	   *end;
	long long	v;

	if (*s == '\0')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

/* Load and index a CSV file; returns 0 or prints an error and returns -1. */
static int
stream_load(stream *st, const char *drop_list)
{
	FILE	   *f = fopen(st->path, "rb");
	size_t		size = 0, cap = 1 << 20;
	char	   *p, *end, *rec;
	int			nf, bad, col_machine = -1, col_seq = -1;
	size_t		rows_cap = 1024;
	uint32_t	lineno = 1;

	if (f == NULL)
	{
		fprintf(stderr, PROG ": cannot open %s: %s\n", st->path, strerror(errno));
		return -1;
	}
	st->data = xmalloc(cap + 1);
	for (;;)
	{
		size_t		n = fread(st->data + size, 1, cap - size, f);

		size += n;
		if (size < cap)
			break;
		cap *= 2;
		st->data = xrealloc(st->data, cap + 1);
	}
	if (ferror(f))
	{
		fprintf(stderr, PROG ": cannot read %s: %s\n", st->path, strerror(errno));
		fclose(f);
		return -1;
	}
	fclose(f);
	st->data[size] = '\0';
	p = st->data;
	end = st->data + size;
	if (size >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3;					/* UTF-8 byte order mark */

	/* header */
	do
		rec = csv_record(&p, end, &nf, &bad);
	while (rec != NULL && nf == 0);
	if (rec == NULL || bad)
	{
		fprintf(stderr, PROG ": %s: no header line\n", st->path);
		return -1;
	}
	st->ncols = nf;
	st->cols = xmalloc(sizeof(char *) * (size_t) nf);
	st->drop = xmalloc(sizeof(int) * (size_t) nf);
	memset(st->drop, 0, sizeof(int) * (size_t) nf);
	st->key_plain = xmalloc(sizeof(char *) * (size_t) nf);
	st->key_double = xmalloc(sizeof(char *) * (size_t) nf);
	st->col_pid = st->col_minflt = -1;
	for (int c = 0; c < nf; c++)
	{
		buf			k = {0};

		st->cols[c] = rec;
		rec += strlen(rec) + 1;
		if (strcasecmp(st->cols[c], "machine") == 0)
			col_machine = c;
		else if (strcasecmp(st->cols[c], "sequence") == 0)
			col_seq = c;
		else if (strcasecmp(st->cols[c], "PID") == 0)
			st->col_pid = c;
		else if (strcasecmp(st->cols[c], "MINFLT") == 0)
			st->col_minflt = c;
		buf_ch(&k, '"');
		buf_json_escaped(&k, st->cols[c], 1);
		buf_puts(&k, "\":");
		buf_ch(&k, '\0');
		st->key_plain[c] = k.p;
		k = (buf) {0};
		buf_puts(&k, "\\\"");
		buf_json_escaped(&k, st->cols[c], 2);
		buf_puts(&k, "\\\":");
		buf_ch(&k, '\0');
		st->key_double[c] = k.p;
	}
	if (col_machine < 0)
	{
		fprintf(stderr, PROG ": %s: no 'machine' column in the header\n", st->path);
		return -1;
	}
	if (drop_list != NULL)
	{
		char	   *copy = strdup(drop_list), *save = NULL;

		for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
			for (int c = 0; c < nf; c++)
				if (strcasecmp(st->cols[c], t) == 0)
					st->drop[c] = 1;
		free(copy);
		if (st->col_pid >= 0 && st->drop[st->col_pid])
			st->col_pid = -1;
		if (st->col_minflt >= 0 && st->drop[st->col_minflt])
			st->col_minflt = -1;
	}

	/* rows */
	st->rows = xmalloc(sizeof(row) * rows_cap);
	while ((rec = csv_record(&p, end, &nf, &bad)) != NULL)
	{
		row		   *r;
		const char *fld = rec;
		int64_t		v;

		lineno++;
		if (nf == 0)
			continue;
		if (bad || nf != st->ncols)
		{
			fprintf(stderr, PROG ": %s: record %u: %s (%d fields, header has %d)\n",
					st->path, lineno, bad ? "unterminated quote" : "wrong field count",
					nf, st->ncols);
			return -1;
		}
		if (st->nrows == rows_cap)
		{
			rows_cap *= 2;
			st->rows = xrealloc(st->rows, sizeof(row) * rows_cap);
		}
		r = &st->rows[st->nrows];
		r->f = rec;
		r->fileno = (uint32_t) st->nrows;
		r->seq = 0;
		for (int c = 0; c < st->ncols; c++)
		{
			if (c == col_machine)
			{
				if (parse_i64(fld, &v) != 0 || v < INT32_MIN || v > INT32_MAX)
				{
					fprintf(stderr, PROG ": %s: record %u: machine '%s' is not an integer\n",
							st->path, lineno, fld);
					return -1;
				}
				r->machine = (int32_t) v;
			}
			else if (c == col_seq)
			{
				if (parse_i64(fld, &v) != 0)
				{
					fprintf(stderr, PROG ": %s: record %u: sequence '%s' is not an integer\n",
							st->path, lineno, fld);
					return -1;
				}
				r->seq = v;
			}
			fld += strlen(fld) + 1;
		}
		st->nrows++;
	}
	if (st->nrows == 0)
	{
		fprintf(stderr, PROG ": %s: no data rows\n", st->path);
		return -1;
	}

	/* group by machine, each in sequence order */
	{
		size_t		mcap = 8;

		st->m = xmalloc(sizeof(machine_rows) * mcap);
		for (size_t i = 0; i < st->nrows; i++)
		{
			int			k;

			for (k = 0; k < st->nm; k++)
				if (st->m[k].machine == st->rows[i].machine)
					break;
			if (k == st->nm)
			{
				if ((size_t) st->nm == mcap)
				{
					mcap *= 2;
					st->m = xrealloc(st->m, sizeof(machine_rows) * mcap);
				}
				memset(&st->m[k], 0, sizeof(machine_rows));
				st->m[k].machine = st->rows[i].machine;
				snprintf(st->m[k].key, sizeof(st->m[k].key), "%" PRId32, st->rows[i].machine);
				st->nm++;
			}
			st->m[k].n++;
		}
		qsort(st->m, (size_t) st->nm, sizeof(machine_rows), cmp_machine);
		for (int k = 0; k < st->nm; k++)
		{
			st->m[k].rows = xmalloc(sizeof(row *) * st->m[k].n);
			st->m[k].late = xmalloc(sizeof(row *) * 8);
			st->m[k].n = 0;
		}
		for (size_t i = 0; i < st->nrows; i++)
		{
			int			k = 0;

			while (st->m[k].machine != st->rows[i].machine)
				k++;
			st->m[k].rows[st->m[k].n++] = &st->rows[i];
		}
		if (col_seq >= 0)
			for (int k = 0; k < st->nm; k++)
				qsort(st->m[k].rows, st->m[k].n, sizeof(row *), cmp_row);
	}
	return 0;
}

/* ---------- run state ---------- */

enum bad_kind
{
	BAD_NONE = -1,
	BAD_BROKEN_JSON = 0,
	BAD_MISSING_TS,
	BAD_DATA_NOT_ARRAY,
	BAD_PID,
	BAD_UNIT,
	N_BAD_KINDS
};
static const char *const bad_kind_name[] = {
	"broken-json", "missing-ts", "data-not-array", "bad-pid", "bad-unit"
};

enum ts_format
{
	TS_NUMBER, TS_STRING, TS_ISO
};

/* What a delivery report needs to write the log. */
typedef struct msgrec
{
	stream	   *st;
	const machine_rows *m;
	int64_t		ts;
	int			bad_kind;
	int			bad_row;
	uint32_t	nrows;
	row		   *rows[];
} msgrec;

static struct
{
	/* options */
	const char *brokers;
	stream		st[2];			/* 0 process, 1 memory */
	int			have[2];
	long		cycles;			/* -1: unlimited */
	double		duration;		/* seconds, <0 unlimited */
	int64_t		max_rows;		/* -1: unlimited */
	double		speedup;
	double		rate;			/* <0: cadence mode */
	int			rows_per_message;
	uint64_t	seed;
	int			ts_format;
	int			plain_rows;
	long		inject_bad;
	int			print;
	int			event_timestamp;	/* Kafka message timestamp = ts */
	int64_t		start_ts;
	const char *log_path;
	FILE	   *log;
	int			quiet;

	/* state */
	rd_kafka_t *rk;
	buf			value;
	int64_t		msgs_total;
	int64_t		bad_rotation;
	int64_t		rows_produced;
	int64_t		msgs_produced;
	int64_t		msgs_delivered;
	int64_t		rows_delivered;
	int64_t		msgs_failed;
	int64_t		bad_produced;
	struct timespec t0;
} g;

static double
now_since_start(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double) (t.tv_sec - g.t0.tv_sec) + (double) (t.tv_nsec - g.t0.tv_nsec) / 1e9;
}

/* Write s to the log with \t \n \r \\ escaped. */
static void
log_field(const char *s)
{
	for (; *s; s++)
	{
		switch (*s)
		{
			case '\t':
				fputs("\\t", g.log);
				break;
			case '\n':
				fputs("\\n", g.log);
				break;
			case '\r':
				fputs("\\r", g.log);
				break;
			case '\\':
				fputs("\\\\", g.log);
				break;
			default:
				putc_unlocked(*s, g.log);
		}
	}
}

static void
log_message(const msgrec *mr, int32_t partition, int64_t offset)
{
	stream	   *st = mr->st;
	int			whole_bad = mr->bad_kind == BAD_BROKEN_JSON || mr->bad_kind == BAD_MISSING_TS ||
		mr->bad_kind == BAD_DATA_NOT_ARRAY;

	if (mr->bad_kind != BAD_NONE)
		fprintf(g.log, "BAD\t%s\t%" PRId32 "\t%" PRId64 "\t%s\t%d\n", st->topic, partition,
				offset, bad_kind_name[mr->bad_kind], whole_bad ? -1 : mr->bad_row);
	if (whole_bad)
		return;
	for (uint32_t i = 0; i < mr->nrows; i++)
	{
		const char *f = mr->rows[i]->f;

		if ((int) i == mr->bad_row && mr->bad_kind != BAD_NONE)
			continue;
		fprintf(g.log, "%s\t%" PRId32 "\t%" PRId64 "\t%u\t%s\t%" PRId64, st->topic, partition,
				offset, i, mr->m->key, mr->ts);
		for (int c = 0; c < st->ncols; c++)
		{
			if (!st->drop[c])
			{
				putc_unlocked('\t', g.log);
				log_field(f);
			}
			f += strlen(f) + 1;
		}
		putc_unlocked('\n', g.log);
	}
}

static void
dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	msgrec	   *mr = msg->_private;

	(void) rk;
	(void) opaque;
	if (msg->err)
	{
		if (g.msgs_failed < 10)
			fprintf(stderr, PROG ": delivery failed (%s key %s): %s\n",
					mr->st->topic, mr->m->key, rd_kafka_err2str(msg->err));
		g.msgs_failed++;
	}
	else
	{
		g.msgs_delivered++;
		g.rows_delivered += mr->nrows;
		if (g.log != NULL)
			log_message(mr, msg->partition, msg->offset);
	}
	free(mr);
}

/* Append the ts member ("ts":...) for the chosen format. */
static void
put_ts(buf *b, int64_t ts)
{
	char		tmp[64];

	switch (g.ts_format)
	{
		case TS_NUMBER:
			snprintf(tmp, sizeof(tmp), "\"ts\":%" PRId64, ts);
			break;
		case TS_STRING:
			snprintf(tmp, sizeof(tmp), "\"ts\":\"%" PRId64 "\"", ts);
			break;
		default:
			{
				struct tm	tm;
				time_t		t = (time_t) ts;

				gmtime_r(&t, &tm);
				strftime(tmp, sizeof(tmp), "\"ts\":\"%Y-%m-%dT%H:%M:%SZ\"", &tm);
			}
	}
	buf_puts(b, tmp);
}

/* Append one row element (a JSON string holding the object, or the object). */
static void
put_row(buf *b, const stream *st, const row *r, int bad_kind)
{
	const char *f = r->f;
	int			lvl = g.plain_rows ? 1 : 2;
	const char *q = g.plain_rows ? "\"" : "\\\"";
	int			first = 1;

	if (!g.plain_rows)
		buf_ch(b, '"');
	buf_ch(b, '{');
	for (int c = 0; c < st->ncols; c++, f += strlen(f) + 1)
	{
		if (st->drop[c])
			continue;
		if (!first)
			buf_ch(b, ',');
		first = 0;
		buf_puts(b, g.plain_rows ? st->key_plain[c] : st->key_double[c]);
		if (bad_kind == BAD_PID && c == st->col_pid)
		{
			buf_puts(b, q);
			buf_puts(b, "x");
			buf_json_escaped(b, f, lvl);
			buf_puts(b, q);
		}
		else if (bad_kind == BAD_UNIT && c == st->col_minflt)
		{
			buf_puts(b, q);
			buf_puts(b, "12Q");
			buf_puts(b, q);
		}
		else if (*f == '\0')
			buf_puts(b, "null");
		else if (is_json_number(f))
			buf_puts(b, f);
		else
		{
			buf_puts(b, q);
			buf_json_escaped(b, f, lvl);
			buf_puts(b, q);
		}
	}
	buf_ch(b, '}');
	if (!g.plain_rows)
		buf_ch(b, '"');
}

/* Choose the malformation for the next bad message of this stream. */
static int
next_bad_kind(const stream *st)
{
	for (int tries = 0; tries < N_BAD_KINDS; tries++)
	{
		int			k = (int) (g.bad_rotation++ % N_BAD_KINDS);

		if (k == BAD_PID && st->col_pid < 0)
			continue;
		if (k == BAD_UNIT && st->col_minflt < 0)
			continue;
		return k;
	}
	return BAD_BROKEN_JSON;
}

/* Serve delivery reports while waiting until wall time `until` (seconds since start). */
static void
wait_until(double until)
{
	for (;;)
	{
		double		left = until - now_since_start();

		if (stop_requested || left <= 0)
			return;
		if (g.log != NULL)
			fflush(g.log);		/* while idle, keep the log current for tests that watch it */
		if (g.rk != NULL)
			rd_kafka_poll(g.rk, left > 0.1 ? 100 : (int) (left * 1000) + 1);
		else
		{
			struct timespec ts = {0, left > 0.1 ? 100000000L : (long) (left * 1e9)};

			nanosleep(&ts, NULL);
		}
	}
}

/* Build and produce one message; returns 0, or -1 on a fatal produce error. */
static int
send_message(stream *st, const machine_rows *m, int64_t ts, row **rows, uint32_t n)
{
	msgrec	   *mr = xmalloc(sizeof(msgrec) + sizeof(row *) * n);
	buf		   *b = &g.value;
	int			bad = BAD_NONE;

	g.msgs_total++;
	if (g.inject_bad > 0 && g.msgs_total % g.inject_bad == 0)
		bad = next_bad_kind(st);

	mr->st = st;
	mr->m = m;
	mr->ts = ts;
	mr->bad_kind = bad;
	mr->bad_row = (int) (n / 2);
	mr->nrows = n;
	memcpy(mr->rows, rows, sizeof(row *) * n);

	b->len = 0;
	buf_ch(b, '{');
	if (bad != BAD_MISSING_TS)
	{
		put_ts(b, ts);
		buf_ch(b, ',');
	}
	buf_puts(b, "\"data\":");
	if (bad == BAD_DATA_NOT_ARRAY)
		put_row(b, st, rows[0], BAD_NONE);
	else
	{
		buf_ch(b, '[');
		for (uint32_t i = 0; i < n; i++)
		{
			if (i > 0)
				buf_ch(b, ',');
			put_row(b, st, rows[i], (int) i == mr->bad_row ? bad : BAD_NONE);
		}
		buf_ch(b, ']');
	}
	buf_ch(b, '}');
	if (bad == BAD_BROKEN_JSON)
		b->len = b->len / 2;	/* cut in the middle: unterminated JSON */
	if (bad != BAD_NONE)
		g.bad_produced++;

	g.msgs_produced++;
	g.rows_produced += n;

	if (g.print)
	{
		int64_t		off = st->msgs_printed++;

		fputs(st->topic, stdout);
		putchar('\t');
		fputs(m->key, stdout);
		putchar('\t');
		fwrite(b->p, 1, b->len, stdout);
		putchar('\n');
		/* as if acknowledged at once */
		g.msgs_delivered++;
		g.rows_delivered += n;
		if (g.log != NULL)
			log_message(mr, -1, off);
		free(mr);
		return 0;
	}

	for (;;)
	{
		rd_kafka_resp_err_t err;

		err = rd_kafka_producev(g.rk,
								RD_KAFKA_V_TOPIC(st->topic),
								RD_KAFKA_V_KEY(m->key, strlen(m->key)),
								RD_KAFKA_V_VALUE(b->p, b->len),
								RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
								RD_KAFKA_V_TIMESTAMP(g.event_timestamp ? ts * 1000 : 0),
								RD_KAFKA_V_OPAQUE(mr),
								RD_KAFKA_V_END);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			break;
		if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
		{
			rd_kafka_poll(g.rk, 10);
			if (stop_requested > 1)
			{
				free(mr);
				return -1;
			}
			continue;
		}
		fprintf(stderr, PROG ": produce to %s failed: %s\n", st->topic, rd_kafka_err2str(err));
		free(mr);
		return -1;
	}
	rd_kafka_poll(g.rk, 0);
	return 0;
}

/* Take the next n rows of machine m (wrapping) into out[]. */
static void
take_rows(machine_rows *m, row **out, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
	{
		out[i] = m->rows[m->cursor];
		if (++m->cursor == m->n)
			m->cursor = 0;
	}
}

static int
limits_reached(long step)
{
	if (stop_requested)
		return 1;
	if (g.cycles >= 0 && step >= g.cycles)
		return 1;
	if (g.max_rows >= 0 && g.rows_produced >= g.max_rows)
		return 1;
	if (g.duration >= 0 && now_since_start() >= g.duration)
		return 1;
	return 0;
}

static int
run_cadence(void)
{
	row		   *tmp[128];
	long		step;

	for (step = 0; !limits_reached(step); step++)
	{
		int64_t		ts = g.start_ts + 5 * (int64_t) step;

		if (g.speedup > 0)
		{
			double		due = 5.0 * (double) step / g.speedup;

			if (g.duration >= 0 && due >= g.duration)
				break;			/* the next step would start after --duration */
			wait_until(due);
			if (stop_requested)
				break;
		}
		if (g.have[0])
		{
			stream	   *st = &g.st[0];

			for (int k = 0; k < st->nm; k++)
			{
				uint32_t	x = (uint32_t) prng_range(&st->rng, 10, 50);

				take_rows(&st->m[k], tmp, x);
				if (send_message(st, &st->m[k], ts, tmp, x) != 0)
					return -1;
			}
		}
		if (g.have[1] && step % 2 == 0)
		{
			stream	   *st = &g.st[1];

			for (int k = 0; k < st->nm; k++)
			{
				machine_rows *m = &st->m[k];
				uint32_t	x = (uint32_t) prng_range(&st->rng, 20, 80);
				uint32_t	y = (uint32_t) prng_range(&st->rng, 0, 5);

				take_rows(m, tmp, x);
				if (send_message(st, m, ts, tmp, x) != 0)
					return -1;
				if (m->nlate > 0 && send_message(st, m, m->late_ts, m->late, (uint32_t) m->nlate) != 0)
					return -1;
				take_rows(m, m->late, y);
				m->nlate = y;
				m->late_ts = ts;
			}
		}
	}
	/* rows held back by the last memory cycle go out now */
	if (g.have[1])
	{
		stream	   *st = &g.st[1];

		for (int k = 0; k < st->nm; k++)
			if (st->m[k].nlate > 0)
			{
				if (send_message(st, &st->m[k], st->m[k].late_ts, st->m[k].late,
								 (uint32_t) st->m[k].nlate) != 0)
					return -1;
				st->m[k].nlate = 0;
			}
	}
	return 0;
}

static int
run_rate(void)
{
	row		  **tmp = xmalloc(sizeof(row *) * (size_t) g.rows_per_message);
	long		round;
	int			rc = 0;

	for (round = 0; !limits_reached(round) && rc == 0; round++)
	{
		for (int s = 0; s < 2 && rc == 0; s++)
		{
			stream	   *st = &g.st[s];

			if (!g.have[s])
				continue;
			for (int k = 0; k < st->nm && rc == 0; k++)
			{
				double		el = now_since_start();
				int64_t		ts;

				if (g.rate > 0)
				{
					double		due = (double) g.rows_produced / g.rate;

					if (due > el)
					{
						wait_until(due);
						if (stop_requested)
							goto out;
						el = now_since_start();
					}
				}
				ts = g.start_ts + (int64_t) el;
				take_rows(&st->m[k], tmp, (uint32_t) g.rows_per_message);
				rc = send_message(st, &st->m[k], ts, tmp, (uint32_t) g.rows_per_message);
			}
		}
	}
out:
	free(tmp);
	return rc;
}

static void
usage(FILE *out)
{
	fprintf(out,
			"Usage: " PROG " --brokers ADDR|--print [--process CSV] [--memory CSV] [options]\n"
			"Stream atop CSV rows into Kafka like the real producer, in anomstream's\n"
			"envelope {\"ts\":T,\"data\":[\"<row JSON>\",...]}, one message per machine per cycle.\n"
			"\n"
			"Input and output\n"
			"  --brokers ADDR         bootstrap servers (required unless --print)\n"
			"  --process CSV          process rows (topic 'process')\n"
			"  --memory CSV           memory rows (topic 'memory')\n"
			"  --process-topic T      topic for process rows (default process)\n"
			"  --memory-topic T       topic for memory rows (default memory)\n"
			"  --drop-columns A,B     columns not sent (e.g. attack,type)\n"
			"  --print                write 'topic<TAB>key<TAB>value' lines to stdout, no Kafka\n"
			"  --log FILE             one line per acknowledged row (see README)\n"
			"  -X prop=value          librdkafka producer property (repeatable)\n"
			"Schedule (cadence mode: every 5 s 10-50 process rows per machine; every 10 s\n"
			"20-80 memory rows + 0-5 rows sent one cycle late)\n"
			"  --cycles N             stop after N 5-second steps (N process cycles,\n"
			"                         ceil(N/2) memory cycles); in rate mode N rounds\n"
			"  --duration S           stop after S wall-clock seconds\n"
			"  --max-rows N           stop once N rows were produced\n"
			"  --speedup F            divide waits by F (default 1); 0 = never wait\n"
			"  --start-ts T           event time of the first cycle, epoch seconds (default now)\n"
			"  --seed S               seed for the choice of X and Y (default 1)\n"
			"  --rate R               rate mode: about R rows/s in total, ignoring the\n"
			"                         cadence; R = 0 means as fast as possible\n"
			"  --rows-per-message K   rows per message in rate mode (default 50)\n"
			"Message shape\n"
			"  --ts-format number|string|iso   ts as 1604232005, \"1604232005\" or\n"
			"                         \"2020-11-01T12:00:05Z\" (default number)\n"
			"  --plain-rows           rows as JSON objects instead of JSON strings\n"
			"  --kafka-timestamp now|event     Kafka message timestamp: producer clock\n"
			"                         (default) or the message's ts\n"
			"  --inject-bad N         every Nth message malformed (broken-json, missing-ts,\n"
			"                         data-not-array, bad-pid, bad-unit), logged as BAD lines\n"
			"  -q, --quiet            no statistics on stderr\n"
			"  -h, --help             this text\n"
			"Without --cycles/--duration/--max-rows it runs until SIGINT/SIGTERM, then\n"
			"flushes. Producer: enable.idempotence=true, acks=all, linger.ms=5.\n"
			"Exit: 0 every message acknowledged, 1 delivery or runtime failure, 2 usage\n"
			"or input error.\n");
}

static int
opt_double(const char *name, const char *v, double lo, double *out)
{
	char	   *end;
	double		d = strtod(v, &end);

	if (*v == '\0' || *end != '\0' || !(d >= lo) || isinf(d))
	{
		fprintf(stderr, PROG ": bad %s '%s'\n", name, v);
		return -1;
	}
	*out = d;
	return 0;
}

static int
opt_long(const char *name, const char *v, long lo, long *out)
{
	char	   *end;
	long		l;

	errno = 0;
	l = strtol(v, &end, 10);
	if (*v == '\0' || *end != '\0' || errno || l < lo)
	{
		fprintf(stderr, PROG ": bad %s '%s'\n", name, v);
		return -1;
	}
	*out = l;
	return 0;
}

int
main(int argc, char **argv)
{
	const char *xprops[64];
	int			nx = 0;
	const char *drop = NULL;
	char		errstr[512];
	int			rc = 0;
	struct sigaction sa;
	double		elapsed;

	g.cycles = -1;
	g.duration = -1;
	g.max_rows = -1;
	g.speedup = 1;
	g.rate = -1;
	g.rows_per_message = 50;
	g.seed = 1;
	g.start_ts = (int64_t) time(NULL);
	g.st[0].name = "process";
	g.st[0].topic = "process";
	g.st[1].name = "memory";
	g.st[1].topic = "memory";

	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		long		l;
		double		d;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
		{
			usage(stdout);
			return 0;
		}
		if (strcmp(a, "--print") == 0)
		{
			g.print = 1;
			continue;
		}
		if (strcmp(a, "--plain-rows") == 0)
		{
			g.plain_rows = 1;
			continue;
		}
		if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0)
		{
			g.quiet = 1;
			continue;
		}
		if (v == NULL)
		{
			fprintf(stderr, PROG ": %s: unknown option or missing value\n", a);
			fprintf(stderr, "Try --help.\n");
			return 2;
		}
		i++;
		if (strcmp(a, "--brokers") == 0)
			g.brokers = v;
		else if (strcmp(a, "--process") == 0)
		{
			g.st[0].path = v;
			g.have[0] = 1;
		}
		else if (strcmp(a, "--memory") == 0)
		{
			g.st[1].path = v;
			g.have[1] = 1;
		}
		else if (strcmp(a, "--process-topic") == 0)
			g.st[0].topic = v;
		else if (strcmp(a, "--memory-topic") == 0)
			g.st[1].topic = v;
		else if (strcmp(a, "--drop-columns") == 0)
			drop = v;
		else if (strcmp(a, "--log") == 0)
			g.log_path = v;
		else if (strcmp(a, "-X") == 0)
		{
			if (nx == 64 || strchr(v, '=') == NULL)
			{
				fprintf(stderr, PROG ": -X expects prop=value (at most 64)\n");
				return 2;
			}
			xprops[nx++] = v;
		}
		else if (strcmp(a, "--cycles") == 0)
		{
			if (opt_long(a, v, 0, &g.cycles))
				return 2;
		}
		else if (strcmp(a, "--duration") == 0)
		{
			if (opt_double(a, v, 0, &g.duration))
				return 2;
		}
		else if (strcmp(a, "--max-rows") == 0)
		{
			if (opt_long(a, v, 0, &l))
				return 2;
			g.max_rows = l;
		}
		else if (strcmp(a, "--speedup") == 0)
		{
			if (opt_double(a, v, 0, &g.speedup))
				return 2;
		}
		else if (strcmp(a, "--start-ts") == 0)
		{
			if (opt_long(a, v, 0, &l))
				return 2;
			g.start_ts = l;
		}
		else if (strcmp(a, "--seed") == 0)
		{
			char	   *end;

			errno = 0;
			g.seed = strtoull(v, &end, 10);
			if (*v == '\0' || *v == '-' || *end || errno)
			{
				fprintf(stderr, PROG ": bad --seed '%s'\n", v);
				return 2;
			}
		}
		else if (strcmp(a, "--rate") == 0)
		{
			if (opt_double(a, v, 0, &d))
				return 2;
			g.rate = d;
		}
		else if (strcmp(a, "--rows-per-message") == 0)
		{
			if (opt_long(a, v, 1, &l) || l > 100000)
			{
				fprintf(stderr, PROG ": --rows-per-message must be 1..100000\n");
				return 2;
			}
			g.rows_per_message = (int) l;
		}
		else if (strcmp(a, "--ts-format") == 0)
		{
			if (strcmp(v, "number") == 0)
				g.ts_format = TS_NUMBER;
			else if (strcmp(v, "string") == 0)
				g.ts_format = TS_STRING;
			else if (strcmp(v, "iso") == 0)
				g.ts_format = TS_ISO;
			else
			{
				fprintf(stderr, PROG ": --ts-format must be number, string or iso\n");
				return 2;
			}
		}
		else if (strcmp(a, "--kafka-timestamp") == 0)
		{
			if (strcmp(v, "now") == 0)
				g.event_timestamp = 0;
			else if (strcmp(v, "event") == 0)
				g.event_timestamp = 1;
			else
			{
				fprintf(stderr, PROG ": --kafka-timestamp must be now or event\n");
				return 2;
			}
		}
		else if (strcmp(a, "--inject-bad") == 0)
		{
			if (opt_long(a, v, 1, &g.inject_bad))
				return 2;
		}
		else
		{
			fprintf(stderr, PROG ": unknown option %s\n", a);
			fprintf(stderr, "Try --help.\n");
			return 2;
		}
	}
	if (!g.have[0] && !g.have[1])
	{
		fprintf(stderr, PROG ": give --process CSV and/or --memory CSV\n");
		fprintf(stderr, "Try --help.\n");
		return 2;
	}
	if (!g.print && g.brokers == NULL)
	{
		fprintf(stderr, PROG ": --brokers is required (or --print)\n");
		return 2;
	}

	for (int s = 0; s < 2; s++)
		if (g.have[s])
		{
			if (stream_load(&g.st[s], drop) != 0)
				return 2;
			prng_seed(&g.st[s].rng, hash3(g.seed, 0x5e9ULL, (uint64_t) s));
		}

	if (g.log_path != NULL)
	{
		g.log = fopen(g.log_path, "w");
		if (g.log == NULL)
		{
			fprintf(stderr, PROG ": cannot open %s: %s\n", g.log_path, strerror(errno));
			return 2;
		}
		setvbuf(g.log, xmalloc(1 << 20), _IOFBF, 1 << 20);
		for (int s = 0; s < 2; s++)
		{
			if (!g.have[s])
				continue;
			fprintf(g.log, "#\t%s\tpartition\toffset\trow_index\tkey\tts", g.st[s].topic);
			for (int c = 0; c < g.st[s].ncols; c++)
				if (!g.st[s].drop[c])
				{
					putc('\t', g.log);
					log_field(g.st[s].cols[c]);
				}
			putc('\n', g.log);
		}
	}

	if (!g.print)
	{
		rd_kafka_conf_t *conf = rd_kafka_conf_new();
		const char *defaults[][2] = {
			{"bootstrap.servers", g.brokers},
			{"enable.idempotence", "true"},
			{"acks", "all"},
			{"linger.ms", "5"},
			{"client.id", "anomstream-replay"},
		};

		for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
			if (rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
			{
				fprintf(stderr, PROG ": %s\n", errstr);
				return 2;
			}
		for (int i = 0; i < nx; i++)
		{
			char	   *kv = strdup(xprops[i]);
			char	   *eq = strchr(kv, '=');

			*eq = '\0';
			if (rd_kafka_conf_set(conf, kv, eq + 1, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
			{
				fprintf(stderr, PROG ": -X %s: %s\n", xprops[i], errstr);
				return 2;
			}
			free(kv);
		}
		rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
		g.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
		if (g.rk == NULL)
		{
			fprintf(stderr, PROG ": rd_kafka_new: %s\n", errstr);
			return 1;
		}
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	clock_gettime(CLOCK_MONOTONIC, &g.t0);
	if (g.rate >= 0)
		rc = run_rate();
	else
		rc = run_cadence();
	if (rc != 0)
		rc = 1;

	if (g.rk != NULL)
	{
		/* wait for every delivery report; a second signal gives up */
		int			warned = 0;

		while (rd_kafka_outq_len(g.rk) > 0 && stop_requested < 2)
		{
			rd_kafka_flush(g.rk, 500);
			if (g.log != NULL)
				fflush(g.log);
			if (!warned && !g.quiet && now_since_start() > 10 && rd_kafka_outq_len(g.rk) > 0)
			{
				fprintf(stderr, PROG ": waiting for %d outstanding messages...\n",
						rd_kafka_outq_len(g.rk));
				warned = 1;
			}
		}
		if (rd_kafka_outq_len(g.rk) > 0)
		{
			fprintf(stderr, PROG ": %d messages not acknowledged (interrupted)\n",
					rd_kafka_outq_len(g.rk));
			rc = 1;
		}
	}
	elapsed = now_since_start();
	if (g.msgs_failed > 0)
		rc = 1;
	if (g.print && fflush(stdout) != 0)
	{
		fprintf(stderr, PROG ": write error on stdout: %s\n", strerror(errno));
		rc = 1;
	}
	if (g.log != NULL && fclose(g.log) != 0)
	{
		fprintf(stderr, PROG ": write error on %s: %s\n", g.log_path, strerror(errno));
		rc = 1;
	}
	if (!g.quiet)
		fprintf(stderr,
				PROG ": %" PRId64 " messages (%" PRId64 " malformed), %" PRId64 " rows produced; "
				"%" PRId64 " messages / %" PRId64 " rows acknowledged, %" PRId64 " failed; "
				"%.3f s, %.0f rows/s\n",
				g.msgs_produced, g.bad_produced, g.rows_produced, g.msgs_delivered,
				g.rows_delivered, g.msgs_failed, elapsed,
				elapsed > 0 ? (double) g.rows_produced / elapsed : 0.0);
	if (g.rk != NULL)
		rd_kafka_destroy(g.rk);
	return rc;
}
