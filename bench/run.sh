#!/usr/bin/env bash
# bench/run.sh: throughput of create_sync_error against a bare INSERT of the
# same row, measured in the same run on a throwaway cluster.  Rounds
# alternate the scripts so that machine noise falls on all of them alike.
#
#   bash bench/run.sh [seconds-per-run] [rounds] [clients]
#
# Writes bench/results.md (a table of tps and ratios to the baseline).
source "$(dirname "$0")/../test/lib.sh"

SECONDS_PER_RUN=${1:-10}
ROUNDS=${2:-3}
CLIENTS=${3:-2}
BENCH=$EDUSYNC_SRC/bench
OUT=$BENCH


install_deps
build_install
make_workdir
start_cluster "shared_preload_libraries = 'edusync'" "synchronous_commit = off"
"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -f "$BENCH/setup.sql"
cp "$BENCH"/*.sql "$WORKDIR/"

declare -A total
scripts="bare_insert create_json create_typed create_unpinned"
for round in $(seq 1 "$ROUNDS"); do
	for s in $scripts; do
		"$PG_BIN/psql" -X -q -c "TRUNCATE bench.plain_errors, edusync.sync_errors CASCADE; CHECKPOINT"
		tps=$("$PG_BIN/pgbench" -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -T "$SECONDS_PER_RUN" \
			-f "$WORKDIR/$s.sql" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
		step "round $round: $s: $tps tps"
		total[$s]=$(python3 -c "print(${total[$s]:-0} + $tps)")
	done
done

{
	echo "# create_sync_error throughput vs a bare INSERT"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%MZ), PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}'), $(nproc) cores,"
	echo "$ROUNDS rounds x ${SECONDS_PER_RUN}s per script, $CLIENTS clients, synchronous_commit = off."
	echo
	echo "| script | mean tps | ratio to bare INSERT |"
	echo "|---|---:|---:|"
	base=$(python3 -c "print(${total[bare_insert]} / $ROUNDS)")
	for s in $scripts; do
		python3 -c "m = ${total[$s]} / $ROUNDS; print('| $s | %.0f | %.2f |' % (m, m / $base))"
	done
} | tee "$OUT/results.md"
