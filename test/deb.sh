#!/usr/bin/env bash
# Build the Debian package postgresql-15-edusync with dpkg-buildpackage,
# install it with apt, check where its files went, and run every test
# (test/run-all.sh: pg_regress and TAP) against the installed package, not
# against a build tree.  Root on Debian 12: it installs packages, and the
# package into the system's PostgreSQL.
#
# The build happens in a copy of the source tree in a temporary folder, so
# the work tree gets no build products; the .deb is copied to
# $EDUSYNC_DEB_DIR (default: dist/ in the work tree, ignored by git).
# Exits non-zero on any failure.  The package stays installed (remove it
# with `apt-get purge postgresql-15-edusync`).

# The package installs into Debian's server, so test that one.
unset PG_BIN
source "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
	echo "test/deb.sh installs packages: run it as root" >&2
	exit 1
fi

DEB_DIR=${EDUSYNC_DEB_DIR:-$EDUSYNC_SRC/dist}
PACKAGE=postgresql-$PG_MAJOR-edusync
SECONDS=0

PACKAGES="$PACKAGES debhelper dpkg-dev build-essential postgresql-server-dev-all"
install_deps
make_workdir

# A copy of the sources: what git tracks plus new files it does not ignore
# (so uncommitted changes are packaged too), or, outside git, everything.
VERSION=$(dpkg-parsechangelog -l "$EDUSYNC_SRC/debian/changelog" -S Version)
SRC=$WORKDIR/build/edusync-${VERSION%-*}
mkdir -p "$SRC"
step "copying the sources to $SRC"
if git -C "$EDUSYNC_SRC" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	(cd "$EDUSYNC_SRC" && git ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do
			[ -e "$f" ] && printf '%s\0' "$f"	# skip files deleted but not committed
		done | tar --null -T - -cf -) | tar -xf - -C "$SRC"
else
	cp -a "$EDUSYNC_SRC/." "$SRC/"
	make -C "$SRC" -s PG_CONFIG="$PG_CONFIG" clean >/dev/null
fi

step "dpkg-buildpackage -us -uc -b (log: $WORKDIR/build.log)"
if ! (cd "$SRC" && dpkg-buildpackage -us -uc -b) >"$WORKDIR/build.log" 2>&1; then
	tail -n 60 "$WORKDIR/build.log" >&2
	echo "dpkg-buildpackage failed" >&2
	exit 1
fi
DEB=$WORKDIR/build/${PACKAGE}_${VERSION}_$(dpkg --print-architecture).deb
if [ ! -f "$DEB" ]; then
	echo "dpkg-buildpackage made no $(basename "$DEB"); it made:" >&2
	ls -l "$WORKDIR/build" >&2
	exit 1
fi
mkdir -p "$DEB_DIR"
cp "$DEB" "$DEB_DIR/"
step "built $DEB_DIR/$(basename "$DEB") ($(stat -c %s "$DEB") bytes)"

fail() {
	echo "test/deb.sh: $*" >&2
	exit 1
}

# The library must need libcurl through the package's dependencies
# (shlibs), not by luck of what is installed here.
depends=$(dpkg-deb -f "$DEB" Depends)
echo "Depends: $depends" >&2
case "$depends" in
*libcurl4*) ;;
*) fail "the package does not depend on libcurl4" ;;
esac
case "$depends" in
*"postgresql-$PG_MAJOR"*) ;;
*) fail "the package does not depend on postgresql-$PG_MAJOR" ;;
esac

# --reinstall: a package of the same version from an earlier run would
# otherwise be kept, and the tests would test it instead of this build.
step "apt-get install $(basename "$DEB")"
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --reinstall "$DEB" >/dev/null

# Where the files went: the server's library and extension folders, as
# pg_config names them; every file the Makefile's DATA names, and the
# script of the control file's default_version.
PKGLIBDIR=$($PG_CONFIG --pkglibdir)
EXTDIR=$($PG_CONFIG --sharedir)/extension
step "dpkg -L $PACKAGE"
dpkg -L "$PACKAGE" >"$WORKDIR/files"
grep -E '\.(so|control|sql)$' "$WORKDIR/files" >&2
# shellcheck disable=SC2016  # $(DATA) is for make
printf 'print-data:\n\t@echo $(DATA)\n' >"$WORKDIR/print-data.mk"
data=$(make -C "$SRC" -s --no-print-directory PG_CONFIG="$PG_CONFIG" \
	-f Makefile -f "$WORKDIR/print-data.mk" print-data)
default_version=$(sed -n "s/^default_version *= *'\(.*\)'.*/\1/p" "$SRC/edusync.control")
[ -n "$data" ] || fail "the Makefile names no DATA"
[ -n "$default_version" ] || fail "edusync.control has no default_version"
expected="$PKGLIBDIR/edusync.so $EXTDIR/edusync.control $EXTDIR/edusync--$default_version.sql"
for f in $data; do
	expected="$expected $EXTDIR/$(basename "$f")"
done
for f in $expected; do
	grep -qxF "$f" "$WORKDIR/files" || fail "the package has no $f"
	[ -f "$f" ] || fail "$f is in the package but not on disk"
done
for f in $data edusync.control; do
	cmp -s "$SRC/$f" "$EXTDIR/$(basename "$f")" ||
		fail "the installed $(basename "$f") differs from the sources"
done
dpkg --verify "$PACKAGE" || fail "the installed files differ from the package's"

# The suite against the installed package: nothing is built or installed
# (EDUSYNC_SKIP_BUILD=1), and the build products are removed first, so
# that the only edusync.so left is the package's.
step "removing the build tree's products"
rm -rf "$SRC/debian/$PACKAGE" "$SRC/debian/$PACKAGE-dbgsym" "$SRC/debian/.debhelper"
make -C "$SRC" -s PG_CONFIG="$PG_CONFIG" clean >/dev/null
if find "$SRC" -name 'edusync.so' | grep -q .; then
	fail "a built edusync.so is still in the build tree"
fi
step "test/run-all.sh against the installed package"
suite=0
EDUSYNC_SKIP_BUILD=1 PG_MAJOR=$PG_MAJOR bash "$SRC/test/run-all.sh" || suite=$?
dpkg --verify "$PACKAGE" || fail "the installed files changed during the tests"

step "done in $SECONDS s: $DEB_DIR/$(basename "$DEB")"
[ "$suite" -eq 0 ] || fail "the test suite failed against the installed package"
