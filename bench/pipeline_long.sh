#!/usr/bin/env bash
# Long-run pipeline benchmark: the whole pipeline against ingest alone over one large backlog,
# alternating, so both see the same phases of a noisy host.
#
#   runuser -u pgtest -- env PG_CONFIG=... bench/pipeline_long.sh [ROWS] [ROUNDS]
#       (as a non-root user; the extension must be installed in $PG_CONFIG's PostgreSQL;
#        defaults 1000000 rows, 2 rounds)
#
# Per round and mode, on a fresh server and a fresh mock Kafka cluster (64 partitions per
# topic): ROWS generated rows of 64 machines with the real producer's cadence of event times
# (bench/pipeline.sh's "cadence" workload, 1 pair per 16 rows) are produced first, then the
# worker drains the backlog in micro-batches of at most 10 000 rows. "ingest alone" =
# scoring off (anomstream.deactivate, so no attack rows reach windows or join); "full" =
# ingest, score, watermarks, windows, join. Keyed state is off in both. Printed: rows/s of
# batches 1..n-1 (anomstream.pipeline_batches) and the worker's CPU seconds (/proc), per
# round and mode (the two modes of a round run back to back), then the ratio of the best
# rounds and the median of the rounds' ratios.
set -euo pipefail

ROWS=${1:-1000000}
ROUNDS=${2:-2}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
BIN=$("$PG_CONFIG" --bindir)
HERE=$(cd "$(dirname "$0")" && pwd)
T="$HERE/../test/tools/bin"
OUT=$(mktemp -d /tmp/anomstream-bench-long.XXXXXX)
PORT=${PORT:-5497}
trap 'stop_all; rm -rf "$OUT"' EXIT

[ "$(id -u)" != 0 ] || { echo "run as a non-root user (runuser -u <user> -- ...)" >&2; exit 2; }
[ -x "$T/anomstream-generate" ] || make -s -C "$HERE/../test/tools" >/dev/null

stop_all() {
	[ -d "$OUT/data" ] && "$BIN/pg_ctl" -D "$OUT/data" -m immediate stop >/dev/null 2>&1 || true
	[ -s "$OUT/broker.pid" ] && kill "$(cat "$OUT/broker.pid")" 2>/dev/null || true
	rm -f "$OUT/broker.pid" "$OUT/boot"
	rm -rf "$OUT/data"
}

cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }

"$T/anomstream-generate" --stream process --rows 20000 --machines 1-64 --seed 7 -o "$OUT/p.csv"
"$T/anomstream-generate" --stream memory --rows 20000 --machines 1-64 --seed 7 -o "$OUT/m.csv"

# One consumption: mode off|full; prints "rows_per_s cpu_s pairs".
run() {
	local mode=$1
	stop_all
	# (the broker's output to a file: run's caller reads run's stdout until every writer closes it)
	"$T/anomstream-mockbroker" --no-stdin --partitions 64 --topics p1,m1 \
		--bootstrap-file "$OUT/boot" --pidfile "$OUT/broker.pid" >"$OUT/broker.log" 2>&1 &
	for _ in $(seq 1 100); do [ -s "$OUT/boot" ] && break; sleep 0.1; done
	local boot; boot=$(cat "$OUT/boot")
	"$BIN/initdb" -D "$OUT/data" -A trust >/dev/null
	cat >> "$OUT/data/postgresql.conf" <<CONF
shared_preload_libraries = 'anomstream'
anomstream.database = 'postgres'
anomstream.brokers = ''
anomstream.max_batch_rows = 10000
anomstream.trigger_interval = '250ms'
anomstream.poll_timeout = '50ms'
port = $PORT
unix_socket_directories = '$OUT'
listen_addresses = ''
shared_buffers = 1GB
max_wal_size = 4GB
CONF
	"$BIN/pg_ctl" -D "$OUT/data" -l "$OUT/server.log" -w start >/dev/null
	local P=("$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$OUT" -p "$PORT" -d postgres)
	"${P[@]}" -c "CREATE EXTENSION anomstream"
	"$T/anomstream-replay" --brokers "$boot" --process "$OUT/p.csv" --memory "$OUT/m.csv" \
		--process-topic p1 --memory-topic m1 --max-rows "$ROWS" -q --speedup 0
	"${P[@]}" -c "UPDATE anomstream.keyed_operators SET enabled = false" >/dev/null
	[ "$mode" = off ] && "${P[@]}" -c "SELECT anomstream.deactivate('process'), anomstream.deactivate('memory')" >/dev/null
	"${P[@]}" -c "ALTER SYSTEM SET anomstream.topics = 'p1,m1'" \
		-c "ALTER SYSTEM SET anomstream.brokers = '$boot'" -c "SELECT pg_reload_conf()" >/dev/null
	local w; w=$("${P[@]}" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'anomstream worker'")
	local c0; c0=$(cpu "$w")
	local n=0
	for _ in $(seq 1 1200); do
		sleep 0.5
		n=$("${P[@]}" -c "SELECT coalesce(sum(rows), 0) FROM anomstream.pipeline_batches")
		[ "$n" -ge "$ROWS" ] && break
	done
	local c1; c1=$(cpu "$w")
	"${P[@]}" -c "WITH b AS (SELECT * FROM anomstream.pipeline_batches)
		SELECT round((SELECT sum(rows) FROM b WHERE batch_id < (SELECT max(batch_id) FROM b))
			/ extract(epoch FROM max(processed_at) - min(processed_at)))
			|| ' ' || $(echo "$c1 - $c0" | bc) || ' '
			|| (SELECT count(*) FROM anomstream.detected_attacks) FROM b"
}

best_off=0; best_full=0; cpu_off=0; cpu_full=0
ratios=()
for r in $(seq 1 "$ROUNDS"); do
	read -r off_rps off_cpu _ <<<"$(run off)"
	read -r full_rps full_cpu full_pairs <<<"$(run full)"
	ratio=$(echo "scale=2; $full_rps / $off_rps" | bc)
	ratios+=("$ratio")
	echo "round $r: ingest alone $off_rps rows/s (worker CPU $off_cpu s), full pipeline $full_rps rows/s" \
		"(worker CPU $full_cpu s, $full_pairs pairs): ratio ${ratio}x wall clock," \
		"$(echo "scale=2; $off_cpu / $full_cpu" | bc)x worker CPU"
	[ "$off_rps" -gt "$best_off" ] && best_off=$off_rps && cpu_off=$off_cpu
	[ "$full_rps" -gt "$best_full" ] && best_full=$full_rps && cpu_full=$full_cpu
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
echo "best: ingest alone $best_off rows/s, full pipeline $best_full rows/s:" \
	"ratio wall clock $(echo "scale=2; $best_full / $best_off" | bc)x," \
	"worker CPU $(echo "scale=2; $cpu_off / $cpu_full" | bc)x; median of the rounds' wall-clock ratios ${median}x (target >= 0.7)"
