#!/usr/bin/env bash
# Pipeline benchmark: throughput of the whole pipeline against ingest alone, and latency
# from produce to a visible detected_attacks row.
#
#   runuser -u pgtest -- env PG_CONFIG=... bench/pipeline.sh   (as a non-root user; the
#                                       extension must be installed in $PG_CONFIG's PostgreSQL)
#
# In one run, one server, one mock Kafka cluster (4 partitions per topic):
#   1. Throughput (WORKLOAD=rate or cadence, see produce in bench/backlog.sh). For each of RUNS rounds, ROWS generated rows (16 machines, same world for
#      both streams) are produced into fresh topics first, then the worker consumes that
#      backlog in micro-batches of at most 10 000 rows: once with scoring off
#      (anomstream.deactivate: rows unscored, so no attack rows reach windows or join:
#      "ingest alone"), once with the default models (ingest + score + watermark + windows +
#      join); keyed state (issue #6, not part of this comparison) is off in both. A third
#      consumption, for information, adds the default keyed operator (minflt_growth). rows/s = rows of batches 1..n-1 / (start of batch n - start of batch 1), from
#      anomstream.pipeline_batches. Best round of each.
#   2. Latency. The replayer produces RATE rows/s for LAT_SECONDS (rate mode, Kafka timestamp
#      = producer clock) with anomstream.trigger_interval = 250ms; a LISTEN client records
#      when each anomstream_detected notification arrives (the batch's pairs are then
#      visible); kcat reads every message's Kafka timestamp. Per pair: arrival - produce
#      time of the later of its two messages. p50 / p99 / max.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
BIN=$("$PG_CONFIG" --bindir)
ROWS=${ROWS:-120000}
RUNS=${RUNS:-3}
RATE=${RATE:-10000}
LAT_SECONDS=${LAT_SECONDS:-30}
PORT=${PORT:-54341}
OUT=$ROOT/bench/out/pipeline
T=$ROOT/test/tools/bin

rm -rf "$OUT"
mkdir -p "$OUT"
make -s -C test/tools >/dev/null
gcc -O2 -Wall -Wextra -o "$OUT/listen" bench/pipeline_listen.c \
	-I"$("$PG_CONFIG" --includedir)" -L"$("$PG_CONFIG" --libdir)" -lpq

. "$ROOT/bench/backlog.sh"
topics=pL,mL
for r in $(seq 1 "$RUNS"); do topics="$topics,pA$r,mA$r,pB$r,mB$r,pC$r,mC$r"; done
cleanup() {
	backlog_stop
	[ -n "${KCAT_PID:-}" ] && kill $KCAT_PID 2>/dev/null || true
}
trap cleanup EXIT
backlog_start "$topics"

echo "throughput: $RUNS rounds of $ROWS rows, scoring off vs full pipeline ..."
best_a=0
best_b=0
best_k=0
cpu_a=0
cpu_b=0
for r in $(seq 1 "$RUNS"); do
	produce "pA$r" "mA$r"
	"${PSQL[@]}" -c "UPDATE anomstream.keyed_operators SET enabled = false" >/dev/null
	"${PSQL[@]}" -c "SELECT anomstream.deactivate('process'), anomstream.deactivate('memory')" >/dev/null
	read -r a ca < <(consume "pA$r" "mA$r")
	produce "pB$r" "mB$r"
	"${PSQL[@]}" -c "DELETE FROM anomstream.active_models" >/dev/null
	read -r b cb < <(consume "pB$r" "mB$r")
	pairs=$("${PSQL[@]}" -c "SELECT count(*) FROM anomstream.detected_attacks")
	reset_results
	# for information: the same with the default keyed operator (issue #6) on as well
	produce "pC$r" "mC$r"
	"${PSQL[@]}" -c "UPDATE anomstream.keyed_operators SET enabled = true WHERE is_default" >/dev/null
	read -r k ck < <(consume "pC$r" "mC$r")
	echo "  round $r: ingest alone $a rows/s ($ca per worker CPU second), full pipeline $b rows/s ($cb per worker CPU second, $pairs pairs); full + keyed minflt_growth $k rows/s ($ck per worker CPU second)"
	reset_results
	"${PSQL[@]}" -c "TRUNCATE anomstream.keyed_state_data" >/dev/null
	[ "$k" -gt "$best_k" ] && best_k=$k
	[ "$a" -gt "$best_a" ] && best_a=$a
	[ "$b" -gt "$best_b" ] && best_b=$b
	[ "$ca" -gt "$cpu_a" ] && cpu_a=$ca
	[ "$cb" -gt "$cpu_b" ] && cpu_b=$cb
