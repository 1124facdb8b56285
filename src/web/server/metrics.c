/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  Prometheus text exposition format (version 0.0.4) writers.
 *
 * Label values are escaped as the format requires (backslash, double quote, line feed); metric
 * and label names are literals of this program. Values are printed so that every float parses
 * back exactly (%.17g), with NaN and infinities spelled as Prometheus expects.
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "web.h"

/*
 * The HELP and TYPE lines that start a metric family.
 */
void
prom_family(Buf *b, const char *name, const char *type, const char *help)
{
	buf_printf(b, "# HELP %s ", name);
	/* HELP text escapes backslash and line feed. */
	for (const char *p = help; *p; p++)
	{
		if (*p == '\\')
			buf_puts(b, "\\\\");
		else if (*p == '\n')
			buf_puts(b, "\\n");
		else
			buf_append(b, p, 1);
	}
	buf_printf(b, "\n# TYPE %s %s\n", name, type);
}

/*
 * One sample: name{l1="v1",...} value. labels holds name/value pairs (2 * nlabels strings).
 */
void
prom_sample(Buf *b, const char *name, const char *const *labels, int nlabels, double value)
{
	buf_puts(b, name);
	if (nlabels > 0)
	{
		buf_puts(b, "{");
		for (int i = 0; i < nlabels; i++)
		{
			const char *v = labels[2 * i + 1] ? labels[2 * i + 1] : "";

			buf_printf(b, "%s%s=\"", i ? "," : "", labels[2 * i]);
			for (const char *p = v; *p; p++)
			{
				if (*p == '\\')
					buf_puts(b, "\\\\");
				else if (*p == '"')
					buf_puts(b, "\\\"");
				else if (*p == '\n')
					buf_puts(b, "\\n");
				else
					buf_append(b, p, 1);
			}
			buf_puts(b, "\"");
		}
		buf_puts(b, "}");
	}
	if (isnan(value))
		buf_puts(b, " NaN\n");
	else if (isinf(value))
		buf_puts(b, value > 0 ? " +Inf\n" : " -Inf\n");
	else
		buf_printf(b, " %.17g\n", value);
}
