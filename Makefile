# healthimaging: build the C core, run the specs, run the demo.
#
# Knobs (override on the command line or in the environment):
#   LUA_VERSION  Lua version the module is built for            (5.4)
#   LUA          interpreter used for specs, CLI and demo       (lua$(LUA_VERSION))
#   LUA_INCDIR   Lua headers                                    (from pkg-config)
#   PREFIX       install root                                   (/usr/local)
#   CC, CFLAGS   compiler and flags; -Werror is on so CI fails on any warning
#   BUILD        where healthimaging/core.so is written          (build)
#   PYTHON       Debian's python3, which sees python3-pydicom     (/usr/bin/python3)
LUA_VERSION ?= 5.4
LUA ?= lua$(LUA_VERSION)
PKG_CONFIG ?= pkg-config
LUA_INCDIR ?= $(shell $(PKG_CONFIG) --variable=includedir lua$(LUA_VERSION) 2>/dev/null)/lua$(LUA_VERSION)
PREFIX ?= /usr/local
LUA_LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
LUA_SHAREDIR ?= $(PREFIX)/share/lua/$(LUA_VERSION)
BUILD ?= build
PYTHON ?= /usr/bin/python3
CC ?= cc
# Nothing run from here asks the EC2 instance metadata service at
# 169.254.169.254 when it finds no credentials: the IMDS specs point
# AWS_EC2_METADATA_SERVICE_ENDPOINT at a loopback stand-in instead.
export AWS_EC2_METADATA_DISABLED = true

# Recipes that pipe into tee must still fail when the runner fails.
SHELL = /bin/bash
.SHELLFLAGS = -o pipefail -c

WARN = -Wall -Wextra -Werror -pedantic -Wshadow -Wpointer-arith -Wcast-qual \
       -Wwrite-strings -Wstrict-prototypes -Wmissing-prototypes -Wundef \
       -Wdeclaration-after-statement
CFLAGS ?= -O2 -g
ALL_CFLAGS = -std=c99 -fPIC -fvisibility=hidden $(WARN) $(CFLAGS) -I$(LUA_INCDIR) \
             $(shell $(PKG_CONFIG) --cflags libcurl openssl)
LIBS = $(shell $(PKG_CONFIG) --libs libcurl libcrypto)
LDFLAGS ?=

SRCS = csrc/hi_core.c csrc/hi_sigv4.c csrc/hi_http.c csrc/hi_json.c csrc/hi_proc.c
OBJS = $(SRCS:csrc/%.c=$(BUILD)/obj/%.o)
SO = $(BUILD)/healthimaging/core.so

BUSTED = $(LUA) /usr/bin/busted

# The JS SDK for conformance and bench: peers/ (npm ci, as the lock pins it).
PEERS_SDK = peers/node_modules/@aws-sdk/client-medical-imaging
PEERS_STAMP = peers/node_modules/.installed-from-lock

