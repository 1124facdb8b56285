/*-------------------------------------------------------------------------
 *
 * chart.c
 *	  anomstream.attack_chart(since [, until]): potential attacks per machine as an SVG line
 *	  chart (the notebook's live matplotlib chart, section 3.7).
 *
 * Invariants:
 *	- The data come from anomstream.attacks_between(), the same zero-filled series the chart
 *	  views show, so a window without a row for a machine is drawn as 0.
 *	- The document is a standalone, well-formed SVG (no XML declaration, so it can be placed
 *	  inside an HTML page as is). All text that does not come from a literal here is XML-escaped.
 *	- Output depends only on the rows, the arguments and the session TimeZone (tick labels):
 *	  numbers are printed with fixed formats, series are ordered by machine, windows by start.
 *	- Each machine keeps its colour across redraws (picked from its number) unless another machine
 *	  of the same chart already took it; past ten machines lines are also dashed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(anomstream_attack_chart);

/* Geometry of the drawing, in SVG user units. */
#define CHART_WIDTH		960
#define CHART_HEIGHT	540
#define PLOT_LEFT		80
#define PLOT_RIGHT		790
#define PLOT_TOP		64
#define PLOT_BOTTOM		440
#define LEGEND_X		812

/* Most windows one chart draws; a longer range is refused rather than drawn illegibly. */
#define MAX_CHART_WINDOWS	2000
/* Most x tick labels; beyond this every k-th window is labelled. */
#define MAX_X_LABELS		24

/* Machines 4-8 (the data set's) get the notebook's blue, green, red, cyan and magenta. */
#define FIRST_MACHINE	4
static const char *const palette[] = {
	"#1f77b4", "#2ca02c", "#d62728", "#17becf", "#e377c2",
	"#ff7f0e", "#9467bd", "#8c564b", "#bcbd22", "#7f7f7f"
};
#define NCOLOURS lengthof(palette)

static const char *const dashes[] = {NULL, "8 4", "2 3", "8 3 2 3"};

/* One point of the zero-filled series as read from attacks_between(). */
typedef struct ChartPoint
{
	TimestampTz window_start;
	TimestampTz window_end;
	int32		machine;
	int64		attacks;
} ChartPoint;

/*
 * Append s to buf with the five XML special characters escaped.
 */
static void
append_xml_escaped(StringInfo buf, const char *s)
{
	for (; *s; s++)
	{
		switch (*s)
		{
			case '&':
				appendStringInfoString(buf, "&amp;");
				break;
			case '<':
				appendStringInfoString(buf, "&lt;");
				break;
			case '>':
				appendStringInfoString(buf, "&gt;");
				break;
			case '"':
				appendStringInfoString(buf, "&quot;");
				break;
			case '\'':
				appendStringInfoString(buf, "&apos;");
				break;
			default:
				appendStringInfoChar(buf, *s);
		}
	}
}

/*
 * Break a timestamp into fields: in the session time zone (local) or in UTC.
 */
