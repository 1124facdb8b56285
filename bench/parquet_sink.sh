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
ROWS=${ROWS:-120000}
RUNS=${RUNS:-3}
ROLL_ROWS=${ROLL_ROWS:-10000}
PORT=${PORT:-54351}
OUT=$ROOT/bench/out/parquet_sink
T=$ROOT/test/tools/bin

rm -rf "$OUT"
mkdir -p "$OUT"
make -s -C test/tools >/dev/null
. "$ROOT/bench/backlog.sh"
topics=
for r in $(seq 1 "$RUNS"); do topics="$topics${topics:+,}pA$r,mA$r,pB$r,mB$r"; done
trap backlog_stop EXIT
backlog_start "$topics" "anomstream.sink_roll_rows = $ROLL_ROWS"

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
