#!/usr/bin/env bash
# selftest.sh -- end-to-end self-test of anomstream's test tools.
#
# Builds test/tools, then checks anomstream-generate (determinism, shape,
# labels, unit strings), anomstream-mockbroker (commands, signals, bootstrap
# file) and anomstream-replay (cadence, envelope, log against what kcat reads
# back from the mock cluster, broker down/up and injected request errors,
# malformed-message injection, the real CSVs when given).
#
# Usage: test/tools/selftest.sh [--data DIR]
#   --data DIR  directory holding Streaming_Linux_process.reconstructed.csv and
#               Streaming_Linux_memory.reconstructed.csv (default
#               $ANOMSTREAM_DATA_DIR, else /work/shared/data if present); the
#               real-data checks are skipped when absent.  The data are only
#               read from there, never copied.
#
# Invariants: needs bash, make, gcc, librdkafka-dev, kcat, python3; runs in
# well under 60 s; every background process it starts is killed by the EXIT
# trap; the last stdout line is exactly "N passed, M failed" (also when a
# step outside the checks aborts the run, which counts as one failure); exit 0
# iff M = 0.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=$here/bin
data_dir=${ANOMSTREAM_DATA_DIR:-/work/shared/data}
while [ $# -gt 0 ]; do
  case $1 in
    --data) data_dir=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "selftest.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

