#!/usr/bin/env bash
# Scoring benchmark: anomstream's scoring paths against XGBoost's C API called directly.
#
#   runuser -u pgtest -- bench/score.sh      (as a non-root user; the extension must be installed
#                                             in the PostgreSQL of $PG_CONFIG)
#
# In one run, on the same model and the same rows:
#   1. batch: 1M process staging rows scored through anomstream_score_slots (the pipeline's
#      hook, driven by anomstream.score_rows with 10 000-row batches) vs bench/score_bare.c
#      calling XGBoosterPredictFromDense on the already encoded rows, 10 000 rows per call.
#      anomstream's figure is the time inside the hook (features + XGBoost + filling slots);
#      the end-to-end time of the SQL statement is printed too.
#   2. per row: SQL anomstream.predict(model, row) over 100 000 rows vs the C API called one
#      row at a time (as documented: no proxy DMatrix; and with a reused proxy DMatrix).
# Model: anomstream.train on 50 000 labelled rows, 100 rounds of depth 6, the default process
# features (22 input columns). Best of three runs for every figure; nthread = 1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
ROWS=${ROWS:-1000000}
PER_ROW=${PER_ROW:-100000}
BATCH=${BATCH:-10000}
OUT=$ROOT/bench/out/score
PORT=${PORT:-54331}

rm -rf "$OUT"
mkdir -p "$OUT"
gcc -O2 -Wall -Wextra -o "$OUT/score_bare" bench/score_bare.c -lxgboost -lm

. scripts/lib.sh
throwaway_cluster_start "$OUT" "$PORT" "shared_buffers = 512MB"
trap throwaway_cluster_stop EXIT
PSQL=(cluster_psql -v ON_ERROR_STOP=1)

echo "preparing $ROWS staging rows and the model ..."
"${PSQL[@]}" <<SQL
CREATE EXTENSION anomstream;
INSERT INTO anomstream.process_events (sequence, machine, pid, trun, tslpi, tslpu, poli, nice,
	pri, rtpr, cpunr, status, exc, state, cpu, cmd, cmd_pid, event_time, batch_id,
	kafka_partition, kafka_offset, row_index)
SELECT g, 4 + g % 5, 1000 + g % 50000, (hashint4(g) & 2147483647) % 3,
	(hashint4(g + 1) & 2147483647) % 20, (hashint4(g + 2) & 2147483647) % 2,
	(ARRAY['norm', '0'])[1 + (hashint4(g + 3) & 2147483647) % 2],
	(ARRAY[0, 0, 0, -20, 10])[1 + (hashint4(g + 4) & 2147483647) % 5],
	(ARRAY[120, 120, 120, 100, 130])[1 + (hashint4(g + 4) & 2147483647) % 5], 0,
	(hashint4(g + 5) & 2147483647) % 4,
	(ARRAY['0', '-', 'N', 'NE', 'NS'])[1 + (hashint4(g + 6) & 2147483647) % 5], 0,
	(ARRAY['S', 'S', 'S', 'R', 'E', 'D'])[1 + (hashint4(g + 7) & 2147483647) % 6],
	((hashint4(g + 8) & 2147483647) % 1000) / 1000.0,
	(ARRAY['atop', 'apache2', 'vmtoolsd', 'Xorg', 'sshd', 'bash', 'mysqld', 'cron', 'nmap',
		   'hydra', 'sqlmap', 'compiz', 'drone', 'php5'])[1 + (hashint4(g + 9) & 2147483647) % 14],
	NULL, now(), 1, 0, g, 0
FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE anomstream.process_events;
SELECT anomstream.train('bench',
	'SELECT *, ((cmd IN (''nmap'', ''hydra'', ''sqlmap'') OR (state = ''R'' AND cpu >= 0.9 AND tslpi >= 8))
			   <> (hashint4(sequence + 77) % 10 = 0))::int AS attack
	 FROM anomstream.process_events WHERE sequence <= 50000',
	'attack', ARRAY['trun','tslpi','tslpu','poli','nice','pri','rtpr','cpunr','status','exc','state','cpu','cmd'],
	'{"num_boost_round": 100, "max_depth": 6}', 'process',
	'{"poli": "onehot", "status": "onehot", "state": "onehot", "cmd": "dictionary"}',
	activate => true) \g /dev/null
