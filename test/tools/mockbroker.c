/*
 * anomstream-mockbroker -- a librdkafka mock Kafka cluster for tests.
 *
 * Starts rd_kafka_mock_cluster_new() on a producer-type handle with --brokers
 * N brokers, creates the topics (--topics, --partitions), prints the bootstrap
 * address as the FIRST line of stdout (flushed) and, with --bootstrap-file,
 * writes it to that file atomically (temporary file + rename), so a script can
 * wait for the file to appear.  Then, unless --no-stdin, it reads one command
 * per line on stdin until EOF or "quit":
 *
 *   down <broker_id> | up <broker_id> | rtt <broker_id> <ms>
 *   error <ApiKey> <error-code> <count> | topic <name> <partitions> | ping
 *
 * Invariants:
 *  - every command line gets exactly one answer line on stdout, flushed:
 *    "ok", "pong" (for ping) or "error: ..."; nothing else is ever written to
 *    stdout after the bootstrap line (librdkafka logs go to stderr);
 *  - SIGTERM/SIGINT/SIGHUP (and stdin EOF/quit) destroy the cluster and the
 *    handle and remove the bootstrap file and pid file this process wrote;
 *    exit 0; a signal is reported on stderr with the sender's pid and command;
 *  - exit 2 on bad usage, 1 when the cluster or a topic cannot be created.
 *
 * librdkafka's mock cluster keeps only about 5 MB per partition: older
 * messages are dropped, so large benchmarks must consume while producing.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static volatile sig_atomic_t got_signal = 0;
static volatile sig_atomic_t signal_sender = 0;	/* pid that sent it (0: the kernel) */
static int	replication_factor = 1;	/* for the "topic" command */

static void
on_signal(int signo, siginfo_t *info, void *ctx)
{
	(void) ctx;
	signal_sender = info != NULL ? (sig_atomic_t) info->si_pid : 0;
	got_signal = signo;
}

/*
 * Say on stderr which signal ended the run and who sent it (with its command line while it
 * still exists): tests log stderr, so a broker that goes away mid-test leaves its cause.
 */
static void
report_signal(void)
{
	char		path[64];
	char		cmd[512];
	size_t		n = 0;
	FILE	   *f;

	cmd[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long) signal_sender);
	if (signal_sender > 0 && (f = fopen(path, "r")) != NULL)
	{
		n = fread(cmd, 1, sizeof(cmd) - 1, f);
		fclose(f);
		for (size_t i = 0; i < n; i++)
			if (cmd[i] == '\0')
				cmd[i] = ' ';
		cmd[n] = '\0';
	}
	fprintf(stderr, "anomstream-mockbroker: exiting on signal %d (%s) from pid %ld%s%s%s\n",
			(int) got_signal, strsignal((int) got_signal), (long) signal_sender,
			n > 0 ? " (" : "", cmd, n > 0 ? ")" : "");
	fflush(stderr);
}

static void
usage(FILE *out)
{
	fprintf(out,
			"Usage: anomstream-mockbroker [options]\n"
			"Start a librdkafka mock Kafka cluster on 127.0.0.1 for tests.\n"
			"\n"
			"  --brokers N            number of brokers (default 1)\n"
			"  --topics A,B,...       topics to create (default process,memory)\n"
			"  --partitions N         partitions per topic (default 4)\n"
			"  --replication N        replication factor (default min(brokers,3))\n"
			"  --bootstrap-file F     also write the bootstrap address to F (atomically)\n"
			"  --pidfile F            write this process id to F (atomically)\n"
			"  --no-stdin             do not read commands; run until SIGTERM/SIGINT\n"
			"  --debug CONTEXTS       librdkafka debug contexts (to stderr)\n"
			"  -h, --help             this text\n"
			"\n"
			"The first stdout line is the bootstrap address. Commands on stdin, one per\n"
			"line, each answered by one line (ok | pong | error: ...):\n"
			"  down <broker_id>                 broker stops answering\n"
			"  up <broker_id>                   broker answers again\n"
			"  rtt <broker_id> <ms>             add round-trip latency\n"
			"  error <ApiKey> <err-code> <cnt>  next <cnt> requests of ApiKey fail with\n"
			"                                   err-code (e.g. error 0 7 3: 3 Produce\n"
			"                                   requests get REQUEST_TIMED_OUT)\n"
			"  topic <name> <partitions>        create another topic\n"
			"  ping                             answers pong\n"
			"  quit                             stop (as EOF does)\n"
			"Broker ids are 1..N. Exit: 0 clean stop, 1 startup failure, 2 usage.\n");
}

