/*-------------------------------------------------------------------------
 *
 * reformat.c
 *	  The notebook's unit conversion, made exact (DESIGN.md §3).
 *
 * Grammar, after removing every ASCII space: [+-]?(\d+(\.\d*)?|\.\d+)[KMGTP]?
 * with K=1e3, M=1e6, G=1e9, T=1e12, P=1e15 (decimal, upper case only). Anything else
 * (exponents, inf/nan, lower-case units, two dots, empty) is rejected. The number is
 * converted with strtod on the cleaned digits with the unit appended as a decimal exponent,
 * so the result is the correctly rounded value of the exact decimal. This file calls no PostgreSQL function: the same code serves the SQL functions
 * (reformat_sql.c), the worker's decoder and the fuzzer.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "ingest/reformat.h"

#define REFORMAT_MAX_LEN 128		/* longer inputs are rejected, never truncated */
#define REFORMAT_BUF_LEN (REFORMAT_MAX_LEN + 4) /* room for the exponent we append */

/*
 * Parse an atop value of len bytes; on success store it in *result and return true.
 */
bool
reformat_parse(const char *s, size_t len, double *result)
{
	char		buf[REFORMAT_BUF_LEN];
	size_t		n = 0;
	size_t		i = 0;
	size_t		digits = 0;
	const char *exponent = NULL;

	/* Copy without spaces; a NUL byte can never be part of a valid value. */
	for (size_t k = 0; k < len; k++)
	{
		if (s[k] == ' ')
			continue;
		if (s[k] == '\0' || n >= REFORMAT_MAX_LEN)
			return false;
		buf[n++] = s[k];
	}
	buf[n] = '\0';

	/* Unit suffix. */
	if (n > 0)
	{
		switch (buf[n - 1])
		{
			case 'K':
				exponent = "e3";
				break;
			case 'M':
				exponent = "e6";
				break;
			case 'G':
				exponent = "e9";
				break;
			case 'T':
				exponent = "e12";
				break;
			case 'P':
				exponent = "e15";
				break;
			default:
				break;
		}
		if (exponent)
			buf[--n] = '\0';
	}

	/* [+-]? digits [. digits] | . digits */
	if (i < n && (buf[i] == '+' || buf[i] == '-'))
		i++;
	while (i < n && buf[i] >= '0' && buf[i] <= '9')
		i++, digits++;
	if (i < n && buf[i] == '.')
	{
		i++;
		while (i < n && buf[i] >= '0' && buf[i] <= '9')
			i++, digits++;
	}
	if (digits == 0 || i != n)
		return false;

	/* The unit becomes a decimal exponent, so "224.2M" rounds once, like 224200000. */
	if (exponent)
		strcpy(buf + n, exponent);
	*result = strtod(buf, NULL);
	return true;
}
