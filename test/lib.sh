# test/lib.sh: shared by test/demo.sh and test/run-all.sh (sourced, not run).
#
# Installs what edusync needs from Debian's packages, builds and installs
# the extension, and runs throwaway clusters as the postgres user (the
# server refuses to run as root) in a temporary folder on a free port,
# stopping them on exit, also when something fails.

set -euo pipefail

EDUSYNC_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_MAJOR=${PG_MAJOR:-15}
# PG_BIN may name another installation (a private copy of the server's
# folders, for example), else Debian's.
PG_BIN=${PG_BIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
PG_CONFIG=$PG_BIN/pg_config
PACKAGES="postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-$PG_MAJOR-plproxy
	libcurl4-openssl-dev libipc-run-perl perl python3 python3-psycopg make gcc ca-certificates"

# Run a step with a heading, so a failure says where it happened.
step() {
	echo "==> $*" >&2
}

# Install the build and test dependencies (root only; others must have them).
install_deps() {
	if [ "$(id -u)" -ne 0 ]; then
		step "not root: assuming these are installed: $(echo $PACKAGES)"
		return
	fi
	step "installing packages: $(echo $PACKAGES)"
	export DEBIAN_FRONTEND=noninteractive
	# Wait for another apt or dpkg run (up to 10 minutes) rather than fail.
	apt-get -o DPkg::Lock::Timeout=600 update -qq
	# shellcheck disable=SC2086
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
		$PACKAGES >/dev/null
}

# Build and install the extension into the server's folders; with
# EDUSYNC_SKIP_BUILD=1, test what is installed there already (the Debian
# package: test/deb.sh) and build nothing.
build_install() {
	if [ "${EDUSYNC_SKIP_BUILD:-0}" = 1 ]; then
		step "EDUSYNC_SKIP_BUILD=1: using the edusync installed in $($PG_CONFIG --pkglibdir)"
		return
	fi
	step "building and installing edusync"
	make -C "$EDUSYNC_SRC" -s PG_CONFIG="$PG_CONFIG" >/dev/null
	make -C "$EDUSYNC_SRC" -s PG_CONFIG="$PG_CONFIG" install >/dev/null
}

# A TCP port nobody listens on now.
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A temporary folder the postgres user owns; removed on exit.
make_workdir() {
	WORKDIR=$(mktemp -d /tmp/edusync.XXXXXX)
	chown postgres: "$WORKDIR" 2>/dev/null || true
	chmod 755 "$WORKDIR"
}

# Run a command as the postgres user when root, else as ourselves; from
# the work folder unless the caller is already below it (postgres may not
# be able to enter the caller's folder).
as_postgres() (
	case "$PWD" in
	"$WORKDIR"*) ;;
	*) cd "$WORKDIR" ;;
	esac
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
)

# Create and start a cluster in DIR listening on PORT (socket in $WORKDIR,
# log in LOG); extra postgresql.conf lines come after the three arguments.
init_start_cluster() {
	local dir=$1 port=$2 log=$3 line
	shift 3
	as_postgres "$PG_BIN/initdb" -D "$dir" -U postgres -A trust -E UTF8 \
		--locale=C --no-sync >/dev/null
	{
		echo "port = $port"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$WORKDIR'"
		echo "fsync = off"
		for line in "$@"; do echo "$line"; done
	} >>"$dir/postgresql.conf"
	as_postgres "$PG_BIN/pg_ctl" -D "$dir" -l "$log" -w start >/dev/null
}

# Start a throwaway cluster in $WORKDIR/data; extra postgresql.conf lines
# come as arguments.  Sets PGHOST, PGPORT, PGUSER for the clients.
start_cluster() {
	PGDATA=$WORKDIR/data
	PGPORT=$(free_port)
	step "starting a throwaway cluster on port $PGPORT in $PGDATA"
	init_start_cluster "$PGDATA" "$PGPORT" "$WORKDIR/server.log" "$@"
	export PGHOST=$WORKDIR PGPORT PGUSER=postgres PGDATABASE=postgres
}

# Stop the cluster (if any) and remove the work folder.
cleanup() {
	local rc=$?
	if [ -n "${PGDATA:-}" ] && [ -f "$PGDATA/postmaster.pid" ]; then
		as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
	fi
	if [ $rc -ne 0 ] && [ -f "${WORKDIR:-}/server.log" ]; then
		echo "--- last lines of the server log ---" >&2
		tail -n 30 "$WORKDIR/server.log" >&2
	fi
	[ -n "${WORKDIR:-}" ] && rm -rf "$WORKDIR"
	exit $rc
}
trap cleanup EXIT
