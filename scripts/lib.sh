# Shared shell helpers for test.sh, demo.sh and the benchmarks (sourced, not run).

# Debian packages anomstream builds, tests and runs with.
ANOMSTREAM_PACKAGES="build-essential clang postgresql-15 postgresql-server-dev-15 \
libipc-run-perl librdkafka-dev libjson-c-dev libxgboost-dev libzstd-dev libsnappy-dev \
zlib1g-dev libpq-dev libmicrohttpd-dev kcat python3 python3-xgboost chromium"

# Install the packages (as root) if any is missing.
install_packages() {
	local missing=""
	for p in $ANOMSTREAM_PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
	done
	# node and npm (the Parquet reader checks): the machine's own if present, else Debian's
	command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
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

# Run a command as the unprivileged PostgreSQL user when we are root (PostgreSQL refuses
# root); as that user otherwise.
as_pg_user() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u "${TEST_USER:-pgtest}" -- "$@"
	else
		"$@"
	fi
}

# Start a throwaway cluster: throwaway_cluster_start DIR PORT "extra postgresql.conf lines".
# The server listens only on a Unix socket in DIR. Afterwards: cluster_psql ARGS...
throwaway_cluster_start() {
	CLUSTER_DIR=$1
	CLUSTER_PORT=$2
	CLUSTER_BIN=$("${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir)
	mkdir -p "$CLUSTER_DIR"
	chmod 755 "$CLUSTER_DIR"
	[ "$(id -u)" = 0 ] && chown "${TEST_USER:-pgtest}" "$CLUSTER_DIR"
	as_pg_user "$CLUSTER_BIN/initdb" -D "$CLUSTER_DIR/data" -A trust -U postgres -E UTF8 \
		--locale=C.UTF-8 -N >/dev/null || return 1
	cat >>"$CLUSTER_DIR/data/postgresql.conf" <<EOC
port = $CLUSTER_PORT
listen_addresses = ''
unix_socket_directories = '$CLUSTER_DIR'
shared_preload_libraries = 'anomstream'
anomstream.database = 'postgres'
$3
EOC
	as_pg_user "$CLUSTER_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w start >/dev/null
}

cluster_psql() {
	as_pg_user "$CLUSTER_BIN/psql" -X -q -h "$CLUSTER_DIR" -p "$CLUSTER_PORT" -U postgres -d postgres "$@"
}

throwaway_cluster_stop() {
	as_pg_user "$CLUSTER_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -m fast stop >/dev/null 2>&1 || true
}

# Install the npm packages of the Parquet reader checks (test/parquet: hyparquet, parquet-wasm,
# DuckDB) from their lockfile, when node_modules is missing.
install_parquet_checker() {
	local dir=${1:-test/parquet}
	[ -d "$dir/node_modules" ] && return 0
	# npm install, not npm ci: with this machine's omit-lockfile-registry-resolved setting
	# npm ci rejects a lock file without the optional platform packages of other systems
	npm install --prefix "$dir" --no-audit --no-fund >/dev/null
}

# Start a mock Kafka cluster in the background: mock_broker_start DIR PARTITIONS.
# Sets BROKER_PID and BOOT (its bootstrap address); mock_broker_stop ends it.
mock_broker_start() {
	rm -f "$1/bootstrap"
	"$ROOT/test/tools/bin/anomstream-mockbroker" --partitions "$2" --bootstrap-file "$1/bootstrap" \
		--no-stdin >"$1/broker.log" 2>&1 &
	BROKER_PID=$!
	for _ in $(seq 1 100); do [ -s "$1/bootstrap" ] && break; sleep 0.1; done
	BOOT=$(cat "$1/bootstrap")
}

mock_broker_stop() {
	if [ -n "${BROKER_PID:-}" ]; then
		kill "$BROKER_PID" 2>/dev/null || true
		wait "$BROKER_PID" 2>/dev/null || true
	fi
	BROKER_PID=
}
