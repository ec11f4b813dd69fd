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

# pg_regress runs against a cluster without shared_preload_libraries, so
# that the refusals of forwarding without preloading are tested too.
start_cluster
step "pg_regress"
if make -C "$EDUSYNC_SRC" -s PG_CONFIG="$PG_CONFIG" installcheck \
	PGHOST="$PGHOST" PGPORT="$PGPORT" PGUSER=postgres; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
	cat "$EDUSYNC_SRC/regression.diffs" >&2 || true
fi
as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
unset PGDATA

# TAP: PostgreSQL::Test::Cluster runs initdb and postgres itself, so prove
# runs as the postgres user, on a copy of the tests it can read.
step "TAP tests"
mkdir -p "$WORKDIR/tap"
cp -r "$EDUSYNC_SRC/t" "$EDUSYNC_SRC/test" "$WORKDIR/tap/"
chown -R postgres: "$WORKDIR/tap" 2>/dev/null || true
if (cd "$WORKDIR/tap" && as_postgres env \
	PATH="$PG_BIN:$PATH" \
	PERL5LIB="$($PG_CONFIG --pgxs | xargs dirname)/../test/perl:$WORKDIR/tap/test" \
	TESTDIR="$WORKDIR/tap" \
	PG_REGRESS="$($PG_CONFIG --pgxs | xargs dirname)/../test/regress/pg_regress" \
	EDUSYNC_SRCDIR="$WORKDIR/tap" \
	prove ${PROVE_FLAGS:-} t/*.pl); then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
	for f in "$WORKDIR"/tap/tmp_check/log/*; do
		echo "--- $f (last lines) ---" >&2
		tail -n 40 "$f" >&2
	done
fi

echo "test suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