# The demo and test data: the real DICOM files of Debian's python3-pydicom.
DEMO_DIR = $(BUILD)/demo
DEMO_DATA = $(DEMO_DIR)/datastore.json
DEMO_DATASTORE = healthimagingdemodatastore000001
PYDICOM_DATA = $(shell $(PYTHON) -c 'import os, pydicom; print(os.path.join(os.path.dirname(pydicom.__file__), "data"))' 2>/dev/null)
EMULATOR_SRCS = bin/healthimaging-local $(wildcard emulator/healthimaging_local/*.py)

.PHONY: all test test-run peers check conformance demo bench print install clean

all: $(SO)

$(SO): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -o $@ $(OBJS) $(LIBS)

$(BUILD)/obj/%.o: csrc/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# Header dependencies, by hand (as LPeg does).
$(BUILD)/obj/hi_core.o: csrc/hi_core.h csrc/hi_sigv4.h csrc/hi_http.h csrc/hi_json.h csrc/hi_proc.h
$(BUILD)/obj/hi_sigv4.o: csrc/hi_core.h csrc/hi_sigv4.h
$(BUILD)/obj/hi_http.o: csrc/hi_core.h csrc/hi_http.h
$(BUILD)/obj/hi_json.o: csrc/hi_core.h csrc/hi_json.h
$(BUILD)/obj/hi_proc.o: csrc/hi_core.h csrc/hi_proc.h

$(DEMO_DATA): $(EMULATOR_SRCS)
	@mkdir -p $(DEMO_DIR)
	@test -n "$(PYDICOM_DATA)" || { echo "python3-pydicom is missing: run sh scripts/install-deps.sh"; exit 1; }
	bin/healthimaging-local import --datastore-id $(DEMO_DATASTORE) --out $@ \
	  $(PYDICOM_DATA)/test_files $(PYDICOM_DATA)/charset_files 2> $(DEMO_DIR)/import.log \
	  || { cat $(DEMO_DIR)/import.log; exit 1; }
	@tail -n 1 $(DEMO_DIR)/import.log

# The whole suite: lint, the busted specs (they start the emulator
# themselves), the emulator's own tests, then `make conformance` when
# peers/node_modules is installed.
# The whole suite: installs what is missing (Debian packages; the JS SDK that
# peers/package-lock.json pins), then lint, the busted specs (they start the
# emulator themselves), the emulator's own tests and the conformance run,
# and closes with one "N passed, M failed" line.
test:
	@sh scripts/install-deps.sh
	@$(MAKE) --no-print-directory peers
	@$(MAKE) --no-print-directory test-run

test-run: $(SO) $(DEMO_DATA) check
	@mkdir -p $(BUILD)/logs
	$(BUSTED) 2>&1 | tee $(BUILD)/logs/busted.log
	$(PYTHON) -m unittest discover -s emulator/tests -t . 2>&1 | tee $(BUILD)/logs/unittest.log
	@if [ -d $(PEERS_SDK) ]; then $(MAKE) --no-print-directory conformance; else \
	  echo "conformance: SKIPPED: $(PEERS_SDK) is absent (run npm ci --prefix peers):" \
	    "the Lua client was not compared with the JS SDK and boto3"; fi
	@sh scripts/test-summary.sh $(BUILD)/logs/busted.log $(BUILD)/logs/unittest.log

# The official JS SDK, as pinned by peers/package-lock.json (npm registry).
peers: $(PEERS_STAMP)
$(PEERS_STAMP): peers/package.json peers/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix peers --no-audit --no-fund && touch $@; \
	else echo "npm is missing: the JS SDK is not installed, conformance will be skipped"; fi

# The Lua client against the official SDKs (JS SDK v3 from peers/, boto3 from
# Debian), the emulator and AWS's SigV4 suites: prints a table, fails on any
# mismatch, says SKIPPED when ../shared/reference is absent. See
# docs/COMPATIBILITY.md.
conformance: $(SO) $(DEMO_DATA)
	LUA=$(LUA) $(PYTHON) conformance/run.py --data $(DEMO_DATA)

check:
	luacheck lua bin/healthimaging spec

# Installs what is missing, builds, imports the real DICOM files, serves
# them on a free loopback port and runs a few searches with the CLI.
demo:
	@sh scripts/install-deps.sh
	@$(MAKE) --no-print-directory $(SO) $(DEMO_DATA)
	@LUA=$(LUA) DATA=$(DEMO_DATA) DATASTORE=$(DEMO_DATASTORE) sh scripts/demo.sh

print:
	@echo "LUA_VERSION=$(LUA_VERSION)"
	@echo "LUA=$(LUA)"
	@echo "LUA_INCDIR=$(LUA_INCDIR)"
	@echo "PREFIX=$(PREFIX)"
	@echo "CC=$(CC)"
	@echo "CFLAGS=$(ALL_CFLAGS)"
	@echo "LIBS=$(LIBS)"

install: $(SO)
	install -d $(DESTDIR)$(LUA_LIBDIR)/healthimaging $(DESTDIR)$(LUA_SHAREDIR)/healthimaging
	install -m 0755 $(SO) $(DESTDIR)$(LUA_LIBDIR)/healthimaging/core.so
	install -m 0644 lua/healthimaging.lua $(DESTDIR)$(LUA_SHAREDIR)/healthimaging.lua
	install -m 0644 lua/healthimaging/*.lua $(DESTDIR)$(LUA_SHAREDIR)/healthimaging/
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 bin/healthimaging $(DESTDIR)$(PREFIX)/bin/healthimaging

clean:
	rm -rf $(BUILD)


# {====================================================================
# Robustness: sanitizers, valgrind and fuzzing (no input may crash the host)
#
#   make test-asan      the busted suite under AddressSanitizer + UBSan,
#                       leaks checked at exit (LeakSanitizer)
#   make test-valgrind  the busted suite under valgrind memcheck
#   make fuzz           replays fuzz/regressions/<target>/, then fuzzes each
#                       target for FUZZ_SECONDS with libFuzzer
#
# Knobs:
#   SAN_CC        compiler of the sanitizer and fuzz builds            (clang)
#   SAN_FLAGS     sanitizers; any report stops the run
#   SAN_CFLAGS    optimization and debug flags of those builds         (-O1 -g)
#   ASAN_BUILD    instrumented core.so and its host program            ($(BUILD)/asan)
#   ASAN_ENV      sanitizer options of test-asan
#   VALGRIND      memcheck command line: errors and definite leaks fail
#   FUZZ_BUILD    harnesses, the growing corpus, crash artifacts       ($(BUILD)/fuzz)
#   FUZZ_SECONDS  seconds each fuzz target runs                        (60)
#   FUZZ_FLAGS    extra libFuzzer flags
#
# The Python servers and the `lua5.4` children the specs start are never
# instrumented: test-asan runs busted in fuzz/sanlua.c (the sanitizer
# runtime linked into that one program, no LD_PRELOAD for children to
# inherit) and valgrind does not trace children.
# =====================================================================
SAN_CC ?= clang
SAN_FLAGS ?= -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
SAN_CFLAGS ?= -O1 -g
ASAN_BUILD ?= $(BUILD)/asan
ASAN_SO = $(ASAN_BUILD)/healthimaging/core.so
ASAN_HOST = $(ASAN_BUILD)/sanlua
ASAN_OBJS = $(SRCS:csrc/%.c=$(ASAN_BUILD)/obj/%.o)
ASAN_ENV ?= ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
VALGRIND ?= valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite \
            --errors-for-leak-kinds=definite --error-exitcode=99 --keep-debuginfo=yes \
            --num-callers=40 --quiet
FUZZ_BUILD ?= $(BUILD)/fuzz
FUZZ_SECONDS ?= 60
FUZZ_FLAGS ?=
FUZZ_TARGETS = json sigv4
LUA_LIBS = $(shell $(PKG_CONFIG) --libs lua$(LUA_VERSION))
SAN_ALL_CFLAGS = -std=c99 -fPIC -fvisibility=hidden $(WARN) $(SAN_CFLAGS) $(SAN_FLAGS) -I$(LUA_INCDIR) \
                 $(shell $(PKG_CONFIG) --cflags libcurl openssl)

.PHONY: test-asan test-valgrind fuzz

$(ASAN_BUILD)/obj/%.o: csrc/%.c $(wildcard csrc/*.h)
	@mkdir -p $(dir $@)
	$(SAN_CC) $(SAN_ALL_CFLAGS) -c -o $@ $<

# The runtime is not linked into the module: it comes from the host.
$(ASAN_SO): $(ASAN_OBJS)
	@mkdir -p $(dir $@)
	$(SAN_CC) -shared $(SAN_FLAGS) -o $@ $(ASAN_OBJS) $(LIBS)

$(ASAN_HOST): fuzz/sanlua.c
	@mkdir -p $(dir $@)
	$(SAN_CC) -std=c99 $(WARN) $(SAN_CFLAGS) $(SAN_FLAGS) -I$(LUA_INCDIR) -o $@ $< $(LUA_LIBS)

# $(SO) too: some specs start `lua5.4` children that load ./build.
test-asan: $(SO) $(ASAN_SO) $(ASAN_HOST) $(DEMO_DATA)
	$(ASAN_ENV) $(ASAN_HOST) /usr/bin/busted --cpath=./$(ASAN_BUILD)/?.so

test-valgrind: $(SO) $(DEMO_DATA)
	$(VALGRIND) $(LUA) /usr/bin/busted

# One harness per target, csrc/ compiled in (instrumented, with coverage).
$(FUZZ_BUILD)/%: fuzz/harness.c fuzz/%_target.lua $(SRCS) $(wildcard csrc/*.h)
	@mkdir -p $(dir $@)
	$(SAN_CC) -std=c99 $(WARN) $(SAN_CFLAGS) -fsanitize=fuzzer $(SAN_FLAGS) -Icsrc -I$(LUA_INCDIR) \
	  $(shell $(PKG_CONFIG) --cflags libcurl openssl) -DHI_FUZZ_TARGET='"$*"' -DHI_FUZZ_ROOT='"$(CURDIR)"' \
	  -o $@ fuzz/harness.c $(SRCS) $(LIBS) $(LUA_LIBS)

# Each target: every saved crash must now pass, then new inputs are
# searched from fuzz/corpus/<target> (read only; finds go to FUZZ_BUILD).
fuzz: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%)
	luacheck --std lua54 fuzz
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/crashes/$$t; \
	  set -- fuzz/regressions/$$t/*; \
	  if [ -e "$$1" ]; then echo "fuzz $$t: replaying $$# regression inputs"; \
	    $(FUZZ_BUILD)/$$t "$$@"; fi; \
	  echo "fuzz $$t: $(FUZZ_SECONDS) s"; \
	  $(FUZZ_BUILD)/$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	    -dict=fuzz/$$t.dict -artifact_prefix=$(FUZZ_BUILD)/crashes/$$t/ $(FUZZ_FLAGS) \
	    $(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t; \
	done
# }====================================================================


# {====================================================================
# Benchmark (not part of `make test`; docs/PERFORMANCE.md has the method)
#
#   make bench    our paginator (with and without prefetch), the
#                 libcurl+cjson floor, the JS SDK v3 (peers/) and boto3,
#                 each in its own process against bench/server.c: CPU,
#                 wall time, peak RSS, TCP connections and the ratios.
#                 A few minutes. Reports timings, never fails on one.
#
# Knobs:
#   BENCH_BUILD   the bench server and the floor's C module   ($(BUILD)/bench)
#   BENCH_ARGS    extra bench/run.py flags, e.g. --pages 200 or --smoke
# =====================================================================
BENCH_BUILD ?= $(BUILD)/bench
BENCH_ARGS ?=

$(BENCH_BUILD)/server: bench/server.c
	@mkdir -p $(dir $@)
	$(CC) -std=c99 $(WARN) -O2 -o $@ $< -lpthread

$(BENCH_BUILD)/bench_floor.so: bench/floor.c
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -fPIC -fvisibility=hidden -shared $(WARN) -O2 -I$(LUA_INCDIR) \
	  $(shell $(PKG_CONFIG) --cflags libcurl) -o $@ $< $(shell $(PKG_CONFIG) --libs libcurl)

bench: $(SO) $(BENCH_BUILD)/server $(BENCH_BUILD)/bench_floor.so
	$(PYTHON) bench/run.py --build $(BENCH_BUILD) $(BENCH_ARGS)
# }====================================================================