/* Parse a whole decimal int in [lo, hi]; 0 on success. */
static int
parse_int(const char *s, long lo, long hi, long *out)
{
	char	   *end;
	long		v;

	if (s == NULL || *s == '\0')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

/* Write text to path atomically: path.tmp.<pid>, fsync-free rename. */
static int
write_atomic(const char *path, const char *text)
{
	char		tmp[PATH_MAX];
	FILE	   *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long) getpid()) >= (int) sizeof(tmp))
	{
		fprintf(stderr, "anomstream-mockbroker: path too long: %s\n", path);
		return -1;
	}
	f = fopen(tmp, "w");
	if (f == NULL)
	{
		fprintf(stderr, "anomstream-mockbroker: cannot write %s: %s\n", tmp, strerror(errno));
		return -1;
	}
	fprintf(f, "%s\n", text);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
	{
		fprintf(stderr, "anomstream-mockbroker: cannot write %s: %s\n", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

static void
answer(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
answer(const char *fmt, ...)
{
	va_list		ap;

	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

static void
answer_err(rd_kafka_resp_err_t err)
{
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		answer("ok");
	else
		answer("error: %s", rd_kafka_err2str(err));
}

/* Execute one command line (already stripped of its newline). Returns 1 on quit. */
static int
run_command(rd_kafka_mock_cluster_t *mc, int nbrokers, char *line)
{
	char	   *argv[8];
	int			argc = 0;
	char	   *save = NULL;
	char	   *tok;
	long		a, b, c;

	for (tok = strtok_r(line, " \t\r", &save); tok != NULL && argc < 8;
		 tok = strtok_r(NULL, " \t\r", &save))
		argv[argc++] = tok;
	if (argc == 0)
		return 0;				/* blank line: no answer, nothing to do */

	if (strcmp(argv[0], "quit") == 0 || strcmp(argv[0], "exit") == 0)
	{
		answer("ok");
		return 1;
	}
	if (strcmp(argv[0], "ping") == 0)
	{
		answer("pong");
		return 0;
	}
	if (strcmp(argv[0], "down") == 0 || strcmp(argv[0], "up") == 0)
	{
		if (argc != 2 || parse_int(argv[1], 1, nbrokers, &a) != 0)
		{
			answer("error: usage: %s <broker_id 1..%d>", argv[0], nbrokers);
			return 0;
		}
		if (argv[0][0] == 'd')
			answer_err(rd_kafka_mock_broker_set_down(mc, (int32_t) a));
		else
			answer_err(rd_kafka_mock_broker_set_up(mc, (int32_t) a));
		return 0;
	}
	if (strcmp(argv[0], "rtt") == 0)
	{
		if (argc != 3 || parse_int(argv[1], 1, nbrokers, &a) != 0 ||
			parse_int(argv[2], 0, INT_MAX, &b) != 0)
		{
			answer("error: usage: rtt <broker_id 1..%d> <ms>", nbrokers);
			return 0;
		}
		answer_err(rd_kafka_mock_broker_set_rtt(mc, (int32_t) a, (int) b));
		return 0;
	}
	if (strcmp(argv[0], "error") == 0)
	{
		rd_kafka_resp_err_t *errs;

		if (argc != 4 || parse_int(argv[1], 0, 32767, &a) != 0 ||
			parse_int(argv[2], -32768, 32767, &b) != 0 ||
			parse_int(argv[3], 1, 1000000, &c) != 0)
		{
			answer("error: usage: error <ApiKey 0..32767> <error-code> <count 1..1000000>");
			return 0;
		}
		errs = malloc(sizeof(*errs) * (size_t) c);
		if (errs == NULL)
		{
			answer("error: out of memory");
			return 0;
		}
		for (long i = 0; i < c; i++)
			errs[i] = (rd_kafka_resp_err_t) b;
		rd_kafka_mock_push_request_errors_array(mc, (int16_t) a, (size_t) c, errs);
		free(errs);
		answer("ok");
		return 0;
	}
	if (strcmp(argv[0], "topic") == 0)
	{
		if (argc != 3 || parse_int(argv[2], 1, 10000, &a) != 0)
		{
			answer("error: usage: topic <name> <partitions 1..10000>");
			return 0;
		}
		answer_err(rd_kafka_mock_topic_create(mc, argv[1], (int) a, replication_factor));
		return 0;
	}
	answer("error: unknown command '%s' (down, up, rtt, error, topic, ping, quit)", argv[0]);
	return 0;
}

int
main(int argc, char **argv)
{
	long		nbrokers = 1, partitions = 4, replication = -1;
	const char *topics = "process,memory";
	const char *bootstrap_file = NULL, *pidfile = NULL, *debug = NULL;
	int			no_stdin = 0;
	char		errstr[512];
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *mc;
	const char *bootstraps;
	int			rc = 0;
	struct sigaction sa;

	for (int i = 1; i < argc; i++)
	{
		const char *o = argv[i];
		const char *v = (i + 1 < argc) ? argv[i + 1] : NULL;

		if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0)
		{
			usage(stdout);
			return 0;
		}
		else if (strcmp(o, "--no-stdin") == 0)
			no_stdin = 1;
		else if (v == NULL)
		{
			fprintf(stderr, "anomstream-mockbroker: %s: unknown option or missing value\n", o);
			fprintf(stderr, "Try --help.\n");
			return 2;
		}
		else if (strcmp(o, "--brokers") == 0)
		{
			if (parse_int(v, 1, 64, &nbrokers) != 0)
			{
				fprintf(stderr, "anomstream-mockbroker: --brokers must be 1..64\n");
				return 2;
			}
			i++;
		}
		else if (strcmp(o, "--partitions") == 0)
		{
			if (parse_int(v, 1, 10000, &partitions) != 0)
			{
				fprintf(stderr, "anomstream-mockbroker: --partitions must be 1..10000\n");
				return 2;
			}
			i++;
		}
		else if (strcmp(o, "--replication") == 0)
		{
			if (parse_int(v, 1, 64, &replication) != 0)
			{
				fprintf(stderr, "anomstream-mockbroker: --replication must be 1..64\n");
				return 2;
			}
			i++;
		}
		else if (strcmp(o, "--topics") == 0)
			topics = argv[++i];
		else if (strcmp(o, "--bootstrap-file") == 0)
			bootstrap_file = argv[++i];
		else if (strcmp(o, "--pidfile") == 0)
			pidfile = argv[++i];
		else if (strcmp(o, "--debug") == 0)
			debug = argv[++i];
		else
		{
			fprintf(stderr, "anomstream-mockbroker: unknown option %s\n", o);
			fprintf(stderr, "Try --help.\n");
			return 2;
		}
	}
	if (replication < 0)
		replication = nbrokers < 3 ? nbrokers : 3;
	if (replication > nbrokers)
	{
		fprintf(stderr, "anomstream-mockbroker: --replication exceeds --brokers\n");
		return 2;
	}
	replication_factor = (int) replication;

	/* Signals: no SA_RESTART, so a blocking call in the main thread wakes up. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	conf = rd_kafka_conf_new();
	/* Level 5 would only say that this handle has no bootstrap.servers. */
	rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr));
	if (debug != NULL &&
		rd_kafka_conf_set(conf, "debug", debug, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		fprintf(stderr, "anomstream-mockbroker: debug: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return 2;
	}
	/* The handle only hosts the cluster; it never talks to a broker itself. */
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		fprintf(stderr, "anomstream-mockbroker: rd_kafka_new: %s\n", errstr);
		return 1;
	}
	mc = rd_kafka_mock_cluster_new(rk, (int) nbrokers);
	if (mc == NULL)
	{
		fprintf(stderr, "anomstream-mockbroker: cannot create mock cluster\n");
		rd_kafka_destroy(rk);
		return 1;
	}

	/* Topics: comma-separated list; empty names are skipped. */
	{
		char	   *list = strdup(topics);
		char	   *save = NULL;

		for (char *t = strtok_r(list, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save))
		{
			rd_kafka_resp_err_t err;

			if (*t == '\0')
				continue;
			err = rd_kafka_mock_topic_create(mc, t, (int) partitions, (int) replication);
			if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
			{
				fprintf(stderr, "anomstream-mockbroker: cannot create topic %s: %s\n",
						t, rd_kafka_err2str(err));
				rc = 1;
			}
		}
		free(list);
	}

	bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
	if (rc == 0)
	{
		printf("%s\n", bootstraps);
		fflush(stdout);
		if (pidfile != NULL)
		{
			char		buf[32];

			snprintf(buf, sizeof(buf), "%ld", (long) getpid());
			if (write_atomic(pidfile, buf) != 0)
				rc = 1;
		}
		if (rc == 0 && bootstrap_file != NULL && write_atomic(bootstrap_file, bootstraps) != 0)
			rc = 1;
	}

	if (rc == 0 && no_stdin)
	{
		sigset_t	empty;

		sigemptyset(&empty);
		while (!got_signal)
			sigsuspend(&empty);
	}
	else if (rc == 0)
	{
		char		buf[4096];
		size_t		have = 0;
		int			done = 0;

		while (!done && !got_signal)
		{
			struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
			ssize_t		n;
			char	   *nl;

			if (poll(&pfd, 1, 200) <= 0)
				continue;		/* timeout or EINTR: recheck the signal flag */
			n = read(STDIN_FILENO, buf + have, sizeof(buf) - 1 - have);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
			{
				/* EOF (or error): run a last unterminated line, then stop. */
				if (have > 0)
				{
					buf[have] = '\0';
					run_command(mc, (int) nbrokers, buf);
				}
				break;
			}
			have += (size_t) n;
			buf[have] = '\0';
			while (!done && (nl = memchr(buf, '\n', have)) != NULL)
			{
				size_t		len = (size_t) (nl - buf) + 1;

				*nl = '\0';
				done = run_command(mc, (int) nbrokers, buf);
				memmove(buf, buf + len, have - len);
				have -= len;
				buf[have] = '\0';
			}
			if (have == sizeof(buf) - 1)
			{
				answer("error: command line too long");
				have = 0;
			}
		}
	}

	if (got_signal)
		report_signal();
	if (bootstrap_file != NULL && rc == 0)
		unlink(bootstrap_file);
	if (pidfile != NULL && rc == 0)
		unlink(pidfile);
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return rc;
}
