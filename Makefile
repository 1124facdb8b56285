# anomstream: PGXS build.
#
# The extension's install script is assembled from sql/install/*.sql (one file per stage of
# the data flow, concatenated in name order); sql/*.sql at the top level are pg_regress inputs.
# Tests: `make installcheck` runs pg_regress (own preloaded temp instance), then the TAP tests
# under test/t. The full suite, with its test tools and fuzzers, is ./test.sh.
#
# libxgboost is not linked: src/score/xgb.c dlopen()s it in the first backend that scores
# (never in the postmaster). models/anomstream_*_default.json are the demo models that
# CREATE EXTENSION loads from the extension directory.

EXTENSION    = anomstream
EXTVERSION   = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" anomstream.control)
MODULE_big   = anomstream
PGFILEDESC   = "anomstream - streaming anomaly detection inside PostgreSQL"

SRCS         = $(sort $(wildcard src/*.c src/*/*.c))
OBJS         = $(SRCS:.c=.o)

DATA_built   = $(EXTENSION)--$(EXTVERSION).sql
DATA         = $(wildcard sql/$(EXTENSION)--*--*.sql) $(wildcard models/anomstream_*_default.json)

PG_CPPFLAGS  = -Isrc -DANOMSTREAM_VERSION=\"$(EXTVERSION)\"
PG_CFLAGS    = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare $(EXTRA_CFLAGS)
SHLIB_LINK   = -lrdkafka -lzstd -lsnappy -lz -lpthread -lm

REGRESS      = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --temp-instance=./tmp_check_regress --temp-config=./test/regress.conf
TAP_TESTS    = 1
PROVE_TESTS  = $(or $(TAP),$(sort $(wildcard test/t/*.pl)))
EXTRA_CLEAN  = tmp_check_regress $(EXTENSION)--$(EXTVERSION).sql

PG_CONFIG   ?= pg_config
PGXS        := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# our TAP helpers (set after pgxs, which defines PROVE_FLAGS)
PROVE_FLAGS += -I test/perl

$(EXTENSION)--$(EXTVERSION).sql: $(sort $(wildcard sql/install/*.sql))
	cat $^ > $@

# Every object depends on every header: coarse, but a changed struct never leaves a stale object.
$(OBJS): $(wildcard src/*.h src/*/*.h)
