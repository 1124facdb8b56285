/*-------------------------------------------------------------------------
 *
 * db.c
 *	  anomstream-web's only database access: one libpq connection, fixed prepared statements,
 *	  and a short cache so that any number of HTTP clients costs the database at most one
 *	  query per resource per cache period.
 *
 * Invariants:
 *	- One statement at a time (a mutex around the connection and the cache): the web front end
 *	  never puts more than one query's load on the server.
 *	- Only the statements in stmts[] run; requests choose among them but never supply SQL or
 *	  parameters (the one parameter, the chart range, comes from the command line).
 *	- The session is read-only (default_transaction_read_only) with statement and lock
 *	  timeouts; a superuser connection is refused unless --allow-superuser was given.
 *	- A lost connection is retried at most once per second; answers (errors included) are
 *	  reused for cache_ms.
 *
 *-------------------------------------------------------------------------
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "web.h"

/* Largest body one resource may have (the chart of 2000 windows of ten machines fits). */
#define RESOURCE_LIMIT	(8 * 1024 * 1024)

typedef enum Stmt
{
	ST_HEALTH,
	ST_CHART,
	ST_ATTACKS,
	ST_STATUS,
	ST_COUNTS,
	ST_WINDOW,
	ST_DETECTED,
	NUM_STMTS
} Stmt;

static const struct
{
	const char *name;
	const char *sql;
	int			nparams;
} stmts[NUM_STMTS] = {
	[ST_HEALTH] = {"health", "SELECT 1", 0},
	[ST_CHART] = {"chart", "SELECT anomstream.attack_chart($1::interval)", 1},
	[ST_ATTACKS] = {"attacks",
		"SELECT coalesce(json_agg(t), '[]'::json)::text FROM ("
		" SELECT event_time, machine, cmd_pid, cmd, m_event_time, p_probability, m_probability,"
		" cpu, mem FROM anomstream.latest_detected_attacks LIMIT 20) t", 0},
	[ST_STATUS] = {"status",
		"SELECT topic, kafka_partition, state, rows, messages, lag, dead_letters"
		" FROM anomstream.status ORDER BY topic, kafka_partition", 0},
	[ST_COUNTS] = {"counts", "SELECT dead_letters, late_rows FROM anomstream.reader_counts()", 0},
	/* The newest window with any row, zero-filled over the machines of the chart range. */
	[ST_WINDOW] = {"window",
		"SELECT b.machine, b.attacks, b.new_attacks, extract(epoch FROM b.window_start)::float8"
		" FROM (SELECT max(window_start) AS ws FROM anomstream.potential_attacks) l,"
		" LATERAL anomstream.attacks_between(l.ws - $1::interval, l.ws + interval '1 microsecond') b"
		" WHERE b.window_start = l.ws ORDER BY b.machine", 1},
	[ST_DETECTED] = {"detected",
		"SELECT p_machine, count(*) FROM anomstream.detected_attacks"
		" WHERE p_event_time >= now() - interval '24 hours' AND p_machine IS NOT NULL"
		" GROUP BY 1 ORDER BY 1", 0},
};

typedef struct Cached
{
	Buf			body;
	int			status;
	int64_t		at;
	bool		valid;
} Cached;

static pthread_mutex_t db_lock = PTHREAD_MUTEX_INITIALIZER;
static PGconn *conn;
static unsigned prepared;		/* bit per Stmt prepared on this connection */
static int64_t last_attempt = -1000000;
static char last_error[512];
static Cached cache[NUM_RESOURCES];

static void
set_error(const char *prefix, const char *msg)
{
	size_t		n;

	snprintf(last_error, sizeof(last_error), "%s%s", prefix, msg ? msg : "");
	/* libpq messages end with a line feed; keep one line. */
	n = strlen(last_error);
	while (n > 0 && (last_error[n - 1] == '\n' || last_error[n - 1] == '\r'))
		last_error[--n] = '\0';
	for (size_t i = 0; i < n; i++)
		if (last_error[i] == '\n')
			last_error[i] = ' ';
}

