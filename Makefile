# edusync: a PostgreSQL extension (PGXS).
#
#   make && make install            build and install (needs pg_config)
#   bash test/demo.sh               the README's first command
#   bash test/run-all.sh            the README's second command (all tests)

EXTENSION = edusync edusync_proxy
MODULE_big = edusync
OBJS = \
	src/edusync.o \
	src/api.o \
	src/validate.o \
	src/answer.o \
	src/store.o \
	src/forward.o \
	src/graph_client.o \
	src/token.o \
	src/worker.o \
	src/remote.o

DATA = sql/edusync--0.1.0.sql sql/edusync--0.1.0--0.2.0.sql sql/edusync--0.2.0.sql \
	sql/edusync_proxy--0.1.0.sql
# `make installcheck`: pg_regress (REGRESS, against the server PGHOST/PGPORT
# name), then prove on t/*.pl (TAP_TESTS; their clusters are their own).
REGRESS = create validate read privileges lifecycle trust
TAP_TESTS = 1
SHLIB_LINK += -lcurl
PG_CPPFLAGS += -Isrc
PG_CFLAGS += -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare

PG_CONFIG ?= $(shell ls /usr/lib/postgresql/15/bin/pg_config 2>/dev/null || command -v pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Our Perl modules (EdusyncTest.pm, FakeGraph.pm) live in test/; set after
# the include, whose Makefile.global empties PROVE_FLAGS.
PROVE_FLAGS = -I ./test
