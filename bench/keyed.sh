#!/usr/bin/env bash
# Keyed state benchmark: key updates per second for KEYS keys, the built-in C derivative
# operator next to the same derivative written as a PL/pgSQL updater, both fed by the same
# micro-batches of the same run (DESIGN.md §9).
#
#   bench/keyed.sh [KEYS] [ROUNDS]        (defaults 100000 3)
#
# Each round sends one value per key (1000 rows per Kafka message, x = round, y = random);
# anomstream.max_batch_rows = 100000, so a micro-batch updates up to 100k keys per operator.
# The figure is updates / time spent in the operator (keyed_status.busy_ms, measured by the
# worker around each operator: reading the batch's rows, the old states, the updater calls
# and the writes). Scoring is switched off so the worker's time goes to keyed state.
#
# Needs the extension installed and test/tools built (make install; make -C test/tools) and
# kcat. Runs its own throwaway cluster and mock broker.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. scripts/lib.sh
KEYS=${1:-100000}
ROUNDS=${2:-3}
PER_MSG=1000
PARTS=16
T=$ROOT/test/tools/bin
WORK=$(mktemp -d /tmp/anomstream-keyed-bench.XXXXXX)
chmod 777 "$WORK"
BROKER_PID=

cleanup() {
	mock_broker_stop
	throwaway_cluster_stop
	rm -rf "$WORK"
}
trap cleanup EXIT

mock_broker_start "$WORK" "$PARTS"

throwaway_cluster_start "$WORK/pg" 54391 "
anomstream.database = 'postgres'
anomstream.brokers = ''
anomstream.max_batch_rows = 100000
anomstream.trigger_interval = '200ms'
max_worker_processes = 16
"
cluster_psql -c "CREATE EXTENSION anomstream" \
	-c "SELECT anomstream.deactivate('process'), anomstream.deactivate('memory')" >/dev/null
cluster_psql -f "$ROOT/test/keyed/deriv_updater.sql" >/dev/null
cluster_psql >/dev/null <<'SQL'
SELECT anomstream.keyed_create('deriv_c', 'anomstream.process_events', key => 'cmd',
	value => 'jsonb_build_object(''x'', sequence, ''y'', pid)', builtin => 'derivative');
SELECT anomstream.keyed_create('deriv_sql', 'anomstream.process_events', key => 'cmd',
	value => 'jsonb_build_object(''x'', sequence, ''y'', pid)', updater => 'deriv(jsonb,jsonb)');
SQL

# The input: ROUNDS rounds, one value per key each, PER_MSG rows per message. Each round is
# produced and committed before the next, so every micro-batch holds at most one value per key.
MSGS=$(( (KEYS + PER_MSG - 1) / PER_MSG ))
cluster_psql -c "ALTER SYSTEM SET anomstream.brokers = '$BOOT'" -c "SELECT pg_reload_conf()" >/dev/null
t0=$(date +%s.%N)
for r in $(seq 0 $((ROUNDS - 1))); do
	for p in $(seq 0 $((PARTS - 1))); do : >"$WORK/p$p.json"; done
	awk -v keys="$KEYS" -v r="$r" -v per="$PER_MSG" -v parts="$PARTS" -v dir="$WORK" 'BEGIN {
		srand(7 + r);
		for (m = 0; m * per < keys; m++) {
			line = "{\"ts\": " (1604231589 + r * 10) ", \"data\": [";
			for (j = 0; j < per && m * per + j < keys; j++)
				line = line (j ? ", " : "") "{\"CMD\": \"k" (m * per + j) "\", \"sequence\": " r ", \"PID\": " int(rand() * 100000) "}";
			print line "]}" > (dir "/p" (m % parts) ".json");
		}
	}'
	for p in $(seq 0 $((PARTS - 1))); do
		kcat -P -b "$BOOT" -t process -p "$p" -l "$WORK/p$p.json"
	done
	TOTAL=$(( MSGS * (r + 1) ))
	for _ in $(seq 1 1200); do
		n=$(cluster_psql -At -c "SELECT coalesce(sum(durable_offset), 0) FROM anomstream.positions WHERE topic = 'process'")
		[ "$n" -ge "$TOTAL" ] && break
		sleep 0.5
	done
	[ "$n" -ge "$TOTAL" ] || { echo "timed out: $n of $TOTAL messages committed" >&2; exit 1; }
done
t1=$(date +%s.%N)

echo "keyed state: $KEYS keys x $ROUNDS rounds ($((KEYS * ROUNDS)) rows, $TOTAL messages), produced and committed in $(echo "$t1 - $t0" | bc) s"
cluster_psql -At -F ' ' -c "
SELECT rpad(operator, 10), lpad(updates::text, 8) || ' updates in ' || batches || ' batches:',
	   lpad(updates_per_sec::text, 8) || ' key updates/s (' || round(busy_ms) || ' ms in the operator);',
	   'updater calls alone: ' || round(updates / updater_ms * 1000) || ' key updates/s (' || round(updater_ms) || ' ms)'
FROM anomstream.keyed_status WHERE operator IN ('deriv_c', 'deriv_sql') ORDER BY operator"
cluster_psql -At -c "
SELECT 'C / PL/pgSQL speed-up: operator ' || round(c.updates_per_sec::numeric / s.updates_per_sec, 1)
	   || 'x, updater calls ' || round((s.updater_ms / s.updates / (c.updater_ms / c.updates))::numeric, 1) || 'x'
FROM anomstream.keyed_status c, anomstream.keyed_status s
WHERE c.operator = 'deriv_c' AND s.operator = 'deriv_sql'"
cluster_psql -At -c "
SELECT 'same states (d values compared as numbers): ' || (count(*) = 0)
FROM anomstream.keyed_state c JOIN anomstream.keyed_state s USING (key)
WHERE c.operator = 'deriv_c' AND s.operator = 'deriv_sql' AND c.state <> s.state"
