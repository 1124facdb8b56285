#!/usr/bin/env bash
# Parquet export benchmark: COPY TO parquet next to COPY TO csv of the same table, same run, and
# DuckDB writing the same rows to Parquet.
#
#   bench/parquet.sh [ROWS]        (default 1000000; run as a non-root user, e.g. runuser -u pgtest)
#
# The table is anomstream.memory_events (the events schema, 21 columns). Its rows are the real
# memory CSV from /work/shared/data repeated (with distinct sequence numbers, times and offsets)
# when that file exists, synthetic rows otherwise. Each COPY runs three times; the best time is
# reported. Needs the extension installed (PG_CONFIG selects PostgreSQL) and
# test/parquet/node_modules (npm ci --prefix test/parquet) for the DuckDB figure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROWS=${1:-1000000}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
CSV_SRC=/work/shared/data/Streaming_Linux_memory.reconstructed.csv
WORK=$(mktemp -d /tmp/anomstream-bench-parquet.XXXXXX)
PORT=$((20000 + RANDOM % 20000))

. scripts/lib.sh

cleanup() {
	throwaway_cluster_stop
	rm -rf "$WORK"
}
trap cleanup EXIT

throwaway_cluster_start "$WORK" "$PORT" "shared_buffers = '512MB'
max_parallel_workers_per_gather = 0"
psql() { cluster_psql -v ON_ERROR_STOP=1 "$@"; }

psql -c "CREATE EXTENSION anomstream"
if [ -r "$CSV_SRC" ]; then
	source_desc="the real memory CSV ($(($(wc -l <"$CSV_SRC") - 1)) rows) repeated"
	psql <<SQL
CREATE TEMP TABLE src (sequence int, machine int, pid int, minflt float8, majflt float8, vstext float8,
	vsize float8, rsize float8, vgrow float8, rgrow float8, mem float8, cmd text);
\copy src FROM '$CSV_SRC' (FORMAT csv, HEADER)
INSERT INTO anomstream.memory_events
SELECT n, machine, pid, minflt, majflt, vstext, vsize, rsize, vgrow, rgrow, mem, cmd, cmd || '_' || pid,
	   TIMESTAMPTZ '2020-11-01 00:00+00' + n * INTERVAL '10 ms',
	   (n % 20 = 0)::int, (n * 37 % 1000) / 1000.0, 1, n / 1000, machine % 4, n, n % 50
FROM (SELECT s.*, k * c.cnt + s.sequence AS n
	  FROM src s, (SELECT count(*) AS cnt FROM src) c, generate_series(0, $ROWS / 1000) k) x
ORDER BY n LIMIT $ROWS;
SQL
else
	source_desc="synthetic rows (the real CSV was not found)"
	psql -c "INSERT INTO anomstream.memory_events
SELECT n, 4 + n % 5, 1000 + n % 3000, n % 500, n % 7, 596, 184.3 + n % 100, 5668 + n % 1000, n % 13, n % 17,
	   (n % 1000) / 10.0, 'cmd' || (n % 40), 'cmd' || (n % 40) || '_' || (1000 + n % 3000),
	   TIMESTAMPTZ '2020-11-01 00:00+00' + n * INTERVAL '10 ms', (n % 20 = 0)::int, (n * 37 % 1000) / 1000.0,
	   1, n / 1000, n % 4, n, n % 50
FROM generate_series(1, $ROWS) n"
fi
psql -c "VACUUM ANALYZE anomstream.memory_events"
rows=$(psql -At -c "SELECT count(*) FROM anomstream.memory_events")

# best of three: milliseconds of a COPY statement
best_ms() {
	local sql=$1 best=
	for _ in 1 2 3; do
		local ms
		ms=$(psql -c '\timing on' -c "$sql" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1)
		if [ -z "$best" ] || awk -v a="$ms" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$ms; fi
	done
	echo "$best"
}

T=anomstream.memory_events
csv_ms=$(best_ms "COPY $T TO '$WORK/m.csv' (FORMAT csv)")
csv_bytes=$(stat -c %s "$WORK/m.csv")
declare -A ms bytes
for v in "zstd:COMPRESSION zstd" "zstd-1:COMPRESSION zstd, COMPRESSION_LEVEL 1" "snappy:COMPRESSION snappy" "uncompressed:COMPRESSION uncompressed"; do
	name=${v%%:*}
	opts=${v#*:}
	ms[$name]=$(best_ms "COPY $T TO '$WORK/m-$name.parquet' (FORMAT parquet, $opts)")
	bytes[$name]=$(stat -c %s "$WORK/m-$name.parquet")
done

# DuckDB, one thread (a COPY is one backend): the same rows, loaded from our file, written with zstd
duck=$(cd test/parquet && node --input-type=module -e "
import { DuckDBInstance } from '@duckdb/node-api';
import fs from 'node:fs';
const db = await DuckDBInstance.create(':memory:', { threads: '1' });
const c = await db.connect();
await c.run(\"CREATE TABLE m AS SELECT * FROM read_parquet('$WORK/m-zstd.parquet')\");
let best = Infinity;
for (let i = 0; i < 3; i++) {
  const t0 = process.hrtime.bigint();
  await c.run(\"COPY m TO '$WORK/duck.parquet' (FORMAT parquet, COMPRESSION zstd)\");
  best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e6);
}
console.log(best.toFixed(1) + ' ' + fs.statSync('$WORK/duck.parquet').size);
")
duck_ms=${duck% *}
duck_bytes=${duck#* }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "rows: $rows of anomstream.memory_events ($source_desc)"
echo
echo "| output | best of 3 (ms) | bytes | time vs CSV | size vs CSV |"
echo "| --- | ---: | ---: | ---: | ---: |"
echo "| COPY TO csv (baseline) | $csv_ms | $csv_bytes | 1.00x | 1.00x |"
for name in zstd zstd-1 snappy uncompressed; do
	echo "| COPY TO parquet, $name | ${ms[$name]} | ${bytes[$name]} | $(ratio "${ms[$name]}" "$csv_ms")x | $(ratio "${bytes[$name]}" "$csv_bytes")x |"
done
echo "| DuckDB 1 thread, parquet zstd | $duck_ms | $duck_bytes | $(ratio "$duck_ms" "$csv_ms")x | $(ratio "$duck_bytes" "$csv_bytes")x |"
echo
echo "anomstream zstd vs DuckDB zstd: time $(ratio "${ms[zstd]}" "$duck_ms")x, size $(ratio "${bytes[zstd]}" "$duck_bytes")x"
