/*-------------------------------------------------------------------------
 *
 * main.c
 *	  anomstream-web: command line, HTTP daemon and request routing.
 *
 *	  anomstream-web [--listen ADDR] [--port N] [--conninfo STR] [--since INTERVAL]
 *	                 [--refresh-ms N] [--max-clients N] [--timeout S] [--threads N]
 *	                 [--cache-ms N] [--allow-superuser]
 *
 * Invariants:
 *	- Binds 127.0.0.1 unless told otherwise; serves GET and HEAD of a fixed set of paths and
 *	  nothing else (405 / 404); query strings and bodies are ignored, never interpreted.
 *	- Connections are bounded (--max-clients), idle ones time out (--timeout), each connection's
 *	  request buffer is bounded (MHD's connection memory limit), and request handling never
 *	  allocates in proportion to anything the client sends.
 *	- Prints "anomstream-web listening on http://ADDR:PORT/" once it accepts connections, then
 *	  runs until SIGINT or SIGTERM.
 *
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "web.h"

#define ANOMSTREAM_WEB_VERSION "0.1"
/* Bytes of request (line and headers) one connection may buffer. */
#define CONNECTION_MEMORY	(32 * 1024)
/* Largest response body we copy out of the cache. */
#define RESPONSE_LIMIT		(8 * 1024 * 1024)

WebConfig	web_config = {
	.listen = "127.0.0.1",
	.port = 8765,
	.conninfo = "",
	.since = "10 minutes",
	.refresh_ms = 2000,
	.max_clients = 256,
	.timeout_s = 10,
	.threads = 4,
	.cache_ms = 1000,
	.allow_superuser = false,
};

static void
usage(FILE *f)
{
	fprintf(f,
			"anomstream-web serves the live potential-attacks chart, the latest detected attacks\n"
			"and Prometheus metrics of an anomstream database.\n\n"
			"Usage: anomstream-web [OPTION]...\n\n"
			"  --listen ADDR       address to bind (default 127.0.0.1; IPv4 or IPv6 literal)\n"
			"  --port N            TCP port (default 8765; 0 = any free port)\n"
			"  --conninfo STR      libpq connection string or URI (default: PG* environment);\n"
			"                      use a role that is a member of anomstream_reader\n"
			"  --since INTERVAL    range the chart shows (default '10 minutes')\n"
			"  --refresh-ms N      page redraw period in milliseconds (default 2000)\n"
			"  --max-clients N     most simultaneous connections (default 256)\n"
			"  --timeout S         close connections idle this many seconds (default 10)\n"
			"  --threads N         HTTP worker threads (default 4)\n"
			"  --cache-ms N        reuse each database answer this long (default 1000)\n"
			"  --allow-superuser   accept a superuser connection (not recommended)\n"
			"  --help, --version\n\n"
			"Paths: /  /app.js  /chart.svg  /attacks.json  /metrics  /healthz\n");
}

static long
int_arg(const char *opt, const char *s, long min, long max)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
	{
		fprintf(stderr, "anomstream-web: invalid value \"%s\" for %s (expected %ld..%ld)\n",
				s, opt, min, max);
		exit(2);
	}
	return v;
}

/*
 * Answer with a copy of body; adds the headers every response carries.
 */
static enum MHD_Result
respond(struct MHD_Connection *c, unsigned int status, const char *type,
		const char *body, size_t len)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, (void *) body, MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", type);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	if (strncmp(type, "text/html", 9) == 0)
		MHD_add_response_header(r, "Content-Security-Policy",
								"default-src 'none'; script-src 'self'; connect-src 'self'; "
								"img-src 'self'; style-src 'unsafe-inline'; base-uri 'none'; "
								"form-action 'none'");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, "Allow", "GET, HEAD");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result
respond_resource(struct MHD_Connection *c, Resource res, const char *type)
{
	Buf			b;
	int			status;
	enum MHD_Result ret;

	buf_init(&b, RESPONSE_LIMIT);
	status = db_get(res, &b);
	if (status != 200)
		type = "text/plain; charset=utf-8";
	ret = respond(c, status, type, b.data ? b.data : "", b.len);
	buf_free(&b);
	return ret;
}

static enum MHD_Result
handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
	   const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	static const char not_found[] = "not found\n";
	static const char not_allowed[] = "method not allowed\n";

	/* Any body is ignored: answer at once; MHD closes the connection after it. */
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return respond(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8",
					   not_allowed, sizeof(not_allowed) - 1);

	if (strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0)
	{
		char		body[64];
		Buf			b;
		enum MHD_Result ret;

		buf_init(&b, strlen(page_head) + strlen(page_tail) + sizeof(body) + 1);
		buf_puts(&b, page_head);
		snprintf(body, sizeof(body), "<body data-refresh-ms=\"%d\">\n", web_config.refresh_ms);
		buf_puts(&b, body);
		buf_puts(&b, page_tail);
		ret = respond(c, b.overflow ? 500 : 200, "text/html; charset=utf-8", b.data, b.len);
		buf_free(&b);
		return ret;
	}
	if (strcmp(url, "/app.js") == 0)
		return respond(c, 200, "text/javascript; charset=utf-8", app_js, strlen(app_js));
	if (strcmp(url, "/chart.svg") == 0)
		return respond_resource(c, RES_CHART, "image/svg+xml; charset=utf-8");
	if (strcmp(url, "/attacks.json") == 0)
		return respond_resource(c, RES_ATTACKS, "application/json; charset=utf-8");
	if (strcmp(url, "/metrics") == 0)
		return respond_resource(c, RES_METRICS, "text/plain; version=0.0.4; charset=utf-8");
	if (strcmp(url, "/healthz") == 0)
		return respond_resource(c, RES_HEALTH, "text/plain; charset=utf-8");
	return respond(c, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8", not_found,
				   sizeof(not_found) - 1);
}

