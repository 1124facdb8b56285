/*-------------------------------------------------------------------------
 *
 * web.h
 *	  anomstream-web: shared declarations of the HTTP front end, its database access and its
 *	  page and metrics builders.
 *
 * Invariants: every buffer is bounded (Buf refuses to grow past its limit); the database is
 * reached through one connection, one statement at a time, with fixed prepared statements only;
 * no part of a request ever becomes SQL.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANOMSTREAM_WEB_H
#define ANOMSTREAM_WEB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer with a hard size limit. */
typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
	size_t		limit;
	bool		overflow;		/* an append was refused: the content is truncated */
} Buf;

extern void buf_init(Buf *b, size_t limit);
extern void buf_free(Buf *b);
extern void buf_reset(Buf *b);
extern void buf_append(Buf *b, const char *s, size_t n);
extern void buf_puts(Buf *b, const char *s);
extern void buf_printf(Buf *b, const char *fmt,...) __attribute__((format(printf, 2, 3)));

/* Settings from the command line. */
typedef struct WebConfig
{
	const char *listen;
	int			port;
	const char *conninfo;
	const char *since;			/* chart range, an interval literal */
	int			refresh_ms;		/* page redraw period */
	int			max_clients;
	int			timeout_s;		/* idle connection timeout */
	int			threads;
	int			cache_ms;		/* how long one database answer serves all clients */
	bool		allow_superuser;
} WebConfig;

extern WebConfig web_config;

extern int64_t now_ms(void);

/* db.c: the single connection and the answers built from it (thread-safe, cached). */
typedef enum Resource
{
	RES_CHART,					/* image/svg+xml */
	RES_ATTACKS,				/* application/json */
	RES_METRICS,				/* Prometheus text */
	RES_HEALTH,					/* text/plain */
	NUM_RESOURCES
} Resource;

extern int	db_startup_check(char *err, size_t errlen);
extern int	db_get(Resource res, Buf *out);	/* returns an HTTP status, body in out */
extern void db_shutdown(void);

/* metrics.c */
extern void prom_family(Buf *b, const char *name, const char *type, const char *help);
extern void prom_sample(Buf *b, const char *name, const char *const *labels, int nlabels,
						double value);

/* page.c */
extern const char page_head[];
extern const char page_tail[];
extern const char app_js[];

#endif
