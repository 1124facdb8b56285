#!/usr/bin/env bash
# Build the libFuzzer targets with clang (ASan + UBSan) and run each for a bounded time.
#   test/fuzz/run.sh [seconds-per-target]
# Seeds are made at run time by our own replayer (double-encoded, plain, string and ISO ts,
# malformed messages); findings stop the run with the crashing input saved under
# test/fuzz/bin/. Prints "N passed, M failed" over the targets.
set -uo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-30}
out=test/fuzz/bin
mkdir -p "$out"
passed=0
failed=0

CFLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc"

build_decode() {
	clang $CFLAGS test/fuzz/fuzz_decode.c src/ingest/decode.c src/ingest/reformat.c -lm \
		-o "$out/fuzz_decode"
}

seed_decode() {
	local corpus=$out/corpus_decode
	rm -rf "$corpus"
	mkdir -p "$corpus"
	local gen=test/tools/bin/anomstream-generate rep=test/tools/bin/anomstream-replay
	"$gen" --stream process --rows 40 --machines 4-5 --seed 1 -o "$out/p.csv"
	"$gen" --stream memory --rows 40 --machines 4-5 --seed 2 --unit-strings -o "$out/m.csv"
	local k=0
	for args in "" "--plain-rows" "--ts-format string" "--ts-format iso --inject-bad 2"; do
		k=$((k + 1))
		# one file per message: a stream byte (0 process, 1 memory), then the value
		# shellcheck disable=SC2086
		"$rep" --print --process "$out/p.csv" --memory "$out/m.csv" --speedup 0 --cycles 2 \
			--start-ts 1604231589 --seed $k $args 2>/dev/null |
			awk -F'\t' -v dir="$corpus" -v k="$k" '{
				f = sprintf("%s/seed-%d-%04d", dir, k, NR)
				printf "%s%s", ($1 == "memory" ? "\001" : "\000"), $3 > f
				close(f)
			}'
	done
	echo "$corpus"
}

run_target() {
	local name=$1 corpus=$2
	mkdir -p "$out/artifacts_$name"
	if "$out/$name" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$out/artifacts_$name/" -print_final_stats=0 "$corpus" \
		>"$out/$name.log" 2>&1; then
		echo "fuzz $name: ok ($(grep -o 'Done [0-9]* runs' "$out/$name.log" | tail -1))"
		passed=$((passed + 1))
	else
		echo "fuzz $name: FAILED"
		tail -40 "$out/$name.log"
		failed=$((failed + 1))
	fi
}

make -s -C test/tools >/dev/null
if build_decode; then
	run_target fuzz_decode "$(seed_decode)"
else
	echo "fuzz_decode: build failed"
	failed=$((failed + 1))
fi

build_parquet() {
	clang $CFLAGS src/parquet/buf.c src/parquet/thrift.c src/parquet/metadata.c \
		src/parquet/levels.c src/parquet/codec.c src/parquet/delta.c src/parquet/reader.c \
		test/fuzz/fuzz_parquet_reader.c -lzstd -lsnappy -lz -o "$out/fuzz_parquet_reader"
}

if build_parquet; then
	# libFuzzer writes new inputs into its first corpus directory: keep the seeds clean
	rm -rf "$out/corpus_parquet"
	mkdir -p "$out/corpus_parquet"
	cp test/fuzz/parquet_seeds/* "$out/corpus_parquet/"
	run_target fuzz_parquet_reader "$out/corpus_parquet"
else
	echo "fuzz_parquet_reader: build failed"
	failed=$((failed + 1))
fi

echo "fuzz: $passed passed, $failed failed"
[ "$failed" = 0 ]