static void
log_mhd(void *cls, const char *fmt, va_list ap)
{
	/* MHD reports refused and broken connections here; one line each, to stderr. */
	fputs("anomstream-web: ", stderr);
	vfprintf(stderr, fmt, ap);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"port", required_argument, NULL, 'p'},
		{"conninfo", required_argument, NULL, 'c'},
		{"since", required_argument, NULL, 's'},
		{"refresh-ms", required_argument, NULL, 'r'},
		{"max-clients", required_argument, NULL, 'm'},
		{"timeout", required_argument, NULL, 't'},
		{"threads", required_argument, NULL, 'T'},
		{"cache-ms", required_argument, NULL, 'C'},
		{"allow-superuser", no_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0}
	};
	struct sockaddr_storage addr;
	socklen_t	addrlen;
	struct MHD_Daemon *d;
	const union MHD_DaemonInfo *info;
	unsigned int port;
	char		err[512];
	sigset_t	sigs;
	int			sig;
	int			opt;
	bool		ipv6;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1)
	{
		switch (opt)
		{
			case 'l':
				web_config.listen = optarg;
				break;
			case 'p':
				web_config.port = (int) int_arg("--port", optarg, 0, 65535);
				break;
			case 'c':
				web_config.conninfo = optarg;
				break;
			case 's':
				web_config.since = optarg;
				break;
			case 'r':
				web_config.refresh_ms = (int) int_arg("--refresh-ms", optarg, 100, 3600000);
				break;
			case 'm':
				web_config.max_clients = (int) int_arg("--max-clients", optarg, 1, 10000);
				break;
			case 't':
				web_config.timeout_s = (int) int_arg("--timeout", optarg, 1, 3600);
				break;
			case 'T':
				web_config.threads = (int) int_arg("--threads", optarg, 1, 64);
				break;
			case 'C':
				web_config.cache_ms = (int) int_arg("--cache-ms", optarg, 0, 3600000);
				break;
			case 'S':
				web_config.allow_superuser = true;
				break;
			case 'h':
				usage(stdout);
				return 0;
			case 'V':
				printf("anomstream-web " ANOMSTREAM_WEB_VERSION "\n");
				return 0;
			default:
				usage(stderr);
				return 2;
		}
	}
	if (optind < argc)
	{
		fprintf(stderr, "anomstream-web: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	memset(&addr, 0, sizeof(addr));
	ipv6 = strchr(web_config.listen, ':') != NULL;
	if (ipv6)
	{
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *) &addr;

		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(web_config.port);
		addrlen = sizeof(*a6);
		if (inet_pton(AF_INET6, web_config.listen, &a6->sin6_addr) != 1)
			addrlen = 0;
	}
	else
	{
		struct sockaddr_in *a4 = (struct sockaddr_in *) &addr;

		a4->sin_family = AF_INET;
		a4->sin_port = htons(web_config.port);
		addrlen = sizeof(*a4);
		if (inet_pton(AF_INET, web_config.listen, &a4->sin_addr) != 1)
			addrlen = 0;
	}
	if (addrlen == 0)
	{
		fprintf(stderr, "anomstream-web: --listen needs an IPv4 or IPv6 address, not \"%s\"\n",
				web_config.listen);
		return 2;
	}

	/* Signals: SIGPIPE is ignored (MHD handles broken connections); SIGINT/TERM end the run. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	switch (db_startup_check(err, sizeof(err)))
	{
		case 0:
			break;
		case 1:
			fprintf(stderr, "anomstream-web: warning: %s (will retry)\n", err);
			break;
		default:
			fprintf(stderr, "anomstream-web: %s\n", err);
			return 1;
	}

	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG |
						 (ipv6 ? MHD_USE_IPv6 : 0),
						 (uint16_t) web_config.port, NULL, NULL, handle, NULL,
						 MHD_OPTION_EXTERNAL_LOGGER, log_mhd, NULL,
						 MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
						 MHD_OPTION_THREAD_POOL_SIZE, (unsigned int) web_config.threads,
						 MHD_OPTION_CONNECTION_LIMIT, (unsigned int) web_config.max_clients,
						 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) web_config.timeout_s,
						 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) CONNECTION_MEMORY,
						 MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int) 512,
						 MHD_OPTION_END);
	if (d == NULL)
	{
		fprintf(stderr, "anomstream-web: cannot listen on %s port %d\n", web_config.listen,
				web_config.port);
		db_shutdown();
		return 1;
	}
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	port = info ? info->port : (unsigned int) web_config.port;
	if (ipv6)
		printf("anomstream-web listening on http://[%s]:%u/\n", web_config.listen, port);
	else
		printf("anomstream-web listening on http://%s:%u/\n", web_config.listen, port);
	fflush(stdout);

	while (sigwait(&sigs, &sig) != 0 || (sig != SIGINT && sig != SIGTERM))
		;
	MHD_stop_daemon(d);
	db_shutdown();
	return 0;
}
