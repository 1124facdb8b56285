#!/usr/bin/env bash
# Long-run pipeline benchmark: the whole pipeline against ingest alone over one large backlog,
# alternating, so both see the same phases of a noisy host.
#
#   runuser -u pgtest -- env PG_CONFIG=... bench/pipeline_long.sh [ROWS] [ROUNDS]
#       (as a non-root user; the extension must be installed in $PG_CONFIG's PostgreSQL;
#        defaults 1000000 rows, 2 rounds)
#
# Per round and mode, on a fresh server and a fresh mock Kafka cluster (bench/backlog.sh,
# 64 partitions per topic, shared_buffers = 1GB): ROWS generated rows of 64 machines with the
# real producer's cadence of event times (WORKLOAD=cadence of bench/pipeline.sh, one pair per
# 16 rows) are produced first, then the worker drains the backlog in micro-batches of at most
# 10 000 rows. "ingest alone" = scoring off (anomstream.deactivate, so no attack rows reach
# windows or join); "full" = ingest, score, watermarks, windows, join. Keyed state is off in
# both. Printed per round (the two modes back to back): rows/s of batches 1..n-1
# (anomstream.pipeline_batches) and rows per worker CPU second (/proc), then the ratio of
# the best rounds and the median of the rounds' ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROWS=${1:-1000000}
ROUNDS=${2:-2}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
BIN=$("$PG_CONFIG" --bindir)
T=$ROOT/test/tools/bin
OUT=$(mktemp -d /tmp/anomstream-bench-long.XXXXXX)
PORT=${PORT:-54342}
WORKLOAD=cadence
BACKLOG_PARTITIONS=64
BACKLOG_MACHINES=1-64

[ "$(id -u)" != 0 ] || { echo "run as a non-root user (runuser -u <user> -- ...)" >&2; exit 2; }
make -s -C test/tools >/dev/null
. "$ROOT/bench/backlog.sh"
trap 'backlog_stop; rm -rf "$OUT"' EXIT

# One consumption in mode off|full; prints "rows/s rows-per-worker-CPU-second pairs".
run() {
	backlog_stop
	rm -rf "$OUT/data"
	backlog_start "p1,m1" "shared_buffers = 1GB"
	produce p1 m1
	"${PSQL[@]}" -c "UPDATE anomstream.keyed_operators SET enabled = false" >/dev/null
	if [ "$1" = off ]; then
		"${PSQL[@]}" -c "SELECT anomstream.deactivate('process'), anomstream.deactivate('memory')" >/dev/null
	fi
	echo "$(consume p1 m1) $("${PSQL[@]}" -c "SELECT count(*) FROM anomstream.detected_attacks")"
}

best_off=0; best_full=0; cpu_off=0; cpu_full=0
ratios=()
for r in $(seq 1 "$ROUNDS"); do
	read -r off_rps off_cpu _ <<<"$(run off)"
	read -r full_rps full_cpu full_pairs <<<"$(run full)"
	ratio=$(echo "scale=2; $full_rps / $off_rps" | bc)
	ratios+=("$ratio")
	echo "round $r: ingest alone $off_rps rows/s ($off_cpu per worker CPU second)," \
		"full pipeline $full_rps rows/s ($full_cpu per worker CPU second, $full_pairs pairs):" \
		"ratio ${ratio}x wall clock, $(echo "scale=2; $full_cpu / $off_cpu" | bc)x worker CPU"
	[ "$off_rps" -gt "$best_off" ] && best_off=$off_rps && cpu_off=$off_cpu
	[ "$full_rps" -gt "$best_full" ] && best_full=$full_rps && cpu_full=$full_cpu
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n |
	awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
echo "best: ingest alone $best_off rows/s, full pipeline $best_full rows/s:" \
	"ratio wall clock $(echo "scale=2; $best_full / $best_off" | bc)x," \
	"worker CPU $(echo "scale=2; $cpu_full / $cpu_off" | bc)x;" \
	"median of the rounds' wall-clock ratios ${median}x (target >= 0.7)"
