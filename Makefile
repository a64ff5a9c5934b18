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

WARN = -Wall -Wextra -Werror -pedantic -Wshadow -Wpointer-arith -Wcast-qual \
       -Wwrite-strings -Wstrict-prototypes -Wmissing-prototypes -Wundef \
       -Wdeclaration-after-statement
CFLAGS ?= -O2 -g
ALL_CFLAGS = -std=c99 -fPIC -fvisibility=hidden $(WARN) $(CFLAGS) -I$(LUA_INCDIR) \
             $(shell $(PKG_CONFIG) --cflags libcurl openssl)
LIBS = $(shell $(PKG_CONFIG) --libs libcurl libcrypto)
LDFLAGS ?=

SRCS = csrc/hi_core.c csrc/hi_sigv4.c csrc/hi_http.c csrc/hi_json.c
OBJS = $(SRCS:csrc/%.c=$(BUILD)/obj/%.o)
SO = $(BUILD)/healthimaging/core.so

BUSTED = $(LUA) /usr/bin/busted

# The demo and test data: the real DICOM files of Debian's python3-pydicom.
DEMO_DIR = $(BUILD)/demo
DEMO_DATA = $(DEMO_DIR)/datastore.json
DEMO_DATASTORE = healthimagingdemodatastore000001
PYDICOM_DATA = $(shell $(PYTHON) -c 'import os, pydicom; print(os.path.join(os.path.dirname(pydicom.__file__), "data"))' 2>/dev/null)
EMULATOR_SRCS = bin/healthimaging-local $(wildcard emulator/healthimaging_local/*.py)

.PHONY: all test check conformance demo bench print install clean

all: $(SO)

$(SO): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -o $@ $(OBJS) $(LIBS)

$(BUILD)/obj/%.o: csrc/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# Header dependencies, by hand (as LPeg does).
$(BUILD)/obj/hi_core.o: csrc/hi_core.h csrc/hi_sigv4.h csrc/hi_http.h csrc/hi_json.h
$(BUILD)/obj/hi_sigv4.o: csrc/hi_core.h csrc/hi_sigv4.h
$(BUILD)/obj/hi_http.o: csrc/hi_core.h csrc/hi_http.h
$(BUILD)/obj/hi_json.o: csrc/hi_core.h csrc/hi_json.h

$(DEMO_DATA): $(EMULATOR_SRCS)
	@mkdir -p $(DEMO_DIR)
	@test -n "$(PYDICOM_DATA)" || { echo "python3-pydicom is missing: run sh scripts/install-deps.sh"; exit 1; }
	bin/healthimaging-local import --datastore-id $(DEMO_DATASTORE) --out $@ \
	  $(PYDICOM_DATA)/test_files $(PYDICOM_DATA)/charset_files 2> $(DEMO_DIR)/import.log \
	  || { cat $(DEMO_DIR)/import.log; exit 1; }
	@tail -n 1 $(DEMO_DIR)/import.log

# The whole suite: lint, the busted specs (they start the emulator
# themselves) and the emulator's own tests.
test: $(SO) $(DEMO_DATA) check
	$(BUSTED)
	$(PYTHON) -m unittest discover -s emulator/tests -t .

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

clean:
	rm -rf $(BUILD)
