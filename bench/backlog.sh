# bench/backlog.sh - shared by bench/pipeline.sh and bench/parquet_sink.sh (sourced): consume
# a produced backlog and measure the pipeline's rows/s from anomstream.pipeline_batches.
# The measuring functions need PSQL (array: psql with connection options), ROWS, BOOT, OUT
# and T (test tools) set.

# Generate the rows (machines $BACKLOG_MACHINES, default 4-19), start a mock Kafka cluster
# with topics $1 ($BACKLOG_PARTITIONS partitions each, default 4) and a server with
# anomstream preloaded (extra postgresql.conf lines: $2, then $BENCH_CONF, e.g. auto_explain
# settings), create the extension.
# Sets BOOT and PSQL; backlog_stop ends both. Needs BIN, OUT, PORT and T. The broker writes
# to a file, never to the caller's stdout (a $(...) around a caller would wait for it).
backlog_start() {
	local machines=${BACKLOG_MACHINES:-4-19}
	"$T/anomstream-generate" --stream process --rows 20000 --machines "$machines" --seed 7 -o "$OUT/p.csv"
	"$T/anomstream-generate" --stream memory --rows 20000 --machines "$machines" --seed 7 -o "$OUT/m.csv"
	"$T/anomstream-mockbroker" --no-stdin --partitions "${BACKLOG_PARTITIONS:-4}" --topics "$1" \
		--bootstrap-file "$OUT/boot" --pidfile "$OUT/broker.pid" >"$OUT/broker.log" 2>&1 &
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
port = $PORT
unix_socket_directories = '$OUT'
listen_addresses = ''
shared_buffers = 256MB
max_wal_size = 4GB
${2:-}
${BENCH_CONF:-}
CONF
	"$BIN/pg_ctl" -D "$OUT/data" -l "$OUT/server.log" -w start >/dev/null
	PSQL=("$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$OUT" -p "$PORT" -d postgres)
	"${PSQL[@]}" -c "CREATE EXTENSION anomstream"
}

backlog_stop() {
	"$BIN/pg_ctl" -D "$OUT/data" -m fast -w stop >/dev/null 2>&1 || true
	[ -s "$OUT/broker.pid" ] && kill "$(cat "$OUT/broker.pid")" 2>/dev/null || true
	rm -f "$OUT/broker.pid" "$OUT/boot"
}

# Rows the pipeline took over so far (cheap, unlike counting staging while it grows)
taken() {
	"${PSQL[@]}" -c "SELECT coalesce(sum(rows), 0) FROM anomstream.pipeline_batches"
}

# CPU seconds (user + system) the worker process used so far
worker_cpu() {
	local pid
	pid=$("${PSQL[@]}" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'anomstream worker'")
	awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$pid/stat"
}

# consume topics $1,$2 (already produced); prints "rows/s rows-per-worker-CPU-second"
consume() {
	local ptopic=$1 mtopic=$2 before target first cpu0 cpu1 rate
	cpu0=$(worker_cpu)
	before=$(taken)
	target=$((before + ROWS))
	first=$("${PSQL[@]}" -c "SELECT coalesce(max(batch_id), 0) FROM anomstream.pipeline_batches")
	"${PSQL[@]}" -c "ALTER SYSTEM SET anomstream.topics = '$ptopic,$mtopic'" \
		-c "ALTER SYSTEM SET anomstream.brokers = '$BOOT'" -c "SELECT pg_reload_conf()" >/dev/null
	for _ in $(seq 1 1200); do
		[ "$(taken)" -ge "$target" ] && break
		sleep 0.25
	done
	[ "$(taken)" -ge "$target" ] || { echo "consumption of $ptopic,$mtopic did not finish" >&2; exit 1; }
	cpu1=$(worker_cpu)
	rate=$("${PSQL[@]}" -c "
		WITH b AS (SELECT * FROM anomstream.pipeline_batches WHERE batch_id > $first)
		SELECT round((SELECT sum(rows) FROM b WHERE batch_id < (SELECT max(batch_id) FROM b))
			   / extract(epoch FROM max(processed_at) - min(processed_at)))
		FROM b")
	echo "$rate $(awk -v r="$ROWS" -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%d", r / (b - a) }')"
}

# Results are identified by Kafka positions (DESIGN.md §12) and every round uses fresh topics
# whose offsets start at 0 again: clear results and operator state between rounds, as
# anomstream.rebuild() would (the worker is idle then: its topics are drained).
reset_results() {
	"${PSQL[@]}" -c "TRUNCATE anomstream.detected_attacks, anomstream.potential_attacks,
		anomstream.join_process, anomstream.join_memory, anomstream.window_keys;
		UPDATE anomstream.pipeline_state SET held_process = 0, held_memory = 0, held_keys = 0"
}

# WORKLOAD=rate (default): rate mode, event times from the wall clock, so the generator's
# simulated minutes are packed into seconds (about one pair per four rows). WORKLOAD=cadence:
# the real producer's cadence (per machine a process message every 5 s and a memory message
# every 10 s of event time, late memory rows included), produced without waiting.
# Cadence rounds start in the past, each after the previous one's last event time (at least
# 10 process rows per machine and cycle: at most ROWS / 160 cycles of 5 s), so no round's rows
# are behind the watermark of the one before and the rate-mode latency run comes last in
# event time too.
CADENCE_NEXT_TS=$(( $(date +%s) - 86400 ))
produce() {
	local mode=(--rate 0)
	if [ "${WORKLOAD:-rate}" = cadence ]; then
		mode=(--speedup 0 --start-ts "$CADENCE_NEXT_TS")
		CADENCE_NEXT_TS=$(( CADENCE_NEXT_TS + ROWS / 32 + 600 ))
	fi
	"$T/anomstream-replay" --brokers "$BOOT" --process "$OUT/p.csv" --memory "$OUT/m.csv" \
		--process-topic "$1" --memory-topic "$2" "${mode[@]}" --max-rows "$ROWS" -q
}
