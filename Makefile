# edusync: a PostgreSQL extension (PGXS).
#
#   make && make install            build and install (needs pg_config)
#   bash test/demo.sh               the README's first command
#   bash test/run-all.sh            the README's second command (all tests)

EXTENSION = edusync edusync_proxy
# The version of the library and of its SQL: edusync.control's
# default_version must say the same (checked below), the install script is
# sql/edusync--$(EXTVERSION).sql, and the library reports it in
# edusync.version() and its User-Agent.
EXTVERSION = 0.2.0
MODULE_big = edusync
OBJS = \
	src/edusync.o \
	src/api.o \
	src/validate.o \
	src/answer.o \
	src/store.o \
	src/row_insert.o \
	src/skiptoken.o \
	src/forward.o \
	src/outbox.o \
	src/policy.o \
	src/batch.o \
	src/remote.o \
	src/graph_url.o \
	src/graph_client.o \
	src/token.o \
	src/registry.o \
	src/recent.o \
	src/launcher.o \
	src/worker.o

DATA = sql/edusync--0.1.0.sql sql/edusync--0.1.0--0.2.0.sql sql/edusync--0.2.0.sql \
	sql/edusync_proxy--0.1.0.sql
# `make installcheck`: pg_regress (REGRESS, against the server PGHOST/PGPORT
# name), then prove on t/*.pl (TAP_TESTS; their clusters are their own).
REGRESS = create validate read privileges lifecycle trust bulk keyset storage
TAP_TESTS = 1
SHLIB_LINK += -lcurl
PG_CPPFLAGS += -Isrc -DEDUSYNC_VERSION='"$(EXTVERSION)"'
# Only the entry points the server looks up are exported: PGDLLEXPORT
# (src/compat.h) marks them; PostgreSQL 16+ builds extensions so itself.
PG_CFLAGS += -fvisibility=hidden
PG_CFLAGS += -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare

PG_CONFIG ?= $(shell ls /usr/lib/postgresql/15/bin/pg_config 2>/dev/null || command -v pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Our Perl modules (EdusyncTest.pm, FakeGraph.pm) live in test/; set after
# the include, whose Makefile.global empties PROVE_FLAGS.
PROVE_FLAGS = -I ./test

# The control file and the install script follow EXTVERSION.
CONTROL_VERSION := $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" edusync.control)
ifneq ($(CONTROL_VERSION),$(EXTVERSION))
$(error edusync.control says default_version $(CONTROL_VERSION), the Makefile EXTVERSION $(EXTVERSION))
endif
ifeq ($(wildcard sql/edusync--$(EXTVERSION).sql),)
$(error sql/edusync--$(EXTVERSION).sql is missing)
endif