SQL
"${PSQL[@]}" -At -c "SELECT encode(anomstream.export_model('bench'), 'base64')" | base64 -d > "$OUT/model.json"
"${PSQL[@]}" -c "COPY (SELECT anomstream.encode_features('bench', e) FROM anomstream.process_events e ORDER BY kafka_offset) TO STDOUT" > "$OUT/matrix.txt"

echo "bare C API ..."
"$OUT/score_bare" "$OUT/model.json" "$OUT/matrix.txt" "$BATCH" "$PER_ROW" > "$OUT/bare.txt"
cat "$OUT/bare.txt"

# Best of three: time inside anomstream_score_slots (NOTICE) and of the whole statement.
echo "anomstream batch (anomstream_score_slots via score_rows) ..."
best_hook=1e30
best_stmt=1e30
for run in 1 2 3; do
	out=$("${PSQL[@]}" -At 2>&1 <<SQL
\timing on
SELECT count(*), sum(probability) FROM anomstream.score_rows('process',
	'SELECT * FROM anomstream.process_events ORDER BY kafka_offset', $BATCH, true);
SQL
)
	hook=$(echo "$out" | sed -n 's/.*scored [0-9]* rows in \([0-9.]*\) ms/\1/p')
	stmt=$(echo "$out" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1)
	sum_sql=$(echo "$out" | grep '|' | tail -1)
	best_hook=$(awk -v a="$best_hook" -v b="$hook" 'BEGIN{print (b < a) ? b : a}')
	best_stmt=$(awk -v a="$best_stmt" -v b="$stmt" 'BEGIN{print (b < a) ? b : a}')
done
echo "  rows|sum(probability) = $sum_sql; hook $best_hook ms; statement $best_stmt ms"

echo "anomstream per row (SQL predict) ..."
best_row=1e30
for run in 1 2 3; do
	out=$("${PSQL[@]}" -At 2>&1 <<SQL
\timing on
SELECT count(*), sum((anomstream.predict('bench', e)).probability)
FROM (SELECT * FROM anomstream.process_events ORDER BY kafka_offset LIMIT $PER_ROW) e;
SQL
)
	stmt=$(echo "$out" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1)
	sum_row=$(echo "$out" | grep '|' | tail -1)
	best_row=$(awk -v a="$best_row" -v b="$stmt" 'BEGIN{print (b < a) ? b : a}')
done
echo "  rows|sum(probability) = $sum_row; statement $best_row ms"

read -r _ b_rows b_sec b_rps b_sum < <(grep '^batch ' "$OUT/bare.txt")
read -r _ r_rows r_sec r_rps r_sum < <(grep '^row ' "$OUT/bare.txt")
read -r _ p_rows p_sec p_rps p_sum < <(grep '^row_proxy ' "$OUT/bare.txt")
awk -v rows="$ROWS" -v hook="$best_hook" -v stmt="$best_stmt" -v brps="$b_rps" -v bsum="$b_sum" \
	-v sqlsum="$sum_sql" -v prow="$PER_ROW" -v rowms="$best_row" -v rrps="$r_rps" -v prps="$p_rps" \
	-v rowsum="$sum_row" -v rsum="$r_sum" 'BEGIN {
	split(sqlsum, s, "|"); split(rowsum, t, "|");
	hr = rows / (hook / 1000); sr = rows / (stmt / 1000); pr = prow / (rowms / 1000);
	printf "\n| path | rows | rows/s | vs bare C |\n| --- | ---: | ---: | ---: |\n";
	printf "| bare C, XGBoosterPredictFromDense, %d-row batches | %d | %.0f | 1.00x |\n", 10000, rows, brps;
	printf "| anomstream_score_slots (features + XGBoost + slots) | %d | %.0f | %.2fx |\n", rows, hr, hr / brps;
	printf "| SQL score_rows statement end to end (scan, slots, hook, tuplestore) | %d | %.0f | %.2fx |\n", rows, sr, sr / brps;
	printf "| bare C, one row per call (no proxy DMatrix, as documented) | %d | %.0f | 1.00x |\n", prow, rrps;
	printf "| bare C, one row per call, reused proxy DMatrix | %d | %.0f | %.2fx |\n", prow, prps, prps / rrps;
	printf "| SQL anomstream.predict(model, row), statement end to end | %d | %.0f | %.2fx (%.2fx of proxy) |\n", prow, pr, pr / rrps, pr / prps;
	printf "\nsum of probabilities: bare %.4f, SQL batch %.4f; first %d rows: bare %.4f, SQL per row %.4f\n", bsum, s[2], prow, rsum, t[2];
}'
