#!/usr/bin/env bash
# Run the whole anomstream test suite on a Debian 12 machine, installing what it needs.
#
#   sudo ./test.sh            # as root: installs packages, builds, installs, tests as $TEST_USER
#   ./test.sh --no-install    # skip apt/npm (packages already present)
#
# PostgreSQL refuses to run as root, so the server-side tests run as an unprivileged user
# (TEST_USER, default pgtest) who is given the source tree. Exit status 0 only if every stage
# passed; the last line is "N passed, M failed" counting stages.
set -uo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
TEST_USER=${TEST_USER:-pgtest}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
INSTALL=1
[ "${1:-}" = "--no-install" ] && INSTALL=0

. "$ROOT/scripts/lib.sh"

if [ "$INSTALL" = 1 ]; then
	install_packages || exit 1
	install_parquet_checker || exit 1
fi
ensure_test_user "$TEST_USER" || exit 1

passed=0
failed=0
failed_names=()
stage() {
	local name=$1
	shift
	echo "=== stage: $name"
	local t0=$SECONDS
	if "$@"; then
		echo "=== stage $name: ok ($((SECONDS - t0)) s)"
		passed=$((passed + 1))
	else
		echo "=== stage $name: FAILED ($((SECONDS - t0)) s)"
		failed=$((failed + 1))
		failed_names+=("$name")
	fi
}

build_and_install() {
	make -s PG_CONFIG="$PG_CONFIG" clean >/dev/null 2>&1
	make -s PG_CONFIG="$PG_CONFIG" EXTRA_CFLAGS="-Werror" &&
		make -s PG_CONFIG="$PG_CONFIG" install >/dev/null &&
		make -s -C src/web EXTRA_CFLAGS="-Werror" &&
		make -s -C test/tools &&
		chown -R "$TEST_USER": "$ROOT"
}

regress() {
	if ! runuser -u "$TEST_USER" -- make -s PG_CONFIG="$PG_CONFIG" installcheck TAP_TESTS= ; then
		cat regression.diffs 2>/dev/null | head -200
		return 1
	fi
}

tap() {
	if ! runuser -u "$TEST_USER" -- env PATH="$PATH" make -s PG_CONFIG="$PG_CONFIG" installcheck REGRESS= ; then
		for f in tmp_check/log/regress_log_*; do
			echo "----- $f"
			tail -60 "$f"
		done
		return 1
	fi
}

tools_selftest() {
	runuser -u "$TEST_USER" -- bash test/tools/selftest.sh
}

fuzz() {
	runuser -u "$TEST_USER" -- bash test/fuzz/run.sh "${FUZZ_SECONDS:-30}"
}

stage build build_and_install || true
if [ "$failed" = 0 ]; then
	stage regress regress
	[ -f test/tools/selftest.sh ] && stage tools tools_selftest
	stage tap tap
	[ -f test/fuzz/run.sh ] && stage fuzz fuzz
fi

echo
if [ "$failed" -gt 0 ]; then
	echo "failed stages: ${failed_names[*]}"
fi
echo "stages: $passed passed, $failed failed"
[ "$failed" = 0 ]
