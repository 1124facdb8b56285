# Shared shell helpers for test.sh, demo.sh and the benchmarks (sourced, not run).

# Debian packages anomstream builds, tests and runs with.
ANOMSTREAM_PACKAGES="build-essential clang postgresql-15 postgresql-server-dev-15 \
libipc-run-perl librdkafka-dev libjson-c-dev libxgboost-dev libzstd-dev libsnappy-dev \
zlib1g-dev libpq-dev libmicrohttpd-dev kcat python3 python3-xgboost nodejs npm chromium"

# Install the packages (as root) if any is missing.
install_packages() {
	local missing=""
	for p in $ANOMSTREAM_PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	if [ "$(id -u)" != 0 ]; then
		echo "missing packages:$missing (run as root to install them)" >&2
		return 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq && apt-get install -y -qq $missing >/dev/null
}

# Create the unprivileged user PostgreSQL runs as.
ensure_test_user() {
	local u=$1
	if [ "$(id -u)" != 0 ]; then
		return 0
	fi
	id "$u" >/dev/null 2>&1 || useradd -m -s /bin/bash "$u"
}

# Install the npm packages of the Parquet reader checks (test/parquet: hyparquet, parquet-wasm,
# DuckDB) from their lockfile, when node_modules is missing.
install_parquet_checker() {
	local dir=${1:-test/parquet}
	[ -d "$dir/node_modules" ] && return 0
	npm ci --prefix "$dir" --no-audit --no-fund >/dev/null
}
