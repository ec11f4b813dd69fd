#!/usr/bin/env bash
# The README's second command: every test.  pg_regress (sql/, expected/)
# against a throwaway cluster, then the TAP tests (t/), which start their
# own clusters (with edusync preloaded) and the fake Graph (test/).
source "$(dirname "$0")/lib.sh"

install_deps
build_install
make_workdir

passed=0
failed=0

# Count pg_regress's "... ok" and "... FAILED" lines, and prove's subtests.
count_regress() {
	passed=$((passed + $(grep -c '\.\.\. ok' "$1" || true)))
	failed=$((failed + $(grep -c '\.\.\. FAILED' "$1" || true)))
}
count_prove() {
	local total bad
	total=$(sed -n 's/.*Tests=\([0-9]*\).*/\1/p' "$1" | tail -n 1)
	bad=$(sed -n 's/.*Failed \([0-9]*\)\/[0-9]* subtests.*/\1/p' "$1" | awk '{ s += $1 } END { print s + 0 }')
	passed=$((passed + ${total:-0} - ${bad:-0}))
	failed=$((failed + ${bad:-0}))
}
suite_failed=0

# pg_regress runs against a cluster without shared_preload_libraries, so
# that the refusals of forwarding without preloading are tested too.
start_cluster
step "pg_regress"
if ! make -C "$EDUSYNC_SRC" -s PG_CONFIG="$PG_CONFIG" installcheck \
	PGHOST="$PGHOST" PGPORT="$PGPORT" PGUSER=postgres 2>&1 | tee "$WORKDIR/regress.log"; then
	suite_failed=1
	cat "$EDUSYNC_SRC/regression.diffs" >&2 || true
fi
count_regress "$WORKDIR/regress.log"
as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
unset PGDATA

# TAP: PostgreSQL::Test::Cluster runs initdb and postgres itself, so prove
# runs as the postgres user, on a copy of the tests it can read.
step "TAP tests"
mkdir -p "$WORKDIR/tap"
cp -r "$EDUSYNC_SRC/t" "$EDUSYNC_SRC/test" "$EDUSYNC_SRC/examples" "$WORKDIR/tap/"
chown -R postgres: "$WORKDIR/tap" 2>/dev/null || true
if (cd "$WORKDIR/tap" && as_postgres env \
	PATH="$PG_BIN:$PATH" \
	PERL5LIB="$($PG_CONFIG --pgxs | xargs dirname)/../test/perl:$WORKDIR/tap/test" \
	TESTDIR="$WORKDIR/tap" \
	PG_REGRESS="$($PG_CONFIG --pgxs | xargs dirname)/../test/regress/pg_regress" \
	EDUSYNC_SRCDIR="$WORKDIR/tap" \
	prove ${PROVE_FLAGS:-} t/*.pl) 2>&1 | tee "$WORKDIR/prove.log"; then
	:
else
	suite_failed=1
	for f in "$WORKDIR"/tap/tmp_check/log/*; do
		echo "--- $f (last lines) ---" >&2
		tail -n 40 "$f" >&2
	done
fi

count_prove "$WORKDIR/prove.log"
if [ "$suite_failed" -ne 0 ] && [ "$failed" -eq 0 ]; then
	failed=1	# a suite failed without a countable test (it died early)
fi
echo "edusync: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
