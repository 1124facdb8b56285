#!/usr/bin/env bash
# Retention benchmark: anomstream.apply_retention() (ctid-chunked DELETEs of 10 000 rows)
# deleting ROWS expired dead letters out of ROWS + ROWS/10, next to one plain
# "DELETE ... WHERE received_at < now() - 7 days" of the same rows loaded the same way, same run.
#
#   bench/ops_retention.sh [ROWS]          (default 1000000; run as root or as the pg user)
#
# Needs the extension installed (PG_CONFIG selects PostgreSQL). Runs its own throwaway cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. scripts/lib.sh
ROWS=${1:-1000000}
WORK=$(mktemp -d /tmp/anomstream-bench-ret.XXXXXX)
chmod 777 "$WORK"
trap 'throwaway_cluster_stop; rm -rf "$WORK"' EXIT
throwaway_cluster_start "$WORK/pg" 55917 "autovacuum = off" || exit 1
cluster_psql -c "CREATE EXTENSION anomstream" >/dev/null

load() {
	cluster_psql -c "TRUNCATE anomstream.dead_letters" -c "
		INSERT INTO anomstream.dead_letters (topic, kafka_partition, kafka_offset, value, error, received_at)
		SELECT 'process', g % 64, g, convert_to(repeat('x', 200), 'UTF8'), 'invalid ts',
			   now() - interval '8 days' - g * interval '1 ms'
		  FROM generate_series(1, $ROWS) g;
		INSERT INTO anomstream.dead_letters (topic, kafka_partition, kafka_offset, value, error, received_at)
		SELECT 'process', g % 64, g, convert_to(repeat('x', 200), 'UTF8'), 'invalid ts', now()
		  FROM generate_series(1, $ROWS / 10) g;" -c "VACUUM ANALYZE anomstream.dead_letters" >/dev/null
}

timed() {
	local t0 t1
	t0=$(date +%s.%N)
	cluster_psql -At -c "$1" >"$WORK/out"
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc
}

load
base=$(timed "DELETE FROM anomstream.dead_letters WHERE received_at < now() - interval '7 days'")
left_base=$(cluster_psql -At -c "SELECT count(*) FROM anomstream.dead_letters")
load
ours=$(timed "SELECT deleted FROM anomstream.apply_retention() WHERE relation = 'anomstream.dead_letters'")
deleted=$(cat "$WORK/out")
left_ours=$(cluster_psql -At -c "SELECT count(*) FROM anomstream.dead_letters")

printf 'expired rows %d (of %d)\n' "$ROWS" $((ROWS + ROWS / 10))
printf 'plain DELETE (baseline)         %6.2f s   %8.0f rows/s   rows left %s\n' "$base" "$(echo "$ROWS / $base" | bc -l)" "$left_base"
printf 'apply_retention (10k chunks)    %6.2f s   %8.0f rows/s   rows left %s (deleted %s)\n' "$ours" "$(echo "$ROWS / $ours" | bc -l)" "$left_ours" "$deleted"