static void
drop_connection(void)
{
	if (conn)
		PQfinish(conn);
	conn = NULL;
	prepared = 0;
}

/*
 * Open the connection if there is none (at most one attempt per second); false if unusable.
 * Called with db_lock held.
 */
static bool
ensure_connection(bool *superuser_refused)
{
	const char *keys[5];
	const char *vals[5];
	int			k = 0;
	PGresult   *res;
	int64_t		now = now_ms();

	if (superuser_refused)
		*superuser_refused = false;
	if (conn && PQstatus(conn) == CONNECTION_OK)
		return true;
	drop_connection();
	if (now - last_attempt < 1000)
		return false;
	last_attempt = now;

	/* Defaults first, so that the user's conninfo (expanded from dbname) overrides them. */
	keys[k] = "connect_timeout";
	vals[k++] = "5";
	keys[k] = "application_name";
	vals[k++] = "anomstream-web";
	if (web_config.conninfo && web_config.conninfo[0])
	{
		keys[k] = "dbname";
		vals[k++] = web_config.conninfo;
	}
	keys[k] = NULL;
	vals[k] = NULL;

	conn = PQconnectdbParams(keys, vals, 1);
	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
	{
		set_error("cannot connect: ", conn ? PQerrorMessage(conn) : "out of memory");
		drop_connection();
		return false;
	}

	res = PQexec(conn, "SET default_transaction_read_only = on; "
				 "SET statement_timeout = '5s'; SET lock_timeout = '1s'; "
				 "SET idle_in_transaction_session_timeout = '10s'");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		set_error("cannot configure the session: ", PQerrorMessage(conn));
		PQclear(res);
		drop_connection();
		return false;
	}
	PQclear(res);

	res = PQexec(conn, "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		set_error("cannot read the connection's role: ", PQerrorMessage(conn));
		PQclear(res);
		drop_connection();
		return false;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "t") == 0 && !web_config.allow_superuser)
	{
		set_error("refusing to serve as a superuser: ",
				  "connect as a role that is a member of anomstream_reader (or pass --allow-superuser)");
		if (superuser_refused)
			*superuser_refused = true;
		PQclear(res);
		drop_connection();
		return false;
	}
	PQclear(res);
	return true;
}

/*
 * True if res has the expected status; otherwise record the error, free res, and drop the
 * connection if it broke.
 */
