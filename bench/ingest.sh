#!/usr/bin/env bash
# Ingest benchmark: rows/s from the mock Kafka cluster into staging, next to COPY of the same
# rows as CSV into the same UNLOGGED table, measured in the same run; then produce-to-visible
# latency at a fixed rate.
#
#   bench/ingest.sh [ROWS] [LATENCY_RATE] [LATENCY_SECONDS] [ROUNDS]   (defaults 1000000 10000 30 3)
#
# Needs the extension installed and test/tools built (./test.sh or make install; make -C
# test/tools). Runs its own throwaway cluster and mock broker. The topics get 64 partitions and
# rows come from 64 synthetic machines, since the mock cluster keeps only ~5 MB per partition.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. scripts/lib.sh
ROWS=${1:-1000000}
RATE=${2:-10000}
LAT_SECS=${3:-30}
ROUNDS=${4:-3}
T=$ROOT/test/tools/bin
WORK=$(mktemp -d /tmp/anomstream-bench.XXXXXX)
chmod 777 "$WORK"
BROKER_PID=

cleanup() {
	mock_broker_stop
	throwaway_cluster_stop
	rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }

# Drop and recreate the extension with the worker idle; the worker that saw the old extension
# restarts in a fresh process: wait until the new one runs.
fresh_extension() {
	cluster_psql -c "ALTER SYSTEM SET anomstream.brokers = ''" -c "SELECT pg_reload_conf()" >/dev/null
	sleep 0.5
	local pid
	pid=$(cluster_psql -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'anomstream worker'")
	cluster_psql -c "DROP EXTENSION IF EXISTS anomstream" -c "CREATE EXTENSION anomstream" \
		-c "SELECT pg_reload_conf()" >/dev/null
	for _ in $(seq 1 200); do
		[ "$(cluster_psql -At -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'anomstream worker' AND pid <> ${pid:-0}")" = 1 ] && break
		sleep 0.1
	done
}

# Drop and recreate the extension with the worker idle, then point it at the broker and time
# how long it takes until ROWS rows are staged.
ingest_run() {
	local label=$1 scoring=$2
	fresh_extension
	if [ "$scoring" = off ]; then
		# ingest alone: rows unscored (so no attack rows reach windows or joins) and the
		# default keyed operator off
		cluster_psql -c "SELECT anomstream.deactivate('process'), anomstream.deactivate('memory')" \
			-c "UPDATE anomstream.keyed_operators SET enabled = false" >/dev/null
	fi
	cluster_psql -c "CHECKPOINT" >/dev/null
	sync	# the kernel writes back what earlier rounds left dirty before, not during, the timing
	local t0 t1 n
	# Both ends on the server's clock: the reload, and the commit time of the last batch
	# (batch_ranges.committed_at, taken at the end of the batch's work). The check for the
	# end polls slowly, so the polling itself costs the worker little CPU.
	cluster_psql -c "ALTER SYSTEM SET anomstream.brokers = '$BOOT'" >/dev/null
	t0=$(cluster_psql -At -c "SELECT pg_reload_conf()" -c "SELECT extract(epoch FROM clock_timestamp())" | tail -1)
	for _ in $(seq 1 1000); do
		sleep 0.25
		n=$(cluster_psql -At -c "SELECT coalesce(sum(rows), 0) FROM anomstream.status")
		[ "$n" -ge "$PRODUCED" ] && break
	done
	t1=$(cluster_psql -At -c "SELECT extract(epoch FROM max(committed_at)) FROM anomstream.batch_ranges")
	INGEST_SECS=$(echo "$t1 - $t0" | bc -l)
	printf '%-34s %9d rows %7.2f s %10.0f rows/s  (from the reload, connecting included)\n' \
		"$label" "$n" "$INGEST_SECS" "$(echo "$n / $INGEST_SECS" | bc -l)"
	# Steady state: rows after the first batch over the time from the first to the last commit.
	cluster_psql -At -c "
		WITH b AS (SELECT batch_id, max(committed_at) AS at FROM anomstream.batch_ranges GROUP BY 1),
			 r AS (SELECT batch_id, count(*) AS n FROM anomstream.process_events GROUP BY 1
				   UNION ALL SELECT batch_id, count(*) FROM anomstream.memory_events GROUP BY 1)
		SELECT format('%-34s %9s rows %7s s %10s rows/s  (first to last commit)', '  steady state',
					  sum(r.n) FILTER (WHERE b.batch_id > (SELECT min(batch_id) FROM b)),
					  round(extract(epoch FROM max(b.at) - min(b.at))::numeric, 2),
					  round(sum(r.n) FILTER (WHERE b.batch_id > (SELECT min(batch_id) FROM b))
							/ extract(epoch FROM max(b.at) - min(b.at))))
		FROM b JOIN r USING (batch_id)"
}

echo "== setup: throwaway cluster, mock Kafka with 64 partitions per topic"
throwaway_cluster_start "$WORK/pg" 55433 "shared_buffers = 1GB
max_wal_size = 4GB
anomstream.brokers = ''"
mock_broker_start "$WORK" 64
per_machine=$(( (ROWS + 127) / 128 ))
"$T/anomstream-generate" --stream process --rows "$per_machine" --machines 1-64 --seed 1 -o "$WORK/p.csv"
"$T/anomstream-generate" --stream memory --rows "$per_machine" --machines 1-64 --seed 2 -o "$WORK/m.csv"
"$T/anomstream-replay" --brokers "$BOOT" --process "$WORK/p.csv" --memory "$WORK/m.csv" \
	--rate 0 --max-rows "$ROWS" --start-ts "$(( $(date +%s) - 3600 ))" 2>"$WORK/replay.err"
PRODUCED=$(grep -o '[0-9]* rows acknowledged' "$WORK/replay.err" | grep -o '^[0-9]*')
echo "produced $PRODUCED rows ($(tail -1 "$WORK/replay.err" | sed 's/.*; //'))"

echo "== ingest alone and COPY, alternating, $ROUNDS rounds (same topics, read from the beginning each time)"
# Ingest alone: decode and stage, no scoring (so no attack rows reach windows or joins) and
# the default keyed operator off. COPY: the same rows as CSV into the same UNLOGGED tables,
# exported from the first round's staging. Alternating the two spreads the machine's noise
# over both; the best and the median round of each are compared.
ingest_secs=()
copy_secs=()
for r in $(seq 1 "$ROUNDS"); do
	ingest_run "ingest alone, round $r" off
	ingest_secs+=("$INGEST_SECS")
	if [ "$r" = 1 ]; then
		cluster_psql -c "COPY anomstream.process_events TO '$WORK/pe.csv' CSV" \
			-c "COPY anomstream.memory_events TO '$WORK/me.csv' CSV"
	fi
	cluster_psql -c "TRUNCATE anomstream.process_events, anomstream.memory_events" -c "CHECKPOINT"
	sync
	t0=$(now)
	cluster_psql -c "COPY anomstream.process_events FROM '$WORK/pe.csv' CSV" \
		-c "COPY anomstream.memory_events FROM '$WORK/me.csv' CSV"
	t1=$(now)
	s=$(echo "$t1 - $t0" | bc -l)
	copy_secs+=("$s")
	printf '%-34s %9d rows %7.2f s %10.0f rows/s\n' "COPY FROM csv, round $r" "$PRODUCED" "$s" \
		"$(echo "$PRODUCED / $s" | bc -l)"
done
best() { printf '%s\n' "$@" | sort -g | head -1; }
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
printf 'ingest alone: best %.0f rows/s, median %.0f rows/s\n' \
	"$(echo "$PRODUCED / $(best "${ingest_secs[@]}")" | bc -l)" "$(echo "$PRODUCED / $(median "${ingest_secs[@]}")" | bc -l)"
printf 'COPY FROM csv: best %.0f rows/s, median %.0f rows/s\n' \
	"$(echo "$PRODUCED / $(best "${copy_secs[@]}")" | bc -l)" "$(echo "$PRODUCED / $(median "${copy_secs[@]}")" | bc -l)"
printf 'ratio ingest alone / COPY (rows/s): best vs best %.2fx, median vs median %.2fx\n' \
	"$(echo "$(best "${copy_secs[@]}") / $(best "${ingest_secs[@]}")" | bc -l)" \
	"$(echo "$(median "${copy_secs[@]}") / $(median "${ingest_secs[@]}")" | bc -l)"

echo "== for information: the default install (scoring, pipeline, keyed operator) on the same topics"
ingest_run "default install (score+pipeline+keyed)" on
printf 'ratio default install / best COPY: %.2fx\n' "$(echo "$(best "${copy_secs[@]}") / $INGEST_SECS" | bc -l)"

echo "== latency: produce at $RATE rows/s for $LAT_SECS s (real cadence off, fixed rate)"
mock_broker_stop
mock_broker_start "$WORK" 4
fresh_extension
cluster_psql -c "ALTER SYSTEM SET anomstream.brokers = '$BOOT'" -c "SELECT pg_reload_conf()" >/dev/null
sleep 2
"$T/anomstream-generate" --stream process --rows 20000 --seed 3 -o "$WORK/lp.csv"
"$T/anomstream-generate" --stream memory --rows 20000 --seed 4 -o "$WORK/lm.csv"
"$T/anomstream-replay" --brokers "$BOOT" --process "$WORK/lp.csv" --memory "$WORK/lm.csv" \
	--rate "$RATE" --rows-per-message 10 --duration "$LAT_SECS" -q
sleep 2
cluster_psql -c "
	WITH lat AS (
		SELECT extract(epoch FROM r.committed_at - e.kafka_timestamp) * 1000 AS ms, e.kafka_timestamp
		FROM (SELECT 'process' AS topic, batch_id, kafka_partition, kafka_timestamp
			  FROM anomstream.process_events
			  UNION ALL
			  SELECT 'memory', batch_id, kafka_partition, kafka_timestamp
			  FROM anomstream.memory_events) e
		JOIN anomstream.batch_ranges r USING (topic, batch_id, kafka_partition))
	SELECT count(*) AS rows,
		   round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) AS p50_ms,
		   round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1) AS p99_ms,
		   round(max(ms)::numeric, 1) AS max_ms
	FROM lat
	WHERE kafka_timestamp >= (SELECT min(kafka_timestamp) + interval '2 s' FROM lat)"
echo "(rows produced in the first 2 s are left out: their Kafka timestamps include the producer's"
echo " own start-up, before it had connected)"
