/*
** harness.c: the libFuzzer entry point of every fuzz target. It opens one
** Lua state, registers healthimaging.core (linked in and instrumented, so
** coverage and sanitizers see csrc/ only) and loads
** fuzz/<target>_target.lua, whose function gets each input. A Lua error
** escaping that function is a broken contract, reported with abort().
** Built once per target: -DHI_FUZZ_TARGET='"json"' or '"sigv4"'.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "hi_core.h"

#ifndef HI_FUZZ_TARGET
#error "define HI_FUZZ_TARGET, e.g. -DHI_FUZZ_TARGET='\"json\"'"
#endif
#ifndef HI_FUZZ_ROOT
#define HI_FUZZ_ROOT "."
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The state and the target function (a registry reference), made once:
** a fresh state per input would spend the run in luaL_openlibs. */
static lua_State *fuzz_L = NULL;
static int fuzz_fn = LUA_NOREF;

/* Stops the run with the Lua message; libFuzzer then saves the input. */
static void die(lua_State *L, const char *what) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "fuzz target " HI_FUZZ_TARGET ": %s: %s\n", what,
          msg != NULL ? msg : "(error object is not a string)");
  abort();
}

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL)
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/*
** Opens the state: the repository's lua/ first on package.path (the Lua
** layer's errors and model), the core registered as a loaded module, and
** the target file's function kept in the registry.
*/
static void open_state(void) {
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "fuzz target " HI_FUZZ_TARGET ": no Lua state\n");
    abort();
  }
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, HI_FUZZ_ROOT "/lua/?.lua;" HI_FUZZ_ROOT "/fuzz/?.lua;");
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  lua_pushcfunction(L, traceback);
  luaL_requiref(L, "healthimaging.core", luaopen_healthimaging_core, 0);
  lua_pop(L, 1);
  if (luaL_loadfile(L, HI_FUZZ_ROOT "/fuzz/" HI_FUZZ_TARGET "_target.lua") !=
          LUA_OK ||
      lua_pcall(L, 0, 1, 1) != LUA_OK)
    die(L, "cannot load the target");
  if (lua_type(L, -1) != LUA_TFUNCTION) {
    lua_pushliteral(L, "the target file must return a function");
    die(L, "cannot load the target");
  }
  fuzz_fn = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, 0);
  fuzz_L = L;
}

/*
** One input: target(data) under a traceback handler. A full collection
** afterwards frees this input's garbage, so libFuzzer's malloc/free
** balance (its cue to run LeakSanitizer) points at csrc/, not at Lua's GC.
*/
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L;
  if (fuzz_L == NULL)
    open_state();
  L = fuzz_L;
  lua_pushcfunction(L, traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, fuzz_fn);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 1) != LUA_OK)
    die(L, "contract broken");
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