done
ratio=$(awk -v a="$best_a" -v b="$best_b" 'BEGIN { printf "%.2f", b / a }')
cpu_ratio=$(awk -v a="$cpu_a" -v b="$cpu_b" 'BEGIN { printf "%.2f", b / a }')
wal=$("${PSQL[@]}" -c "SELECT pg_current_wal_lsn() - '0/0'")

echo "latency: $RATE rows/s for $LAT_SECONDS s, trigger 250 ms ..."
"${PSQL[@]}" -c "ALTER SYSTEM SET anomstream.max_batch_rows = 100000" -c "SELECT pg_reload_conf()" >/dev/null
kcat -b "$BOOT" -C -t pL -o beginning -f '%t\t%p\t%o\t%T\n' -q > "$OUT/kafka_ts_p.tsv" 2>/dev/null &
KCAT_PID=$!
kcat -b "$BOOT" -C -t mL -o beginning -f '%t\t%p\t%o\t%T\n' -q > "$OUT/kafka_ts_m.tsv" 2>/dev/null &
KCAT_PID="$KCAT_PID $!"
"$OUT/listen" "host=$OUT port=$PORT dbname=postgres" $((LAT_SECONDS + 8)) > "$OUT/notify.tsv" 2>"$OUT/listen.log" &
LISTEN_PID=$!
sleep 1
"${PSQL[@]}" -c "ALTER SYSTEM SET anomstream.topics = 'pL,mL'" -c "SELECT pg_reload_conf()" >/dev/null
sleep 3
"$T/anomstream-replay" --brokers "$BOOT" --process "$OUT/p.csv" --memory "$OUT/m.csv" \
	--process-topic pL --memory-topic mL --rate "$RATE" --rows-per-message 50 \
	--duration "$LAT_SECONDS" -q
wait "$LISTEN_PID"
sleep 1
kill $KCAT_PID 2>/dev/null || true
wait $KCAT_PID 2>/dev/null || true
KCAT_PID=
"${PSQL[@]}" <<SQL
CREATE TABLE bench_notify (batch_id bigint, recv_us bigint);
CREATE TABLE bench_kafka (topic text, kafka_partition int, kafka_offset bigint, ts_ms bigint);
\copy bench_notify FROM '$OUT/notify.tsv'
\copy bench_kafka FROM '$OUT/kafka_ts_p.tsv'
\copy bench_kafka FROM '$OUT/kafka_ts_m.tsv'
CREATE TABLE bench_latency AS
SELECT (n.recv_us - 1000 * greatest(kp.ts_ms, km.ts_ms)) / 1000.0 AS ms
FROM anomstream.detected_attacks d
JOIN anomstream.pipeline_batches b USING (batch_id)
JOIN bench_notify n USING (batch_id)
JOIN bench_kafka kp ON kp.topic = 'pL' AND kp.kafka_partition = d.p_kafka_partition AND kp.kafka_offset = d.p_kafka_offset
JOIN bench_kafka km ON km.topic = 'mL' AND km.kafka_partition = d.m_kafka_partition AND km.kafka_offset = d.m_kafka_offset
WHERE d.p_kafka_partition IS NOT NULL;
SQL
lat=$("${PSQL[@]}" -c "SELECT count(*) || ' pairs: p50 ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)) || ' ms, p99 ' || round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)) || ' ms, max ' || round(max(ms)) || ' ms' FROM bench_latency")
achieved=$("${PSQL[@]}" -c "SELECT round(count(*) * 50.0 / $LAT_SECONDS) FROM bench_kafka")
batch=$("${PSQL[@]}" -c "SELECT round(avg(pipeline_ms)::numeric, 1) || ' ms avg, ' || round(max(pipeline_ms)::numeric, 1) || ' ms max pipeline step per batch, ' || round(avg(rows)) || ' rows per batch' FROM anomstream.pipeline_batches WHERE processed_at > now() - make_interval(secs => $LAT_SECONDS + 10)")

echo
echo "| measure | figure |"
echo "| --- | ---: |"
echo "| ingest alone (scoring off), best of $RUNS | $best_a rows/s |"
echo "| full pipeline (ingest, score, watermark, windows, join), best of $RUNS | $best_b rows/s |"
echo "| ratio, wall clock (target >= 0.7) | **${ratio}x** |"
echo "| for information: full pipeline + the default keyed operator (issue #6), best of $RUNS | $best_k rows/s |"
echo "| ingest alone, rows per worker CPU second, best of $RUNS | $cpu_a |"
echo "| full pipeline, rows per worker CPU second, best of $RUNS | $cpu_b |"
echo "| ratio, worker CPU (insensitive to other load on the machine) | **${cpu_ratio}x** |"
echo "| WAL written by the whole run | $wal bytes |"
echo "| latency produce -> pair visible at $RATE rows/s (produced: $achieved rows/s), trigger 250 ms | $lat |"
echo "| pipeline step during the latency run | $batch |"
