#!/usr/bin/env bash
# Compile every src/*.c of edusync against the server headers of other
# PostgreSQL versions, without installing or running those servers.
#
# What it proves: the C code compiles, warning-free, against each version's
# headers (objects only).  What it does not prove: that the module links,
# loads or passes its tests on that version.  CI builds and tests 15 only.
#
# Usage:
#   bash test/compile-versions.sh TREE...
#   PGSRC_16=/opt/pgsrc/16 PGSRC_17=/opt/pgsrc/17 PGSRC_18=/opt/pgsrc/18 \
#       bash test/compile-versions.sh
# Each TREE is a PostgreSQL source tree that was configured and whose
# generated headers were made; nothing is fetched over the network.  Prints
# one line per tree, "<version>: OK" or "<version>: FAIL", the compiler's
# messages for a failure, and exits non-zero if any tree failed.
#
# How the trees were made (by hand; nothing here downloads or builds them):
#   1. a copy of PostgreSQL's release source (configure, src/, ...), e.g.
#      git --git-dir=<bare clone> archive <commit> | tar -x -C /opt/pgsrc/17
#   2. apt-get install -y bison flex    (perl and gcc were already there)
#   3. cd /opt/pgsrc/17 && ./configure --without-icu --without-readline \
#          --without-zlib && make -C src/backend generated-headers
# The server itself is not built.  The trees used, and their results, are
# listed in the README ("PostgreSQL versions").
#
# Flags: the tree's own CC, CPPFLAGS, CFLAGS and CFLAGS_SL (read from its
# src/Makefile.global, as PGXS would), then the Makefile's PG_CPPFLAGS and
# PG_CFLAGS, plus -Werror so that a warning fails the version.
set -u

here=$(cd "$(dirname "$0")/.." && pwd)

trees=("$@")
if [ ${#trees[@]} -eq 0 ]; then
	for v in PGSRC_13 PGSRC_14 PGSRC_15 PGSRC_16 PGSRC_17 PGSRC_18 PGSRC_19; do
		if [ -n "${!v:-}" ]; then
			trees+=("${!v}")
		fi
	done
fi
if [ ${#trees[@]} -eq 0 ]; then
	echo "usage: $0 TREE... (or set PGSRC_16=... PGSRC_17=... PGSRC_18=...)" >&2
	exit 2
fi

# The project's extra flags, taken from the Makefile so they cannot drift.
pg_cflags=$(sed -n 's/^PG_CFLAGS *+= *//p' "$here/Makefile" | tr '\n' ' ')
extversion=$(sed -n 's/^EXTVERSION *= *//p' "$here/Makefile")
# PG_CPPFLAGS as the shell reads them (quotes kept), $(EXTVERSION) expanded
eval "pg_cppflags=($(sed -n 's/^PG_CPPFLAGS *+= *//p' "$here/Makefile" |
	sed "s/\$(EXTVERSION)/$extversion/g" | tr '\n' ' '))"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

any_failed=0
for tree in "${trees[@]}"; do
	if ! tree_abs=$(cd "$tree" 2>/dev/null && pwd); then
		echo "$tree: FAIL (no such directory)"
		any_failed=1
		continue
	fi
	tree=$tree_abs
	if [ ! -f "$tree/src/Makefile.global" ] || [ ! -f "$tree/src/include/pg_config.h" ]; then
		echo "$tree: FAIL (not configured: no src/Makefile.global or src/include/pg_config.h)"
		any_failed=1
		continue
	fi
	version=$(sed -n 's/^#define PG_VERSION "\(.*\)"$/\1/p' "$tree/src/include/pg_config.h")

	# Ask the tree's Makefile.global for its compiler and flags.
	cat >"$tmp/show.mk" <<EOF
top_builddir := $tree
include \$(top_builddir)/src/Makefile.global
show:
	@echo "\$(CC)"
	@echo "\$(CPPFLAGS)"
	@echo "\$(CFLAGS) \$(CFLAGS_SL)"
EOF
	if ! make -s --no-print-directory -f "$tmp/show.mk" show >"$tmp/flags" 2>"$tmp/flags.err"; then
		echo "$version ($tree): FAIL (cannot read its Makefile.global)"
		cat "$tmp/flags.err"
		any_failed=1
		continue
	fi
	cc=$(sed -n 1p "$tmp/flags")
	cppflags=$(sed -n 2p "$tmp/flags")
	cflags=$(sed -n 3p "$tmp/flags")

	ok=1
	: >"$tmp/log"
	for src in "$here"/src/*.c; do
		obj="$tmp/$(basename "$src" .c).o"
		# shellcheck disable=SC2086 # the flag strings are word lists
		if ! (cd "$here" && $cc "${pg_cppflags[@]}" -I. -I"$tree/src/include" $cppflags \
			$cflags $pg_cflags -Werror -c "$src" -o "$obj") >>"$tmp/log" 2>&1; then
			ok=0
		fi
	done
	# A warning that -Werror did not turn into an error still counts.
	if grep -q 'warning:' "$tmp/log"; then
		ok=0
	fi
	nfiles=$(ls "$here"/src/*.c | wc -l)
	if [ $ok -eq 1 ]; then
		echo "$version ($tree): OK ($nfiles files)"
	else
		echo "$version ($tree): FAIL"
		sed 's/^/    /' "$tmp/log"
		any_failed=1
	fi
	rm -f "$tmp"/*.o
done
exit $any_failed
