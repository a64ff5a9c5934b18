# healthimaging: build the C core, run the specs, run the demo.
#
# Knobs (override on the command line or in the environment):
#   LUA_VERSION  Lua version the module is built for            (5.4)
#   LUA          interpreter used for specs, CLI and demo       (lua$(LUA_VERSION))
#   LUA_INCDIR   Lua headers                                    (from pkg-config)
#   PREFIX       install root                                   (/usr/local)
#   CC, CFLAGS   compiler and flags; -Werror is on so CI fails on any warning
#   BUILD        where healthimaging/core.so is written          (build)
LUA_VERSION ?= 5.4
LUA ?= lua$(LUA_VERSION)
PKG_CONFIG ?= pkg-config
LUA_INCDIR ?= $(shell $(PKG_CONFIG) --variable=includedir lua$(LUA_VERSION) 2>/dev/null)/lua$(LUA_VERSION)
PREFIX ?= /usr/local
LUA_LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
LUA_SHAREDIR ?= $(PREFIX)/share/lua/$(LUA_VERSION)
BUILD ?= build
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

# The whole suite: busted specs (the emulator is started by the specs themselves).
test: $(SO)
	$(BUSTED)

check:
	luacheck --std lua54 lua bin/healthimaging spec

demo:
	@sh scripts/demo.sh

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
