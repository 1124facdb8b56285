#!/usr/bin/env bash
# Continuous Parquet sinks benchmark: the pipeline's throughput with the process, memory and
# detected sinks on against the same pipeline with them off, in the same run.
#
#   runuser -u pgtest -- env PG_CONFIG=... bench/parquet_sink.sh   (as a non-root user; the
#                                       extension must be installed in $PG_CONFIG's PostgreSQL)
#
# One server, one mock Kafka cluster (4 partitions per topic). For each of RUNS rounds, ROWS
# generated rows are produced into fresh topics, then the worker consumes that backlog in
# micro-batches of at most 10 000 rows (default models: ingest, score, windows, join), once
# with the sinks off and once with all three on (a fresh directory per round; parts roll at
# ROLL_ROWS rows per partition, so several parts are written during the measurement).
# rows/s = rows of batches 1..n-1 / (start of batch n - start of batch 1), from
# anomstream.pipeline_batches; best round of each. The worker's CPU seconds give a second
# figure that other load on the machine disturbs less.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
BIN=$("$PG_CONFIG" --bindir)
ROWS=${ROWS:-200000}
RUNS=${RUNS:-3}
ROLL_ROWS=${ROLL_ROWS:-10000}
PORT=${PORT:-54351}
OUT=$ROOT/bench/out/parquet_sink
T=$ROOT/test/tools/bin

rm -rf "$OUT"
mkdir -p "$OUT"
make -s -C test/tools >/dev/null
"$T/anomstream-generate" --stream process --rows 20000 --machines 4-19 --seed 7 -o "$OUT/p.csv"
"$T/anomstream-generate" --stream memory --rows 20000 --machines 4-19 --seed 7 -o "$OUT/m.csv"
topics=
for r in $(seq 1 "$RUNS"); do topics="$topics${topics:+,}pA$r,mA$r,pB$r,mB$r"; done
"$T/anomstream-mockbroker" --no-stdin --partitions 4 --topics "$topics" \
	--bootstrap-file "$OUT/boot" --pidfile "$OUT/broker.pid" 2>"$OUT/broker.log" &
for _ in $(seq 1 100); do [ -s "$OUT/boot" ] && break; sleep 0.1; done
BOOT=$(cat "$OUT/boot")

"$BIN/initdb" -D "$OUT/data" -A trust >/dev/null
cat >> "$OUT/data/postgresql.conf" <<CONF
shared_preload_libraries = 'anomstream'
anomstream.database = 'postgres'
anomstream.brokers = ''
anomstream.max_batch_rows = 10000
anomstream.trigger_interval = '250ms'
anomstream.poll_timeout = '50ms'
anomstream.sink_roll_rows = $ROLL_ROWS
port = $PORT
unix_socket_directories = '$OUT'
listen_addresses = ''
shared_buffers = 256MB
max_wal_size = 4GB
CONF
"$BIN/pg_ctl" -D "$OUT/data" -l "$OUT/server.log" -w start >/dev/null
cleanup() {
	"$BIN/pg_ctl" -D "$OUT/data" -m fast -w stop >/dev/null 2>&1 || true
	[ -s "$OUT/broker.pid" ] && kill "$(cat "$OUT/broker.pid")" 2>/dev/null || true
}
trap cleanup EXIT
PSQL=("$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$OUT" -p "$PORT" -d postgres)
"${PSQL[@]}" -c "CREATE EXTENSION anomstream"

staged() {
	"${PSQL[@]}" -c "SELECT (SELECT count(*) FROM anomstream.process_events) + (SELECT count(*) FROM anomstream.memory_events)"
}