static void
split_time(TimestampTz t, bool local, struct pg_tm *tm, const char **tzn)
{
	fsec_t		fsec;
	int			tz;

	if (timestamp2tm(t, local ? &tz : NULL, tm, &fsec, local ? tzn : NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	if (!local && tzn)
		*tzn = "UTC";
}

/*
 * A tick label for a window start: "HH:MM" (with the date when the chart spans days), local time.
 */
static void
append_time_label(StringInfo buf, TimestampTz t, bool with_date)
{
	struct pg_tm tm;

	split_time(t, true, &tm, NULL);
	if (with_date)
		appendStringInfo(buf, "%02d-%02d ", tm.tm_mon, tm.tm_mday);
	appendStringInfo(buf, "%02d:%02d", tm.tm_hour, tm.tm_min);
	if (tm.tm_sec != 0)
		appendStringInfo(buf, ":%02d", tm.tm_sec);
}

/*
 * "YYYY-MM-DD HH:MM" in the session time zone, for the subtitle; *tzn gets the zone's name.
 */
static void
append_full_time(StringInfo buf, TimestampTz t, const char **tzn)
{
	struct pg_tm tm;

	split_time(t, true, &tm, tzn);
	appendStringInfo(buf, "%04d-%02d-%02d %02d:%02d", tm.tm_year, tm.tm_mon, tm.tm_mday,
					 tm.tm_hour, tm.tm_min);
	if (tm.tm_sec != 0)
		appendStringInfo(buf, ":%02d", tm.tm_sec);
}

/*
 * ISO 8601 in UTC (machine-readable data attributes do not depend on the TimeZone setting).
 */
static void
append_iso_utc(StringInfo buf, TimestampTz t)
{
	struct pg_tm tm;

	split_time(t, false, &tm, NULL);
	appendStringInfo(buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year, tm.tm_mon, tm.tm_mday,
					 tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/*
 * The window width in words, for the title: "2-minute", "30-second", "1-hour".
 */
static void
append_width(StringInfo buf, int64 usecs)
{
	if (usecs % USECS_PER_HOUR == 0)
		appendStringInfo(buf, INT64_FORMAT "-hour", usecs / USECS_PER_HOUR);
	else if (usecs % USECS_PER_MINUTE == 0)
		appendStringInfo(buf, INT64_FORMAT "-minute", usecs / USECS_PER_MINUTE);
	else if (usecs % USECS_PER_SEC == 0)
		appendStringInfo(buf, INT64_FORMAT "-second", usecs / USECS_PER_SEC);
	else
		appendStringInfo(buf, "%.3f-second", (double) usecs / USECS_PER_SEC);
}

/*
 * A step of 1, 2 or 5 times a power of ten giving at most about five intervals up to max.
 */
static int64
tick_step(int64 max)
{
	int64		raw = Max((max + 4) / 5, 1);
	int64		p = 1;

	while (p <= raw / 10)
		p *= 10;
	if (p >= raw)
		return p;
	if (2 * p >= raw)
		return 2 * p;
	if (5 * p >= raw)
		return 5 * p;
	return 10 * p;
}

static int
cmp_timestamptz(const void *a, const void *b)
{
	TimestampTz x = *(const TimestampTz *) a;
	TimestampTz y = *(const TimestampTz *) b;

	return (x > y) - (x < y);
}

/*
 * Read the zero-filled series through SPI; points and their count are allocated in the
 * caller's memory context (SPI's is gone after SPI_finish).
 */
static ChartPoint *
read_points(TimestampTz from, TimestampTz to, int *npoints)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			argtypes[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		args[2] = {TimestampTzGetDatum(from), TimestampTzGetDatum(to)};
	ChartPoint *points;
	uint64		n;
	int			ret;

	SPI_connect();
	ret = SPI_execute_with_args("SELECT window_start, window_end, machine, attacks "
								"FROM anomstream.attacks_between($1, $2) "
								"ORDER BY machine, window_start",
								2, argtypes, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args returned %s", SPI_result_code_string(ret));

	n = SPI_processed;
	/* A series point per machine and window; bounded by attacks_between's window limit. */
	points = MemoryContextAlloc(caller, sizeof(ChartPoint) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		points[i].window_start = DatumGetTimestampTz(SPI_getbinval(tup, desc, 1, &isnull));
		points[i].window_end = DatumGetTimestampTz(SPI_getbinval(tup, desc, 2, &isnull));
		points[i].machine = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		points[i].attacks = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
	}
	SPI_finish();
	*npoints = (int) n;
	return points;
}

/*
 * x coordinate of window i of n (a category axis, as the notebook's string windows).
 */
static double
x_of(int i, int n)
{
	if (n <= 1)
		return (PLOT_LEFT + PLOT_RIGHT) / 2.0;
	return PLOT_LEFT + (double) (PLOT_RIGHT - PLOT_LEFT) * i / (n - 1);
}

static double
y_of(int64 v, int64 top)
{
	return PLOT_BOTTOM - (double) (PLOT_BOTTOM - PLOT_TOP) * v / top;
}

/*
 * Draw the document.
 */
static text *
draw_chart(ChartPoint *points, int npoints, TimestampTz from, TimestampTz to)
{
	StringInfoData buf;
	TimestampTz *windows;
	int			nwindows = 0;
	int64		max_attacks = 0;
	int64		step;
	int64		top;
	int64		width = 0;
	bool		with_date;
	const char *tzn = NULL;
	int			label_every;
	int			nseries = 0;
	bool		used[NCOLOURS];

	/* Distinct window starts, ascending. */
	windows = palloc(sizeof(TimestampTz) * Max(npoints, 1));
	for (int i = 0; i < npoints; i++)
	{
		windows[i] = points[i].window_start;
		max_attacks = Max(max_attacks, points[i].attacks);
		width = Max(width, points[i].window_end - points[i].window_start);
	}
	qsort(windows, npoints, sizeof(TimestampTz), cmp_timestamptz);
	for (int i = 0; i < npoints; i++)
		if (nwindows == 0 || windows[nwindows - 1] != windows[i])
			windows[nwindows++] = windows[i];
	if (nwindows > MAX_CHART_WINDOWS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("chart range holds %d windows, more than %d", nwindows, MAX_CHART_WINDOWS),
				 errhint("Pass a shorter interval to anomstream.attack_chart, or use anomstream.attacks_between for long ranges.")));

	step = tick_step(max_attacks);
	top = Max(step, ((max_attacks + step - 1) / step) * step);
	with_date = nwindows > 0 && windows[nwindows - 1] - windows[0] >= USECS_PER_DAY;
	label_every = Max(1, (nwindows + MAX_X_LABELS - 1) / MAX_X_LABELS);

	initStringInfo(&buf);
	appendStringInfo(&buf,
					 "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"anomstream-chart\" "
					 "width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
					 "font-family=\"sans-serif\" font-size=\"12\" role=\"img\">\n",
					 CHART_WIDTH, CHART_HEIGHT, CHART_WIDTH, CHART_HEIGHT);
	appendStringInfoString(&buf, "<title>Potential attacks per machine</title>\n");
	appendStringInfo(&buf, "<rect width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n",
					 CHART_WIDTH, CHART_HEIGHT);

	/* Title and subtitle (the range actually drawn, in the session time zone). */
	appendStringInfo(&buf, "<text class=\"title\" x=\"%d\" y=\"26\" text-anchor=\"middle\" "
					 "font-size=\"18\" font-weight=\"bold\">Potential attacks per machine",
					 (PLOT_LEFT + PLOT_RIGHT) / 2);
	if (width > 0)
	{
		appendStringInfoString(&buf, " (");
		append_width(&buf, width);
		appendStringInfoString(&buf, " windows)");
	}
	appendStringInfoString(&buf, "</text>\n");
	{
		StringInfoData sub;
		TimestampTz sfrom = nwindows > 0 ? windows[0] : from;
		TimestampTz sto = nwindows > 0 ? windows[nwindows - 1] + width : to;

		initStringInfo(&sub);
		appendStringInfoString(&sub, "windows from ");
		append_full_time(&sub, sfrom, &tzn);
		appendStringInfoString(&sub, " to ");
		append_full_time(&sub, sto, &tzn);
		if (tzn)
			appendStringInfo(&sub, " (%s)", tzn);
		appendStringInfo(&buf, "<text class=\"subtitle\" x=\"%d\" y=\"46\" text-anchor=\"middle\" "
						 "fill=\"#555555\">", (PLOT_LEFT + PLOT_RIGHT) / 2);
		append_xml_escaped(&buf, sub.data);
		appendStringInfoString(&buf, "</text>\n");
	}

	/* y axis: grid lines and tick labels, each tick carrying its value. */
	appendStringInfoString(&buf, "<g class=\"y-axis\">\n");
	for (int64 v = 0; v <= top; v += step)
	{
		double		y = y_of(v, top);

		appendStringInfo(&buf, "<line class=\"grid\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" "
						 "stroke=\"#e0e0e0\"/>\n", PLOT_LEFT, y, PLOT_RIGHT, y);
		appendStringInfo(&buf, "<text class=\"y-tick\" data-value=\"" INT64_FORMAT "\" "
						 "data-y=\"%.1f\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\" "
						 "dominant-baseline=\"middle\">" INT64_FORMAT "</text>\n",
						 v, y, PLOT_LEFT - 8, y, v);
	}
	appendStringInfo(&buf, "<line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" "
					 "stroke=\"#333333\"/>\n", PLOT_LEFT, PLOT_TOP, PLOT_LEFT, PLOT_BOTTOM);
	appendStringInfo(&buf, "<text class=\"y-label\" x=\"24\" y=\"%d\" text-anchor=\"middle\" "
					 "transform=\"rotate(-90 24 %d)\">Potential attacks (distinct machine, cmd_pid)</text>\n",
					 (PLOT_TOP + PLOT_BOTTOM) / 2, (PLOT_TOP + PLOT_BOTTOM) / 2);
	appendStringInfoString(&buf, "</g>\n");

	/* x axis: one tick per window, labels on every label_every-th window. */
	appendStringInfoString(&buf, "<g class=\"x-axis\">\n");
	appendStringInfo(&buf, "<line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" "
					 "stroke=\"#333333\"/>\n", PLOT_LEFT, PLOT_BOTTOM, PLOT_RIGHT, PLOT_BOTTOM);
	for (int i = 0; i < nwindows; i++)
	{
		double		x = x_of(i, nwindows);

		appendStringInfo(&buf, "<line class=\"tick\" data-window-start=\"");
		append_iso_utc(&buf, windows[i]);
		appendStringInfo(&buf, "\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" "
						 "stroke=\"#333333\"/>\n", x, PLOT_BOTTOM, x, PLOT_BOTTOM + 5);
		if (i % label_every != 0)
			continue;
		appendStringInfo(&buf, "<text class=\"x-tick\" data-window-start=\"");
		append_iso_utc(&buf, windows[i]);
		appendStringInfo(&buf, "\" x=\"%.1f\" y=\"%d\" text-anchor=\"end\" "
						 "transform=\"rotate(-30 %.1f %d)\">", x, PLOT_BOTTOM + 18, x, PLOT_BOTTOM + 18);
		append_time_label(&buf, windows[i], with_date);
		appendStringInfoString(&buf, "</text>\n");
	}
	appendStringInfo(&buf, "<text class=\"x-label\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">"
					 "Window start", (PLOT_LEFT + PLOT_RIGHT) / 2, CHART_HEIGHT - 24);
	if (tzn)
	{
		appendStringInfoString(&buf, " (");
		append_xml_escaped(&buf, tzn);
		appendStringInfoChar(&buf, ')');
	}
	appendStringInfoString(&buf, "</text>\n</g>\n");

	if (npoints == 0)
		appendStringInfo(&buf, "<text class=\"empty\" x=\"%d\" y=\"%d\" text-anchor=\"middle\" "
						 "fill=\"#555555\">No potential attacks in this range</text>\n",
						 (PLOT_LEFT + PLOT_RIGHT) / 2, (PLOT_TOP + PLOT_BOTTOM) / 2);

	/* One series per machine: points are ordered by machine, then window. */
	memset(used, 0, sizeof(used));
	appendStringInfoString(&buf, "<g class=\"series-set\">\n");
	{
		StringInfoData legend;

		initStringInfo(&legend);
		appendStringInfoString(&legend, "<g class=\"legend\">\n");

		for (int i = 0; i < npoints;)
		{
			int32		machine = points[i].machine;
			int			c = (int) ((((int64) machine - FIRST_MACHINE) % (int64) NCOLOURS + NCOLOURS) % NCOLOURS);
			const char *colour;
			const char *dash = dashes[Min(nseries / (int) NCOLOURS, (int) lengthof(dashes) - 1)];
			int			j;
			int			w = 0;
			double		ly = PLOT_TOP + 10 + 22.0 * nseries;

			/* Keep the machine's own colour unless another series already took it. */
			for (int k = 0; k < (int) NCOLOURS && used[c]; k++)
				c = (c + 1) % NCOLOURS;
			if (nseries % NCOLOURS == NCOLOURS - 1)
				memset(used, 0, sizeof(used));
			else
				used[c] = true;
			colour = palette[c];

			appendStringInfo(&buf, "<g class=\"series\" data-machine=\"%d\">\n", machine);
			appendStringInfo(&buf, "<path class=\"line\" fill=\"none\" stroke=\"%s\" "
							 "stroke-width=\"2\"%s%s%s d=\"", colour,
							 dash ? " stroke-dasharray=\"" : "", dash ? dash : "", dash ? "\"" : "");
			for (j = i; j < npoints && points[j].machine == machine; j++)
			{
				/* Position of this window among all windows (both lists ascend). */
				while (windows[w] != points[j].window_start)
					w++;
				appendStringInfo(&buf, "%s%.1f %.1f", j == i ? "M" : " L",
								 x_of(w, nwindows), y_of(points[j].attacks, top));
			}
			appendStringInfoString(&buf, "\"/>\n");

			w = 0;
			for (j = i; j < npoints && points[j].machine == machine; j++)
			{
				while (windows[w] != points[j].window_start)
					w++;
				appendStringInfo(&buf, "<circle class=\"point\" cx=\"%.1f\" cy=\"%.1f\" r=\"3\" "
								 "fill=\"%s\" data-window-start=\"", x_of(w, nwindows),
								 y_of(points[j].attacks, top), colour);
				append_iso_utc(&buf, points[j].window_start);
				appendStringInfo(&buf, "\" data-attacks=\"" INT64_FORMAT "\"><title>machine %d, ",
								 points[j].attacks, machine);
				append_time_label(&buf, points[j].window_start, with_date);
				appendStringInfo(&buf, ": " INT64_FORMAT "</title></circle>\n", points[j].attacks);
			}
			appendStringInfoString(&buf, "</g>\n");

			appendStringInfo(&legend, "<g class=\"legend-item\" data-machine=\"%d\">"
							 "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\" "
							 "stroke-width=\"3\"%s%s%s/>"
							 "<text x=\"%d\" y=\"%.1f\" dominant-baseline=\"middle\">machine %d</text></g>\n",
							 machine, LEGEND_X, ly, LEGEND_X + 24, ly, colour,
							 dash ? " stroke-dasharray=\"" : "", dash ? dash : "", dash ? "\"" : "",
							 LEGEND_X + 30, ly, machine);
			nseries++;
			i = j;
		}
		appendStringInfoString(&buf, "</g>\n");
		appendStringInfoString(&legend, "</g>\n");
		appendBinaryStringInfo(&buf, legend.data, legend.len);
	}
	appendStringInfoString(&buf, "</svg>\n");

	return cstring_to_text_with_len(buf.data, buf.len);
}

/*
 * anomstream.attack_chart(since interval [, until timestamptz]) -> text (SVG)
 */
Datum
anomstream_attack_chart(PG_FUNCTION_ARGS)
{
	Interval   *since = PG_GETARG_INTERVAL_P(0);
	TimestampTz until;
	TimestampTz from;
	ChartPoint *points;
	int			npoints;

	if (PG_NARGS() > 1)
		until = PG_GETARG_TIMESTAMPTZ(1);
	else
		until = GetCurrentTransactionStartTimestamp();

	if (TIMESTAMP_NOT_FINITE(until))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("end of the chart range must be finite")));
	from = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
												   TimestampTzGetDatum(until),
												   IntervalPGetDatum(since)));
	if (from >= until)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("chart interval must be positive"),
				 errdetail("The chart shows the windows overlapping the interval that ends at the given time.")));

	points = read_points(from, until, &npoints);
	PG_RETURN_TEXT_P(draw_chart(points, npoints, from, until));
}
