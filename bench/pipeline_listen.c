/*
 * pipeline_listen.c - LISTEN anomstream_detected and print, per notification, the batch id
 * and the wall-clock time (microseconds since 1970) the client received it: the moment the
 * micro-batch's pairs became visible to a client. Used by bench/pipeline.sh for latency.
 *
 *   pipeline_listen CONNINFO SECONDS > out.tsv
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/select.h>
#include <sys/time.h>
#include <time.h>

#include <libpq-fe.h>

static long long
now_us(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (long long) tv.tv_sec * 1000000LL + tv.tv_usec;
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	PGresult   *res;
	long long	end;

	if (argc != 3)
	{
		fprintf(stderr, "usage: %s CONNINFO SECONDS\n", argv[0]);
		return 2;
	}
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "%s", PQerrorMessage(conn));
		return 1;
	}
	res = PQexec(conn, "LISTEN anomstream_detected");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		fprintf(stderr, "%s", PQerrorMessage(conn));
		return 1;
	}
	PQclear(res);
	fprintf(stderr, "listening\n");
	end = now_us() + atoll(argv[2]) * 1000000LL;
	while (now_us() < end)
	{
		int			sock = PQsocket(conn);
		fd_set		in;
		struct timeval tv = {0, 100000};
		PGnotify   *n;

		FD_ZERO(&in);
		FD_SET(sock, &in);
		if (select(sock + 1, &in, NULL, NULL, &tv) < 0)
			break;
		if (!PQconsumeInput(conn))
		{
			fprintf(stderr, "%s", PQerrorMessage(conn));
			return 1;
		}
		while ((n = PQnotifies(conn)) != NULL)
		{
			long long	t = now_us();
			long long	batch = -1;

			if (sscanf(n->extra, "{\"batch_id\": %lld", &batch) == 1)
				printf("%lld\t%lld\n", batch, t);
			fflush(stdout);
			PQfreemem(n);
		}
	}
	PQfinish(conn);
	return 0;
}