static bool
result_ok(PGresult *res, ExecStatusType expected)
{
	if (PQresultStatus(res) == expected)
		return true;
	set_error("", res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
	PQclear(res);
	if (PQstatus(conn) != CONNECTION_OK)
		drop_connection();
	return false;
}

/*
 * Run one fixed statement; NULL (last_error set) on failure. Called with db_lock held.
 */
static PGresult *
run(Stmt st, const char *param)
{
	PGresult   *res;
	const char *params[1] = {param};

	if (!ensure_connection(NULL))
		return NULL;
	if (!(prepared & (1u << st)))
	{
		res = PQprepare(conn, stmts[st].name, stmts[st].sql, stmts[st].nparams, NULL);
		if (!result_ok(res, PGRES_COMMAND_OK))
			return NULL;
		PQclear(res);
		prepared |= 1u << st;
	}
	res = PQexecPrepared(conn, stmts[st].name, stmts[st].nparams, params, NULL, NULL, 0);
	return result_ok(res, PGRES_TUPLES_OK) ? res : NULL;
}

/*
 * The single text value of a one-row, one-column result into out; HTTP status.
 */
static int
single_value(Stmt st, const char *param, Buf *out)
{
	PGresult   *res = run(st, param);

	if (res == NULL)
	{
		buf_printf(out, "unavailable: %s\n", last_error);
		return 503;
	}
	if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
		buf_append(out, PQgetvalue(res, 0, 0), PQgetlength(res, 0, 0));
	PQclear(res);
	return 200;
}

static double
num(PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? 0.0 : strtod(PQgetvalue(res, row, col), NULL);
}

/*
 * /metrics: every family is always present (with no samples when there is nothing to say), and
 * each source that fails only turns its own *_up gauge to 0.
 */
static int
build_metrics(Buf *out)
{
	PGresult   *res;
	bool		db_up;
	PGresult   *status = NULL;

	db_up = (res = run(ST_HEALTH, NULL)) != NULL;
	if (res)
		PQclear(res);
	prom_family(out, "anomstream_web_database_up", "gauge",
				"1 if anomstream-web can query the database.");
	prom_sample(out, "anomstream_web_database_up", NULL, 0, db_up);

	if (db_up)
		status = run(ST_STATUS, NULL);
	prom_family(out, "anomstream_status_up", "gauge",
				"1 if anomstream.status could be read (it needs anomstream in shared_preload_libraries).");
	prom_sample(out, "anomstream_status_up", NULL, 0, status != NULL);

	prom_family(out, "anomstream_worker_state", "gauge",
				"The pipeline worker's state (the sample with value 1 names it).");
	if (status && PQntuples(status) > 0 && !PQgetisnull(status, 0, 2))
	{
		const char *l[2] = {"state", PQgetvalue(status, 0, 2)};

		prom_sample(out, "anomstream_worker_state", l, 1, 1);
	}
	{
		static const struct
		{
			const char *name;
			const char *type;
			const char *help;
			int			col;
		}			per_partition[] = {
			{"anomstream_rows_ingested_total", "counter", "Rows decoded per topic and partition since the worker started.", 3},
			{"anomstream_messages_total", "counter", "Kafka messages consumed per topic and partition since the worker started.", 4},
			{"anomstream_lag_messages", "gauge", "Messages between the worker's next offset and the partition's high watermark.", 5},
			{"anomstream_worker_dead_letters_total", "counter", "Dead letters written per topic and partition since the worker started.", 6},
		};

		for (size_t f = 0; f < sizeof(per_partition) / sizeof(per_partition[0]); f++)
		{
			prom_family(out, per_partition[f].name, per_partition[f].type, per_partition[f].help);
			for (int r = 0; status && r < PQntuples(status); r++)
			{
				const char *l[4] = {"topic", PQgetvalue(status, r, 0),
				"partition", PQgetvalue(status, r, 1)};

				if (PQgetisnull(status, r, 0) || PQgetisnull(status, r, 1) ||
					PQgetisnull(status, r, per_partition[f].col))
					continue;
				prom_sample(out, per_partition[f].name, l, 2, num(status, r, per_partition[f].col));
			}
		}
	}
	if (status)
		PQclear(status);

	res = db_up ? run(ST_COUNTS, NULL) : NULL;
	prom_family(out, "anomstream_dead_letters", "gauge",
				"Rows in anomstream.dead_letters.");
	if (res && PQntuples(res) == 1)
		prom_sample(out, "anomstream_dead_letters", NULL, 0, num(res, 0, 0));
	prom_family(out, "anomstream_late_rows", "gauge",
				"Rows in anomstream.late_rows (absent while that table does not exist).");
	if (res && PQntuples(res) == 1 && !PQgetisnull(res, 0, 1))
		prom_sample(out, "anomstream_late_rows", NULL, 0, num(res, 0, 1));
	if (res)
		PQclear(res);

	res = db_up ? run(ST_WINDOW, web_config.since) : NULL;
	prom_family(out, "anomstream_window_attacks", "gauge",
				"Potential attacks per machine in the newest window that has any (0 for machines of the chart range without a row there).");
	for (int r = 0; res && r < PQntuples(res); r++)
	{
		const char *l[2] = {"machine", PQgetvalue(res, r, 0)};

		prom_sample(out, "anomstream_window_attacks", l, 1, num(res, r, 1));
	}
	prom_family(out, "anomstream_window_new_attacks", "gauge",
				"New attacks per machine in the same window as anomstream_window_attacks.");
	for (int r = 0; res && r < PQntuples(res); r++)
	{
		const char *l[2] = {"machine", PQgetvalue(res, r, 0)};

		prom_sample(out, "anomstream_window_new_attacks", l, 1, num(res, r, 2));
	}
	prom_family(out, "anomstream_window_start_seconds", "gauge",
				"Start of the window the anomstream_window_* samples describe, seconds since 1970.");
	if (res && PQntuples(res) > 0)
		prom_sample(out, "anomstream_window_start_seconds", NULL, 0, num(res, 0, 3));
	if (res)
		PQclear(res);

	res = db_up ? run(ST_DETECTED, NULL) : NULL;
	prom_family(out, "anomstream_detected_attacks_24h", "gauge",
				"Detected attack pairs per machine whose process event is less than 24 hours old.");
	for (int r = 0; res && r < PQntuples(res); r++)
	{
		const char *l[2] = {"machine", PQgetvalue(res, r, 0)};

		prom_sample(out, "anomstream_detected_attacks_24h", l, 1, num(res, r, 1));
	}
	if (res)
		PQclear(res);
	return 200;
}

/*
 * Build a resource afresh into c (db_lock held).
 */
static void
build(Resource r, Cached *c)
{
	PGresult   *res;

	buf_reset(&c->body);
	switch (r)
	{
		case RES_CHART:
			c->status = single_value(ST_CHART, web_config.since, &c->body);
			break;
		case RES_ATTACKS:
			c->status = single_value(ST_ATTACKS, NULL, &c->body);
			break;
		case RES_METRICS:
			c->status = build_metrics(&c->body);
			break;
		case RES_HEALTH:
			res = run(ST_HEALTH, NULL);
			c->status = res ? 200 : 503;
			if (res)
				buf_puts(&c->body, "ok\n");
			else
				buf_printf(&c->body, "database unavailable: %s\n", last_error);
			if (res)
				PQclear(res);
			break;
		default:
			c->status = 500;
	}
	if (c->body.overflow)
	{
		buf_reset(&c->body);
		buf_puts(&c->body, "response too large\n");
		c->status = 500;
	}
	c->at = now_ms();
	c->valid = true;
}

/*
 * A copy of the resource's current answer; HTTP status.
 */
int
db_get(Resource r, Buf *out)
{
	Cached	   *c;
	int			status;

	if (r < 0 || r >= NUM_RESOURCES)
		return 500;
	c = &cache[r];
	pthread_mutex_lock(&db_lock);
	if (c->body.limit == 0)
		buf_init(&c->body, RESOURCE_LIMIT);
	if (!c->valid || now_ms() - c->at >= web_config.cache_ms)
		build(r, c);
	buf_append(out, c->body.data ? c->body.data : "", c->body.len);
	status = out->overflow ? 500 : c->status;
	pthread_mutex_unlock(&db_lock);
	return status;
}

/*
 * At start: try the connection once. 0 = fine, 1 = unreachable for now (serve and retry),
 * 2 = refused (a superuser without --allow-superuser): do not start.
 */
int
db_startup_check(char *err, size_t errlen)
{
	bool		refused = false;
	int			rc;

	pthread_mutex_lock(&db_lock);
	last_attempt = -1000000;
	rc = ensure_connection(&refused) ? 0 : (refused ? 2 : 1);
	if (rc != 0)
		snprintf(err, errlen, "%s", last_error);
	pthread_mutex_unlock(&db_lock);
	return rc;
}

void
db_shutdown(void)
{
	pthread_mutex_lock(&db_lock);
	drop_connection();
	for (int i = 0; i < NUM_RESOURCES; i++)
		buf_free(&cache[i].body);
	pthread_mutex_unlock(&db_lock);
}