worker_cpu() {
	local pid
	pid=$("${PSQL[@]}" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'anomstream worker'")
	awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$pid/stat"
}

# Consume topics $1,$2 (already produced); prints "rows/s rows-per-worker-CPU-second".
consume() {
	local target first cpu0 cpu1 rate
	cpu0=$(worker_cpu)
	target=$(($(staged) + ROWS))
	first=$("${PSQL[@]}" -c "SELECT coalesce(max(batch_id), 0) FROM anomstream.pipeline_batches")
	"${PSQL[@]}" -c "ALTER SYSTEM SET anomstream.topics = '$1,$2'" \
		-c "ALTER SYSTEM SET anomstream.brokers = '$BOOT'" -c "SELECT pg_reload_conf()" >/dev/null
	for _ in $(seq 1 1200); do
		[ "$(staged)" -ge "$target" ] && break
		sleep 0.25
	done
	[ "$(staged)" -ge "$target" ] || { echo "consumption of $1,$2 did not finish" >&2; exit 1; }
	cpu1=$(worker_cpu)
	rate=$("${PSQL[@]}" -c "
		WITH b AS (SELECT * FROM anomstream.pipeline_batches WHERE batch_id > $first)
		SELECT round((SELECT sum(rows) FROM b WHERE batch_id < (SELECT max(batch_id) FROM b))
			   / extract(epoch FROM max(processed_at) - min(processed_at)))
		FROM b")
	echo "$rate $(awk -v r="$ROWS" -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%d", r / (b - a) }')"
}

produce() {
	"$T/anomstream-replay" --brokers "$BOOT" --process "$OUT/p.csv" --memory "$OUT/m.csv" \
		--process-topic "$1" --memory-topic "$2" --rate 0 --max-rows "$ROWS" -q
}

# Each round uses fresh topics whose offsets start at 0 again: clear results and state, as
# anomstream.rebuild() would, and give the sinks a fresh directory (part names carry offsets).
reset_results() {
	"${PSQL[@]}" -c "TRUNCATE anomstream.detected_attacks, anomstream.potential_attacks,
		anomstream.join_process, anomstream.join_memory, anomstream.window_keys;
		UPDATE anomstream.pipeline_state SET held_process = 0, held_memory = 0, held_keys = 0"
}

sinks() {
	for s in process memory detected; do
		if [ "$1" = off ]; then
			"${PSQL[@]}" -c "SELECT anomstream.set_sink('$s', NULL)" >/dev/null
		else
			"${PSQL[@]}" -c "SELECT anomstream.set_sink('$s', '$1')" >/dev/null
		fi
	done
}

echo "throughput: $RUNS rounds of $ROWS rows, full pipeline with sinks off vs on (roll at $ROLL_ROWS rows) ..."
best_off=0
best_on=0
cpu_off=0
cpu_on=0
for r in $(seq 1 "$RUNS"); do
	sinks off
	produce "pA$r" "mA$r"
	read -r a ca < <(consume "pA$r" "mA$r")
	reset_results
	mkdir -p "$OUT/sink$r"
	sinks "$OUT/sink$r"
	produce "pB$r" "mB$r"
	read -r b cb < <(consume "pB$r" "mB$r")
	parts=$("${PSQL[@]}" -c "SELECT count(*) || ' parts, ' || sum(rows) || ' rows, ' || pg_size_pretty(sum(bytes)) FROM anomstream.sink_manifest WHERE directory = '$OUT/sink$r'")
	echo "  round $r: sinks off $a rows/s ($ca per worker CPU second), sinks on $b rows/s ($cb per worker CPU second; $parts written)"
	reset_results
	[ "$a" -gt "$best_off" ] && best_off=$a
	[ "$b" -gt "$best_on" ] && best_on=$b
	[ "$ca" -gt "$cpu_off" ] && cpu_off=$ca
	[ "$cb" -gt "$cpu_on" ] && cpu_on=$cb
done
ratio=$(awk -v a="$best_off" -v b="$best_on" 'BEGIN { printf "%.2f", b / a }')
cpu_ratio=$(awk -v a="$cpu_off" -v b="$cpu_on" 'BEGIN { printf "%.2f", b / a }')

echo
echo "| measure | figure |"
echo "| --- | ---: |"
echo "| full pipeline, sinks off, best of $RUNS | $best_off rows/s |"
echo "| full pipeline, process + memory + detected sinks on (roll at $ROLL_ROWS rows per partition), best of $RUNS | $best_on rows/s |"
echo "| ratio, wall clock | **${ratio}x** |"
echo "| sinks off, rows per worker CPU second, best of $RUNS | $cpu_off |"
echo "| sinks on, rows per worker CPU second, best of $RUNS | $cpu_on |"
echo "| ratio, worker CPU | **${cpu_ratio}x** |"