work=$(mktemp -d "${TMPDIR:-/tmp}/anomstream-selftest.XXXXXX")
pids=()
summary_done=0
cleanup() {
  local rc=$?
  { exec 3>&-; } 2>/dev/null || true
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$work"
  if [ "$summary_done" -eq 0 ]; then
    # a step outside check() failed (set -e): count it and keep the summary line
    echo "# aborted (exit $rc)"
    echo "$passed passed, $((failed + 1)) failed"
    exit 1
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
ok()     { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $1"; }
# check NAME CMD...: runs CMD in this shell, output indented, pass iff exit 0
check() {
  local name=$1; shift
  local rc=0
  "$@" > "$work/check.out" 2>&1 || rc=$?
  sed 's/^/    /' "$work/check.out"
  if [ "$rc" -eq 0 ]; then ok "$name"; else not_ok "$name (exit $rc)"; fi
}
# wait_file FILE SECONDS
wait_file() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    [ -s "$1" ] && return 0
    sleep 0.1
  done
  return 1
}
# kcat_read BROKERS TOPIC OUT: every message as topic, partition, offset, key, value
kcat_read() {
  timeout 20 kcat -b "$1" -C -t "$2" -o beginning -e -q \
    -f '%t\t%p\t%o\t%k\t%s\n' >> "$3"
}
# print2msgs: --print output -> the readback format (partition -1, offsets per topic)
print2msgs() {
  awk -F'\t' 'BEGIN { OFS = "\t" } { print $1, -1, n[$1]++, $2, $3 }' "$1" > "$2"
}

gen=$bin/anomstream-generate
replay=$bin/anomstream-replay
mock=$bin/anomstream-mockbroker
rcheck=$here/replaycheck.py

# ---------------------------------------------------------------- build
check "build (make -C test/tools)" make -s -C "$here"

# ---------------------------------------------------------------- generator
"$gen" --stream process --rows 3000 --seed 42 > "$work/p.csv"
"$gen" --stream process --rows 3000 --seed 42 > "$work/p2.csv"
"$gen" --stream process --rows 3000 --seed 43 > "$work/p3.csv"
"$gen" --stream memory --rows 3000 --seed 42 > "$work/m.csv"
check "generate: same seed, same sha256" \
  test "$(sha256sum < "$work/p.csv")" = "$(sha256sum < "$work/p2.csv")"
check "generate: other seed, other bytes" \
  test "$(sha256sum < "$work/p.csv")" != "$(sha256sum < "$work/p3.csv")"
check "generate: headers as in the real files" bash -c '
  test "$(head -1 "$1")" = "sequence,machine,PID,TRUN,TSLPI,TSLPU,POLI,NICE,PRI,RTPR,CPUNR,Status,EXC,State,CPU,CMD" &&
  test "$(head -1 "$2")" = "sequence,machine,PID,MINFLT,MAJFLT,VSTEXT,VSIZE,RSIZE,VGROW,RGROW,MEM,CMD" &&
  test "$(wc -l < "$1")" -eq 15001' _ "$work/p.csv" "$work/m.csv"
check "generate: labels are the rule, attack rate 10-15 %, same rows as unlabelled" python3 - \
  "$gen" "$work" <<'EOF'
import csv, subprocess, sys
gen, work = sys.argv[1], sys.argv[2]
for stream in ("process", "memory"):
    args = [gen, "--stream", stream, "--rows", "3000", "--seed", "42"]
    if stream == "memory":
        args.append("--unit-strings")
    plain = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    lab = subprocess.run(args + ["--labels"], check=True, capture_output=True, text=True).stdout
    pl, ll = plain.splitlines(), lab.splitlines()
    assert len(pl) == len(ll)
    assert all(l.startswith(p + ",") for p, l in zip(pl[1:], ll[1:])), "labels change the rows"
    rows = list(csv.DictReader(ll))
    rate = sum(r["attack"] == "1" for r in rows) / len(rows)
    types = {r["type"] for r in rows}
    assert 0.10 <= rate <= 0.15, rate
    assert all((r["type"] == "normal") == (r["attack"] == "0") for r in rows)
    assert types <= {"normal", "ddos", "dos", "password", "injection", "scanning", "xss"}, types
    if stream == "memory":
        units = sum(1 for r in rows for k in ("MINFLT", "RSIZE") if r[k][-1:] in "KMG")
        assert units > 0, "no unit strings"
    # recompute the documented labelling rule (README) on reformatted values
    tools = {"nmap": "scanning", "masscan": "scanning", "nikto": "scanning",
             "hydra": "password", "medusa": "password", "john": "password",
             "sqlmap": "injection", "commix": "injection", "xsser": "xss",
             "xsstrike": "xss", "hping3": "dos", "slowhttptest": "dos",
             "goldeneye": "ddos", "t50": "ddos"}
    def num(v):
        mult = {"K": 1e3, "M": 1e6, "G": 1e9}.get(v[-1:], 1)
        return float(v[:-1] if v[-1:] in "KMG" else v) * mult
    for r in rows:
        if r["CMD"] in tools:
            want = ("1", tools[r["CMD"]])
        elif stream == "process" and r["State"] == "R" and float(r["CPU"]) >= 0.9 and int(r["TSLPI"]) >= 8:
            want = ("1", "ddos" if int(r["TSLPI"]) >= 16 else "dos")
        elif stream == "memory" and num(r["RGROW"]) >= 50000 and num(r["MINFLT"]) >= 20000:
            want = ("1", "ddos" if num(r["VGROW"]) >= 100000 else "dos")
        else:
            want = ("0", "normal")
        assert (r["attack"], r["type"]) == want, (r, want)
    print("%s: attack rate %.3f, types %s" % (stream, rate, ",".join(sorted(types))))
EOF

# ---------------------------------------------------------------- replay --print
"$replay" --print --process "$work/p.csv" --memory "$work/m.csv" --cycles 40 --speedup 0 \
  --start-ts 1604232000 --seed 5 --log "$work/print.log" -q > "$work/print.out"
print2msgs "$work/print.out" "$work/print.msgs"
check "replay --print: envelope and rows equal the log" "$rcheck" readback "$work/print.log" "$work/print.msgs"
check "replay --print: cadence 10-50 / 20-80 + 0-5 late, sequence order" "$rcheck" cadence "$work/print.log"
"$replay" --print --process "$work/p.csv" --memory "$work/m.csv" --cycles 40 --speedup 0 \
  --start-ts 1604232000 --seed 5 -q > "$work/print2.out"
check "replay --print: same seed, same bytes" cmp -s "$work/print.out" "$work/print2.out"
check "replay --print --ts-format iso --plain-rows" bash -c '
  "$1" --print --process "$2" --cycles 1 --speedup 0 --start-ts 1604232005 --ts-format iso --plain-rows -q |
  head -1 | cut -f3 | python3 -c "
import json, sys
e = json.load(sys.stdin)
assert e[\"ts\"] == \"2020-11-01T12:00:05Z\", e[\"ts\"]
assert isinstance(e[\"data\"][0], dict) and isinstance(e[\"data\"][0][\"PID\"], int)
print(\"ts\", e[\"ts\"], \"rows\", len(e[\"data\"]))"' _ "$replay" "$work/p.csv"
"$replay" --print --process "$work/p.csv" --memory "$work/m.csv" --cycles 20 --speedup 0 \
  --inject-bad 2 --log "$work/bad.log" -q > "$work/bad.out"
print2msgs "$work/bad.out" "$work/bad.msgs"
check "replay --inject-bad: every kind present and malformed as logged" bash -c '
  "$1" readback "$2" "$3" &&
  for k in broken-json missing-ts data-not-array bad-pid bad-unit; do
    grep -q "^BAD.*	$k	" "$2" || { echo "no $k"; exit 1; }
  done' _ "$rcheck" "$work/bad.log" "$work/bad.msgs"

# ---------------------------------------------------------------- mock broker
mkfifo "$work/cmd"
"$mock" --brokers 2 --partitions 4 --bootstrap-file "$work/boot" \
  < "$work/cmd" > "$work/mock.out" 2> "$work/mock.err" &
mock_pid=$!
pids+=("$mock_pid")
exec 3> "$work/cmd"
# mock_cmd CMD EXPECTED: send one command, wait for its answer line
nanswers=0
mock_cmd() {
  echo "$1" >&3
  nanswers=$((nanswers + 1))
  local i
  for ((i = 0; i < 100; i++)); do
    if [ "$(($(wc -l < "$work/mock.out") - 1))" -ge "$nanswers" ]; then
      local got
      got=$(sed -n "$((nanswers + 1))p" "$work/mock.out")
      [ "$got" = "$2" ] || { echo "$1: got '$got', want '$2'"; return 1; }
      return 0
    fi
    sleep 0.05
  done
  echo "$1: no answer"; return 1
}
if wait_file "$work/boot" 10; then ok "mockbroker: bootstrap file written"; else not_ok "mockbroker: bootstrap file written"; fi
boot=$(cat "$work/boot")
check "mockbroker: first stdout line is the bootstrap address" \
  test "$(head -1 "$work/mock.out")" = "$boot"
check "mockbroker: ping -> pong" mock_cmd ping pong
check "mockbroker: topic command" mock_cmd "topic process2 4" ok
check "mockbroker: topic command (memory2)" mock_cmd "topic memory2 4" ok
check "mockbroker: unknown command -> error" mock_cmd "frobnicate" \
  "error: unknown command 'frobnicate' (down, up, rtt, error, topic, ping, quit)"
check "mockbroker: bad broker id -> error" mock_cmd "down 7" "error: usage: down <broker_id 1..2>"
check "mockbroker: metadata lists 4 partitions per topic" bash -c '
  timeout 10 kcat -b "$1" -L -t process | grep -c "partition [0-3]," | grep -qx 4' _ "$boot"

# ---------------------------------------------------------------- replay -> Kafka -> kcat
check "replay: 3 process + 2 memory cycles delivered (exit 0)" \
  "$replay" --brokers "$boot" --process "$work/p.csv" --memory "$work/m.csv" \
  --cycles 3 --speedup 0 --seed 9 --log "$work/k.log" -q
: > "$work/k.msgs"
kcat_read "$boot" process "$work/k.msgs"
kcat_read "$boot" memory "$work/k.msgs"
check "kcat read-back equals the log (messages, rows, values)" "$rcheck" readback "$work/k.log" "$work/k.msgs"
check "read-back: 3 process cycles, 2 memory cycles" bash -c '
  test "$(grep -v "^#" "$1" | awk -F"\t" "\$1==\"process\"{print \$6}" | sort -u | wc -l)" -eq 3 &&
  test "$(grep -v "^#" "$1" | awk -F"\t" "\$1==\"memory\"{print \$6}" | sort -u | wc -l)" -eq 2' _ "$work/k.log"
check "read-back: cadence" "$rcheck" cadence "$work/k.log"

# broker down while producing, then up: everything still delivered once. The mock cluster
# picks each partition's leader at random, so the broker taken down is the leader of
# partition 0 of process2 (a fixed broker leads none of the 8 partitions in ~4 % of runs).
down_id=$(timeout 10 kcat -b "$boot" -L -t process2 | awk '$1 == "partition" && $2 == "0," { print $4; exit }' | tr -d ,)
check "mockbroker: leader of process2/0 is known ($down_id)" test -n "$down_id"
check "mockbroker: down $down_id" mock_cmd "down $down_id" ok
"$replay" --brokers "$boot" --process "$work/p.csv" --memory "$work/m.csv" \
  --process-topic process2 --memory-topic memory2 --cycles 4 --speedup 0 --seed 11 \
  --log "$work/d.log" -q 2> "$work/d.err" &
replay_pid=$!
pids+=("$replay_pid")
sleep 1.5
# the log is written from delivery reports: partitions led by the broker that is down wait
rows_while_down=$(grep -vc '^#' "$work/d.log" || true)
check "mockbroker: up $down_id" mock_cmd "up $down_id" ok
rc=0; wait "$replay_pid" || rc=$?
check "replay across down/up exits 0" test "$rc" -eq 0
: > "$work/d.msgs"
kcat_read "$boot" process2 "$work/d.msgs"
kcat_read "$boot" memory2 "$work/d.msgs"
check "down/up: read-back equals the log, no duplicates" "$rcheck" readback "$work/d.log" "$work/d.msgs"
check "down/up: broker $down_id's partitions were held back while it was down" bash -c '
  total=$(grep -vc "^#" "$1"); echo "rows acknowledged while down: $2 of $total"; test "$2" -lt "$total"' \
  _ "$work/d.log" "$rows_while_down"

# injected produce errors (retriable NOT_LEADER_FOR_PARTITION): idempotent retries
check "mockbroker: error 0 6 3" mock_cmd "error 0 6 3" ok
check "mockbroker: topic process3" mock_cmd "topic process3 4" ok
check "replay with injected produce errors exits 0" \
  "$replay" --brokers "$boot" --process "$work/p.csv" --process-topic process3 \
  --cycles 3 --speedup 0 --log "$work/e.log" -q
: > "$work/e.msgs"
kcat_read "$boot" process3 "$work/e.msgs"
check "error injection: read-back equals the log, no duplicates" "$rcheck" readback "$work/e.log" "$work/e.msgs"

# rate mode, malformed messages through Kafka
check "mockbroker: topic memory4" mock_cmd "topic memory4 4" ok
check "replay --rate 0 --inject-bad through Kafka" \
  "$replay" --brokers "$boot" --memory "$work/m.csv" --memory-topic memory4 \
  --rate 0 --max-rows 20000 --rows-per-message 40 --inject-bad 7 --log "$work/r.log" -q
: > "$work/r.msgs"
kcat_read "$boot" memory4 "$work/r.msgs"
check "rate mode: read-back equals the log, BAD offsets malformed" "$rcheck" readback "$work/r.log" "$work/r.msgs"

# the real CSVs through Kafka
rp=$data_dir/Streaming_Linux_process.reconstructed.csv
rm_=$data_dir/Streaming_Linux_memory.reconstructed.csv
have_real=0
if [ -r "$rp" ] && [ -r "$rm_" ]; then
  have_real=1
  check "mockbroker: topic process5" mock_cmd "topic process5 4" ok
  check "mockbroker: topic memory5" mock_cmd "topic memory5 4" ok
  check "real CSVs: replay 3 cycles through Kafka" \
    "$replay" --brokers "$boot" --process "$rp" --memory "$rm_" --process-topic process5 \
    --memory-topic memory5 --cycles 3 --speedup 0 --log "$work/rk.log" -q
  : > "$work/rk.msgs"
  kcat_read "$boot" process5 "$work/rk.msgs"
  kcat_read "$boot" memory5 "$work/rk.msgs"
  check "real CSVs: kcat read-back equals the log" "$rcheck" readback "$work/rk.log" "$work/rk.msgs"
fi

check "mockbroker: rtt 1 5" mock_cmd "rtt 1 5" ok
check "mockbroker: quit" mock_cmd quit ok
rc=0; wait "$mock_pid" || rc=$?
check "mockbroker: exits 0 after quit and removes the bootstrap file" \
  bash -c 'test "$1" -eq 0 && test ! -e "$2"' _ "$rc" "$work/boot"
exec 3>&-

# --no-stdin / --pidfile, stopped by SIGTERM
"$mock" --no-stdin --pidfile "$work/mb.pid" --bootstrap-file "$work/boot2" < /dev/null > /dev/null &
mock2=$!
pids+=("$mock2")
if wait_file "$work/boot2" 10 && [ "$(cat "$work/mb.pid")" = "$mock2" ]; then
  ok "mockbroker --no-stdin: pid file and bootstrap file"
else
  not_ok "mockbroker --no-stdin: pid file and bootstrap file"
fi
kill -TERM "$mock2"
rc=0; wait "$mock2" || rc=$?
check "mockbroker: SIGTERM -> exit 0, files removed" \
  bash -c 'test "$1" -eq 0 && test ! -e "$2" && test ! -e "$3"' _ "$rc" "$work/boot2" "$work/mb.pid"

# ---------------------------------------------------------------- real data
if [ "$have_real" -eq 1 ]; then
  "$replay" --print --process "$rp" --memory "$rm_" --cycles 30 --speedup 0 \
    --log "$work/real.log" -q > "$work/real.out"
  print2msgs "$work/real.out" "$work/real.msgs"
  check "real CSVs: envelope and rows equal the log" "$rcheck" readback "$work/real.log" "$work/real.msgs"
  check "real CSVs: cadence" "$rcheck" cadence "$work/real.log"
  check "real CSVs: process rows equal the CSV records" "$rcheck" csvmatch "$work/real.log" "$rp"
  check "real CSVs: memory rows equal the CSV records" "$rcheck" csvmatch "$work/real.log" "$rm_"
else
  echo "# real CSVs not found in $data_dir: skipped"
fi

summary_done=1
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
