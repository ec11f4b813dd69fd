#!/usr/bin/env bash
# bench/proxy.sh: creates per second through edusync_proxy (PL/Proxy, two
# shards) against direct calls to one shard, in the same run.  Three
# throwaway clusters on this machine: shard0, shard1 (edusync) and proxy
# (edusync_proxy, partitions p0 = shard0, p1 = shard1).  Rounds alternate
# proxy and direct so that machine noise falls on both alike.
#
#   bash bench/proxy.sh [seconds-per-run] [rounds] [clients]
#
# Writes bench/proxy_results.md (median and spread of each, and the ratio).
# All clusters share this machine's cores: the figure is the proxy's cost
# per call, not what two shard servers on their own machines would give.
source "$(dirname "$0")/../test/lib.sh"

SECONDS_PER_RUN=${1:-10}
ROUNDS=${2:-5}
CLIENTS=${3:-4}
BENCH=$EDUSYNC_SRC/bench
PROFILES=64

install_deps
build_install
make_workdir

# Start cluster $1 in $WORKDIR/$1 on a free port; prints the port.
start_named() {
	local name=$1 port
	port=$(free_port)
	init_start_cluster "$WORKDIR/$name" "$port" "$WORKDIR/$name.log" \
		"synchronous_commit = off" "max_connections = 50"
	echo "$port"
}

# Stop the three clusters, then lib.sh's cleanup (which removes the folder).
stop_all() {
	local rc=$?
	for name in shard0 shard1 proxy; do
		if [ -f "$WORKDIR/$name/postmaster.pid" ]; then
			as_postgres "$PG_BIN/pg_ctl" -D "$WORKDIR/$name" -m fast -w stop >/dev/null 2>&1 || true
		fi
	done
	(exit $rc)
	cleanup
}
trap stop_all EXIT

step "starting shard0, shard1 and proxy in $WORKDIR"
SHARD0=$(start_named shard0)
SHARD1=$(start_named shard1)
PROXY=$(start_named proxy)
export PGHOST=$WORKDIR PGUSER=postgres PGDATABASE=postgres
sql() { PGOPTIONS='-c client_min_messages=warning' "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -p "$@"; }

sql "$SHARD0" -c 'CREATE EXTENSION edusync'
sql "$SHARD1" -c 'CREATE EXTENSION edusync'
sql "$PROXY" <<EOF
CREATE EXTENSION edusync_proxy CASCADE;
CREATE SERVER edusync FOREIGN DATA WRAPPER plproxy OPTIONS (
	p0 'host=$WORKDIR port=$SHARD0 dbname=postgres',
	p1 'host=$WORKDIR port=$SHARD1 dbname=postgres');
CREATE USER MAPPING FOR PUBLIC SERVER edusync;
-- profiles through the proxy: each lands on the shard its hash names
SELECT count(edusync.create_sync_profile('bench-' || g, 'bench ' || g))
FROM generate_series(0, $PROFILES - 1) g;
EOF
# the direct runs: as many profiles, all on shard0
sql "$SHARD0" -c "INSERT INTO edusync.sync_profiles
	SELECT 'direct-' || g, 'direct ' || g FROM generate_series(0, $PROFILES - 1) g"
step "profiles per shard: shard0 $(sql "$SHARD0" -c "SELECT count(*) FROM edusync.sync_profiles WHERE id LIKE 'bench-%'"), shard1 $(sql "$SHARD1" -c 'SELECT count(*) FROM edusync.sync_profiles')"

# One script for both: the typed create of bench/create_typed.sql, on a random profile.
for mode in proxy direct; do
	prefix=bench-
	[ "$mode" = direct ] && prefix=direct-
	cat >"$WORKDIR/$mode.sql" <<EOF
\\set n random(0, $((PROFILES - 1)))
SELECT edusync.create_sync_error('$prefix' || :n, 'Student', 'UnsynchronizableChange',
	'Student cannot be updated because the source data changed its key.',
	'richard.2wilson@testschool.edu', 'richard.2wilson', '2017-07-05T00:52:45Z');
EOF
done
chmod 644 "$WORKDIR"/*.sql

declare -A runs
for round in $(seq 1 "$ROUNDS"); do
	# alternate which goes first, round by round
	order="proxy direct"
	[ $((round % 2)) -eq 0 ] && order="direct proxy"
	for mode in $order; do
		for port in "$SHARD0" "$SHARD1"; do
			sql "$port" -c 'TRUNCATE edusync.sync_errors CASCADE' -c 'CHECKPOINT'
		done
		port=$PROXY
		[ "$mode" = direct ] && port=$SHARD0
		tps=$("$PG_BIN/pgbench" -n -M prepared -p "$port" -c "$CLIENTS" -j "$CLIENTS" \
			-T "$SECONDS_PER_RUN" -f "$WORKDIR/$mode.sql" 2>"$WORKDIR/pgbench.err" |
			sed -n 's/^tps = \([0-9.]*\).*/\1/p')
		if [ -z "$tps" ]; then
			cat "$WORKDIR/pgbench.err" >&2
			exit 1
		fi
		step "round $round: $mode: $tps creates/s"
		runs[$mode]="${runs[$mode]:-} $tps"
	done
done

python3 - "$ROUNDS" "$SECONDS_PER_RUN" "$CLIENTS" "${runs[proxy]}" "${runs[direct]}" \
	"$("$PG_BIN/postgres" --version | awk '{print $3}')" "$(nproc)" \
	"$(sql "$PROXY" -c "SELECT extversion FROM pg_extension WHERE extname = 'plproxy'")" <<'EOF' | tee "$BENCH/proxy_results.md"
import statistics, sys, time
rounds, secs, clients = sys.argv[1:4]
proxy = [float(x) for x in sys.argv[4].split()]
direct = [float(x) for x in sys.argv[5].split()]
pg, cores, plproxy = sys.argv[6:9]
ratios = [p / d for p, d in zip(proxy, direct)]
print("# create_sync_error through edusync_proxy (2 shards) vs direct to one shard")
print()
print(f"{time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}, PostgreSQL {pg}, PL/Proxy {plproxy}, "
      f"{cores} cores shared by the proxy and both shards,")
print(f"{rounds} rounds x {secs}s each, alternating, {clients} clients, pgbench -M prepared, "
      "typed create_sync_error on 64 random profiles, forward = off, synchronous_commit = off.")
print()
print("| target | median creates/s | min | max | runs |")
print("|---|---:|---:|---:|---|")
for name, xs in (("proxy → 2 shards", proxy), ("direct → 1 shard", direct)):
    print(f"| {name} | {statistics.median(xs):.0f} | {min(xs):.0f} | {max(xs):.0f} | "
          + ", ".join(f"{x:.0f}" for x in xs) + " |")
print()
print(f"Ratio proxy / direct: median of the rounds {statistics.median(ratios):.2f} "
      f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)}); "
      f"ratio of the medians {statistics.median(proxy) / statistics.median(direct):.2f}.")
EOF
