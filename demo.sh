#!/usr/bin/env bash
# anomstream demo: a throwaway PostgreSQL cluster, the embedded Kafka (librdkafka's in-memory
# mock cluster, for demos and tests only), bundled synthetic telemetry replayed with the real
# producer's cadence, the results printed and the attack chart written to demo/out/.
#
#   sudo ./demo.sh              # installs packages, builds, runs the demo (about 2 minutes)
#   ./demo.sh --no-install      # packages and extension already installed
#   ./demo.sh --keep            # leave the cluster and anomstream-web running afterwards
#   DEMO_CYCLES=240 ./demo.sh   # longer stream (5 s of event time per cycle)
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
. "$ROOT/scripts/lib.sh"
DEMO_USER=${DEMO_USER:-${TEST_USER:-pgtest}}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
CYCLES=${DEMO_CYCLES:-120}
SPEEDUP=${DEMO_SPEEDUP:-10}
INSTALL=1
KEEP=0
for a in "$@"; do
	case "$a" in
		--no-install) INSTALL=0 ;;
		--keep) KEEP=1 ;;
		*) echo "usage: $0 [--no-install] [--keep]" >&2; exit 2 ;;
	esac
done

if [ "$(id -u)" = 0 ]; then
	[ "$INSTALL" = 1 ] && install_packages
	ensure_test_user "$DEMO_USER"
	make -s PG_CONFIG="$PG_CONFIG" >/dev/null
	make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
fi
make -s -C test/tools >/dev/null
make -s -C src/web >/dev/null
export TEST_USER=$DEMO_USER

OUT=$ROOT/demo/out
WORK=$(mktemp -d /tmp/anomstream-demo.XXXXXX)
mkdir -p "$OUT"
[ "$(id -u)" = 0 ] && chown "$DEMO_USER" "$OUT"
PORT=${DEMO_PORT:-55432}
WEB_PID=
PSQL=(cluster_psql)

cleanup() {
	if [ "$KEEP" = 0 ]; then
		# as root WEB_PID is runuser's, which does not pass SIGTERM on: stop the page itself
		if [ -n "$WEB_PID" ]; then
			pkill -TERM -P "$WEB_PID" 2>/dev/null || true
			kill "$WEB_PID" 2>/dev/null || true
		fi
		throwaway_cluster_stop
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

echo "== throwaway cluster in $WORK (port $PORT)"
throwaway_cluster_start "$WORK" "$PORT" "anomstream.brokers = 'embedded'
anomstream.trigger_interval = '250ms'"
"${PSQL[@]}" -c "CREATE EXTENSION anomstream"

echo "== waiting for the embedded Kafka"
for _ in $(seq 1 100); do
	BOOT=$("${PSQL[@]}" -At -c "SELECT split_part(brokers, ' ', 1) FROM anomstream.status WHERE state = 'running' LIMIT 1" || true)
	[ -n "$BOOT" ] && break
	sleep 0.2
done
[ -n "$BOOT" ] || { echo "the worker did not start; see $WORK/server.log" >&2; exit 1; }
"${PSQL[@]}" -At -c "SELECT DISTINCT brokers FROM anomstream.status"

echo "== anomstream-web"
"${PSQL[@]}" -c "DO \$\$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anomstream_web') THEN CREATE ROLE anomstream_web LOGIN IN ROLE anomstream_reader; END IF; END\$\$"
as_pg_user "$ROOT/src/web/anomstream-web" --port "${DEMO_WEB_PORT:-8765}" \
	--conninfo "host=$WORK port=$PORT dbname=postgres user=anomstream_web" \
	>"$WORK/web.log" 2>&1 &
WEB_PID=$!
sleep 0.5
cat "$WORK/web.log"

echo "== generating synthetic telemetry (machines 4-8) and replaying it: $CYCLES cycles of 5 s at ${SPEEDUP}x"
as_pg_user "$ROOT/test/tools/bin/anomstream-generate" --stream process --rows 2000 --seed 1 -o "$WORK/process.csv"
as_pg_user "$ROOT/test/tools/bin/anomstream-generate" --stream memory --rows 2000 --seed 1 -o "$WORK/memory.csv"
START_TS=$(($(date +%s) - CYCLES * 5))
as_pg_user "$ROOT/test/tools/bin/anomstream-replay" --brokers "$BOOT" \
	--process "$WORK/process.csv" --memory "$WORK/memory.csv" \
	--cycles "$CYCLES" --speedup "$SPEEDUP" --start-ts "$START_TS" -q
sleep 2

echo "== status"
"${PSQL[@]}" -c "SELECT topic, kafka_partition, durable_offset, high_watermark, lag, messages, rows, dead_letters FROM anomstream.status ORDER BY 1, 2"
echo "== staged rows"
"${PSQL[@]}" -c "SELECT 'process' AS stream, count(*) AS rows, count(*) FILTER (WHERE prediction = 1) AS flagged FROM anomstream.process_events UNION ALL SELECT 'memory', count(*), count(*) FILTER (WHERE prediction = 1) FROM anomstream.memory_events"
echo "== potential attacks (distinct attacking processes per machine per window)"
"${PSQL[@]}" -c "SELECT window_start, machine, attacks, new_attacks, closed FROM anomstream.potential_attacks ORDER BY window_start DESC, machine LIMIT 15"
echo "== detected attacks (process and memory rows of one process flagged within 30 s)"
"${PSQL[@]}" -c "SELECT p_machine AS machine, p_cmd_pid AS cmd_pid, p_event_time, m_event_time FROM anomstream.detected_attacks ORDER BY p_event_time DESC LIMIT 10"
"${PSQL[@]}" -At -c "SELECT anomstream.attack_chart('10 minutes')" >"$OUT/chart.svg"
echo "== chart written to $OUT/chart.svg"

if [ "$KEEP" = 1 ]; then
	echo "== left running: psql -h $WORK -p $PORT -d postgres; page at http://127.0.0.1:${DEMO_WEB_PORT:-8765}/"
	echo "   stop with: $CLUSTER_BIN/pg_ctl -D $WORK/data stop (as $DEMO_USER); kill $WEB_PID"
fi
