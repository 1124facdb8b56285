#!/usr/bin/env bash
# Regenerate the demo models models/anomstream_{process,memory}_default.json.
#
#   models/train_defaults.sh [psql connection options]
#
# Needs a running server where `CREATE EXTENSION anomstream` works (the models are trained by
# anomstream.train itself, inside one transaction that is rolled back, so the database is left
# as it was) and the synthetic data generator test/tools/bin/anomstream-generate (built with
# `make -C test/tools`; override with GENERATE=/path/to/anomstream-generate).
#
# Data: `anomstream-generate --stream process|memory --labels --rows 20000 --seed 1` (five
# machines, 100 000 labelled rows per stream). Its labelling rule (see test/tools/generate.c) is
# deterministic over the features: attack-tool CMD names, or State R with CPU >= 0.90 and
# TSLPI >= 8 (process), or RGROW >= 50000 and MINFLT >= 20000 (memory). The models therefore
# learn that rule; they are demo models, not detectors of real attacks.
#
# Output is deterministic: same generator, same XGBoost, same bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
GENERATE=${GENERATE:-$ROOT/test/tools/bin/anomstream-generate}
ROWS=${ROWS:-20000}
SEED=${SEED:-1}
PSQL=(psql -X -v ON_ERROR_STOP=1 -q "$@")

if [ ! -x "$GENERATE" ]; then
	make -s -C test/tools bin/anomstream-generate
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
"$GENERATE" --stream process --labels --rows "$ROWS" --seed "$SEED" > "$tmp/process.csv"
"$GENERATE" --stream memory --labels --rows "$ROWS" --seed "$SEED" > "$tmp/memory.csv"
chmod 644 "$tmp"/*.csv

# One transaction per stream: load, train, print the model as base64, roll back.
train() {
	local stream=$1 load=$2 features=$3 encoding=$4
	"${PSQL[@]}" -At <<SQL | base64 -d > "models/anomstream_${stream}_default.json"
BEGIN;
CREATE EXTENSION IF NOT EXISTS anomstream;
$load
SELECT 1 FROM anomstream.train('${stream}_default_candidate',
	'SELECT * FROM training ORDER BY machine, sequence', 'attack',
	$features,
	'{"num_boost_round": 40, "max_depth": 4, "eta": 0.3, "seed": 1}',
	'$stream', '$encoding', 0.2) \\g /dev/null
SELECT pg_catalog.encode(anomstream.export_model('${stream}_default_candidate'), 'base64');
ROLLBACK;
SQL
	echo "models/anomstream_${stream}_default.json: $(wc -c < "models/anomstream_${stream}_default.json") bytes"
}

train process "
CREATE TEMP TABLE training (sequence int, machine int, pid int, trun float8, tslpi float8,
	tslpu float8, poli text, nice float8, pri float8, rtpr float8, cpunr float8, status text,
	exc float8, state text, cpu float8, cmd text, attack int, type text);
\\copy training FROM '$tmp/process.csv' WITH (FORMAT csv, HEADER)
UPDATE training SET nice = pri - 120;  -- the pipeline's NICE = PRI - 120" \
	"ARRAY['trun','tslpi','tslpu','poli','nice','pri','rtpr','cpunr','status','exc','state','cpu','cmd']" \
	'{"poli": "onehot", "status": "onehot", "state": "onehot", "cmd": "dictionary"}'

train memory "
CREATE TEMP TABLE raw (sequence int, machine int, pid int, minflt text, majflt text,
	vstext text, vsize float8, rsize text, vgrow text, rgrow text, mem float8, cmd text,
	attack int, type text);
\\copy raw FROM '$tmp/memory.csv' WITH (FORMAT csv, HEADER)
CREATE TEMP TABLE training AS
SELECT sequence, machine, pid, anomstream.reformat(minflt) AS minflt,
	anomstream.reformat(majflt) AS majflt, anomstream.reformat(vstext) AS vstext, vsize,
	anomstream.reformat(rsize) AS rsize, anomstream.reformat(vgrow) AS vgrow,
	anomstream.reformat(rgrow) AS rgrow, mem, cmd, attack FROM raw;" \
	"ARRAY['minflt','majflt','vstext','vsize','rsize','vgrow','rgrow','mem','cmd']" \
	'{"cmd": "dictionary"}'
