#!/usr/bin/env bash
# Cost of the live chart: anomstream.attack_chart() against its baseline, the zero-filled
# anomstream.attacks_between() query it draws from, over 30 days of 2-minute windows for five
# machines (108 000 rows). Run as a user that may create databases on a server where anomstream
# is installed:
#   PGHOST=/tmp PGPORT=5749 bench/web_chart.sh [transactions]
# Prints milliseconds per call (pgbench latency average) for each range.
set -euo pipefail
N=${1:-200}
DB=anomstream_bench_web
PGBENCH=${PGBENCH:-pgbench}
psql -Xq -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
trap 'psql -Xq -d postgres -c "DROP DATABASE IF EXISTS $DB"' EXIT
psql -Xq -d $DB -c "CREATE EXTENSION anomstream" -c "
	INSERT INTO anomstream.potential_attacks
	SELECT ws, ws + interval '2 min', m, 1 + (i * m) % 17, (i + m) % 3, true
	  FROM generate_series(0, 21599) i,
		   LATERAL (SELECT '2024-05-01 00:00+00'::timestamptz + i * interval '2 min' AS ws) w,
		   generate_series(4, 8) m;" -c "VACUUM ANALYZE anomstream.potential_attacks"
tmp=$(mktemp -d)
for range in '10 minutes' '1 hour' '1 day'; do
	echo "SELECT count(*) FROM anomstream.attacks_between('2024-05-20 12:00+00'::timestamptz - '$range'::interval, '2024-05-20 12:00+00');" > "$tmp/base.sql"
	echo "SELECT length(anomstream.attack_chart('$range', '2024-05-20 12:00+00'));" > "$tmp/chart.sql"
	base=$($PGBENCH -n -t "$N" -f "$tmp/base.sql" $DB 2>/dev/null | sed -n 's/latency average = \([0-9.]*\) ms/\1/p')
	chart=$($PGBENCH -n -t "$N" -f "$tmp/chart.sql" $DB 2>/dev/null | sed -n 's/latency average = \([0-9.]*\) ms/\1/p')
	size=$(psql -XAtq -d $DB -c "SELECT length(anomstream.attack_chart('$range', '2024-05-20 12:00+00'))")
	printf '%-10s  attacks_between %7s ms   attack_chart %7s ms   svg %8s bytes\n' "$range" "$base" "$chart" "$size"
done
rm -rf "$tmp"
