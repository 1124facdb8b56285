/*
 * score_bare -- the baseline for bench/score.sh: XGBoost's C API called directly, no PostgreSQL.
 *
 *   score_bare MODEL.json MATRIX.txt BATCH PER_ROW_ROWS
 *
 * MATRIX.txt holds one encoded feature vector per line as PostgreSQL prints a float4[]
 * ({1,0.5,NULL,...}; NULL = missing), i.e. exactly what anomstream gives XGBoost. Prints:
 *   batch     rows, seconds, rows/s, sum of probabilities   (XGBoosterPredictFromDense, BATCH rows per call)
 *   row       the same, one row per call, as the C API documents it (no proxy DMatrix)
 *   row_proxy the same, one row per call, reusing one proxy DMatrix (what anomstream does)
 * The best of three runs of each. nthread = 1, as in a backend.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xgboost/c_api.h>

static const char config[] =
"{\"type\":0,\"training\":false,\"iteration_begin\":0,\"iteration_end\":0,"
"\"strict_shape\":false,\"cache_id\":0,\"missing\":NaN}";

static double
now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static void
check(int rc)
{
	if (rc != 0)
	{
		fprintf(stderr, "XGBoost: %s\n", XGBGetLastError());
		exit(1);
	}
}

/* Predict nrow rows at x; returns the sum of probabilities. */
static double
predict(BoosterHandle h, DMatrixHandle proxy, const float *x, long nrow, int ncol)
{
	char		iface[160];
	const uint64_t *shape;
	uint64_t	dim;
	const float *out;
	double		sum = 0;

	snprintf(iface, sizeof(iface),
			 "{\"data\":[%lu,true],\"shape\":[%ld,%d],\"typestr\":\"<f4\",\"version\":3}",
			 (unsigned long) (uintptr_t) x, nrow, ncol);
	check(XGBoosterPredictFromDense(h, iface, config, proxy, &shape, &dim, &out));
	for (long i = 0; i < nrow; i++)
		sum += out[i];
	return sum;
}

int
main(int argc, char **argv)
{
	FILE	   *f;
	char	   *model;
	long		len;
	BoosterHandle h;
	DMatrixHandle proxy;
	float	   *x = NULL;
	long		nrow = 0,
				cap = 0;
	int			ncol = -1;
	char	   *line = NULL;
	size_t		linecap = 0;
	long		batch,
				per_row;

	if (argc != 5)
	{
		fprintf(stderr, "usage: score_bare MODEL.json MATRIX.txt BATCH PER_ROW_ROWS\n");
		return 2;
	}
	batch = atol(argv[3]);
	per_row = atol(argv[4]);

	f = fopen(argv[1], "rb");
	if (!f)
	{
		perror(argv[1]);
		return 1;
	}
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	model = malloc(len);
	if (fread(model, 1, len, f) != (size_t) len)
		return 1;
	fclose(f);
	check(XGBoosterCreate(NULL, 0, &h));
	check(XGBoosterLoadModelFromBuffer(h, model, len));
	check(XGBoosterSetParam(h, "nthread", "1"));
	check(XGProxyDMatrixCreate(&proxy));

	f = fopen(argv[2], "r");
	if (!f)
	{
		perror(argv[2]);
		return 1;
	}
	while (getline(&line, &linecap, f) > 0)
	{
		int			n = 0;
		char	   *p = line + 1;	/* skip '{' */
		long		base = (ncol > 0) ? nrow * ncol : 0;

		for (;;)
		{
			char	   *end;
			float		v;

			if (strncmp(p, "NULL", 4) == 0)
			{
				v = NAN;
				end = p + 4;
			}
			else
				v = strtof(p, &end);
			if (base + n >= cap)
			{
				cap = cap ? cap * 2 : 1 << 20;
				x = realloc(x, cap * sizeof(float));
			}
			x[base + n] = v;
			n++;
			if (*end != ',')
				break;
			p = end + 1;
		}
		if (ncol < 0)
			ncol = n;
		else if (n != ncol)
		{
			fprintf(stderr, "row %ld has %d values, expected %d\n", nrow + 1, n, ncol);
			return 1;
		}
		nrow++;
	}
	fclose(f);
	if (per_row > nrow)
		per_row = nrow;

	for (int mode = 0; mode < 3; mode++)
	{
		double		best = 1e30,
					sum = 0;
		long		rows = (mode == 0) ? nrow : per_row;

		for (int run = 0; run < 3; run++)
		{
			double		t0 = now();

			sum = 0;
			if (mode == 0)
				for (long r = 0; r < nrow; r += batch)
					sum += predict(h, proxy, x + r * ncol, (nrow - r < batch) ? nrow - r : batch, ncol);
			else
				for (long r = 0; r < per_row; r++)
					sum += predict(h, mode == 2 ? proxy : NULL, x + r * ncol, 1, ncol);
			if (now() - t0 < best)
				best = now() - t0;
		}
		printf("%s %ld %.4f %.0f %.6f\n", mode == 0 ? "batch" : mode == 1 ? "row" : "row_proxy",
			   rows, best, rows / best, sum);
	}
	XGDMatrixFree(proxy);
	XGBoosterFree(h);
	return 0;
}
