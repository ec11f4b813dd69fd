#!/usr/bin/env bash
# The README's second command: every test, the PGXS way.  Installs what is
# needed, builds and installs edusync, then runs `make installcheck` once:
# pg_regress (REGRESS: sql/, expected/) against a throwaway cluster without
# shared_preload_libraries, then prove on t/*.pl (TAP_TESTS), whose
# clusters (edusync preloaded) and fake Graph (test/) are their own.
source "$(dirname "$0")/lib.sh"

install_deps
build_install
make_workdir

# The server and initdb refuse root, and pg_regress (results/) and the TAP
# tests (tmp_check/) write into the tree they run from: run make as the
# postgres user on a copy of the source tree that it owns.
TREE=$WORKDIR/tree
mkdir -p "$TREE"
(cd "$EDUSYNC_SRC" && tar --exclude=./.git --exclude=./results --exclude=./tmp_check \
	--exclude=./regression.diffs --exclude=./regression.out -cf - .) | (cd "$TREE" && tar -xf -)
chown -R postgres: "$TREE" 2>/dev/null || true

# pg_regress runs against a cluster without shared_preload_libraries, so
# that the refusals of forwarding without preloading are tested too.
start_cluster

step "make installcheck (pg_regress, then the TAP tests)"
LOG=$WORKDIR/installcheck.log
suite_failed=0
# (pipefail, set in lib.sh: the status is make's)
if ! (cd "$TREE" && as_postgres make -s PG_CONFIG="$PG_CONFIG" installcheck \
	PGHOST="$PGHOST" PGPORT="$PGPORT" PGUSER="$PGUSER") 2>&1 | tee "$LOG"; then
	suite_failed=1
fi

# One log: pg_regress's "... ok" and "... FAILED" (or "... failed") lines,
# and prove's subtests and test files.
passed=$(grep -c '\.\.\. ok' "$LOG" || true)
failed=$(grep -Ec '\.\.\. (FAILED|failed)' "$LOG" || true)
total=$(sed -n 's/.*Tests=\([0-9]*\).*/\1/p' "$LOG" | tail -n 1)
bad=$(sed -n 's/.*Failed \([0-9]*\)\/[0-9]* subtests.*/\1/p' "$LOG" | awk '{ s += $1 } END { print s + 0 }')
# a test file in prove's summary without a failed subtest died (no plan,
# a non-zero exit): one failure
died=$(grep -Ec '\(Wstat: .*Failed: 0\)' "$LOG" || true)
passed=$((passed + ${total:-0} - ${bad:-0}))
failed=$((failed + ${bad:-0} + died))

if [ "$suite_failed" -ne 0 ]; then
	if [ -f "$TREE/regression.diffs" ]; then
		echo "--- regression.diffs ---" >&2
		cat "$TREE/regression.diffs" >&2
	fi
	for f in "$TREE"/tmp_check/log/*; do
		[ -f "$f" ] || continue
		echo "--- $f (last lines) ---" >&2
		tail -n 40 "$f" >&2
	done
	if [ "$failed" -eq 0 ]; then
		failed=1	# a suite failed without a countable test (it died early)
	fi
fi

# Stop the pg_regress cluster here, so that the count is the last line (on
# failure lib.sh's trap would print the server log after it).
as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
unset PGDATA
if [ "$suite_failed" -ne 0 ]; then
	echo "--- last lines of the pg_regress server's log ---" >&2
	tail -n 30 "$WORKDIR/server.log" >&2
	rm -f "$WORKDIR/server.log"
fi
echo "edusync: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
