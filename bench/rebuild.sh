#!/usr/bin/env bash
# Rebuild benchmark: how fast anomstream.rebuild(from) replays, next to the first consumption
# of the same input in the same run.
#
#   bench/rebuild.sh [CYCLES]          (default 120 five-second cycles; run as root or as the
#                                       pg user; PG_CONFIG selects PostgreSQL)
#
# One throwaway server, one mock Kafka cluster (4 partitions per topic). The replayer produces
# CYCLES cycles of generated rows (16 machines, the same world for both streams, Kafka
# timestamps = event times) with no waiting (the mock keeps about 5 MB per partition: more
# than about 150 cycles would drop the oldest messages, and the full rebuild is refused). Then:
#   baseline  the worker consumes that backlog for the first time (ingest + score + pipeline +
#             keyed state), timed from the reload that gives it the brokers until every
#             durable position reaches the end of its partition;
#   full      rebuild('1960-01-01'): every result deleted and recomputed from the beginning;
#   half      rebuild(from the middle of the input's event time);
# each timed from the request until anomstream.rebuild_wait() returns 'done'. Rows/s = rows
# the pipeline took over (replayed rows) / seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. scripts/lib.sh
CYCLES=${1:-120}
START_TS=1604231589
WORK=$(mktemp -d /tmp/anomstream-bench-rebuild.XXXXXX)
chmod 777 "$WORK"
trap 'throwaway_cluster_stop; mock_broker_stop; rm -rf "$WORK"' EXIT
make -s -C test/tools >/dev/null
T=$ROOT/test/tools/bin

"$T/anomstream-generate" --stream process --rows 20000 --machines 4-19 --seed 7 -o "$WORK/p.csv"
"$T/anomstream-generate" --stream memory --rows 20000 --machines 4-19 --seed 7 -o "$WORK/m.csv"
mock_broker_start "$WORK" 4
"$T/anomstream-replay" --brokers "$BOOT" --process "$WORK/p.csv" --memory "$WORK/m.csv" \
	--speedup 0 --cycles "$CYCLES" --start-ts $START_TS --seed 3 --kafka-timestamp event -q \
	--log "$WORK/replay.log"
rows=$(grep -vc '^#' "$WORK/replay.log")

throwaway_cluster_start "$WORK/pg" 55931 "anomstream.brokers = ''
anomstream.max_batch_rows = 10000
anomstream.trigger_interval = '250ms'
anomstream.lateness = '5s'
anomstream.new_attack_retention = '2min'
anomstream.max_future = '10s'
anomstream.idle_timeout = '10min'
shared_buffers = 256MB" || exit 1
cluster_psql -c "CREATE EXTENSION anomstream" >/dev/null

now() { date +%s.%N; }
# until every durable position is at the end of its partition
wait_consumed() {
	for _ in $(seq 1 3000); do
		[ "$(cluster_psql -At -c "SELECT count(*) = 8 AND bool_and(durable_offset >= high_watermark)
			FROM anomstream.status")" = t ] && return 0
		sleep 0.1
	done
	echo "not consumed" >&2
	return 1
}
rebuild() {
	local id t0 t1
	t0=$(now)
	id=$(cluster_psql -At -c "SELECT anomstream.rebuild('$1')")
	[ "$(cluster_psql -At -c "SELECT anomstream.rebuild_wait($id, '30 min')")" = done ] || exit 1
	t1=$(now)
	echo "$id $(echo "$t1 - $t0" | bc)"
}
rows_taken() {
	cluster_psql -At -c "SELECT coalesce(sum(rows), 0) FROM anomstream.pipeline_partitions"
}

t0=$(now)
cluster_psql -c "ALTER SYSTEM SET anomstream.brokers = '$BOOT'" -c "SELECT pg_reload_conf()" >/dev/null
wait_consumed
t1=$(now)
base=$(echo "$t1 - $t0" | bc)
base_rows=$(rows_taken)

before=$(rows_taken)
read -r id_full full < <(rebuild '1960-01-01 00:00:00+00')
full_rows=$(( $(rows_taken) - before ))

mid=$(cluster_psql -At -c "SELECT to_timestamp($START_TS + $CYCLES * 5 / 2)")
before=$(rows_taken)
read -r id_half half < <(rebuild "$mid")
half_rows=$(( $(rows_taken) - before ))
half_msgs=$(cluster_psql -At -c "SELECT replayed_messages || ' of ' || (SELECT sum(durable_offset) FROM anomstream.positions) FROM anomstream.rebuild_requests WHERE id = $id_half")

printf 'input: %d rows in %d cycles, 4 partitions per topic\n' "$rows" "$CYCLES"
printf 'first consumption (baseline)   %7.2f s  %8.0f rows/s  (%d rows)\n' "$base" "$(echo "$base_rows / $base" | bc -l)" "$base_rows"
printf 'rebuild from before any data   %7.2f s  %8.0f rows/s  (%d rows replayed)\n' "$full" "$(echo "$full_rows / $full" | bc -l)" "$full_rows"
printf 'rebuild from the middle        %7.2f s  %8.0f rows/s  (%d rows replayed, %s messages)\n' "$half" "$(echo "$half_rows / $half" | bc -l)" "$half_rows" "$half_msgs"
