/*
** sanlua.c: a minimal `lua5.4 SCRIPT [ARGS...]` built with the sanitizers,
** used by `make test-asan` to run busted. The ASan/UBSan runtime then lives
** in this process only: an LD_PRELOADed runtime would be inherited by every
** child the specs start (Python servers, `lua5.4` children under
** `ulimit -v`), which must stay uninstrumented. No REPL, -e or LUA_INIT.
*/
#include <stdio.h>
#include <stdlib.h>
#include <dlfcn.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

/*
** Lua's lua_close unloads every C module (dlclose); a leak reported at exit
** would then show "<unknown module>" instead of the csrc/ frame that made
** it. This definition interposes libc's for liblua, so modules stay mapped
** until the process ends, as they would in most hosts.
*/
int dlclose(void *handle) {
  (void)handle;
  return 0;
}

/* Message handler: the error plus a traceback, as lua5.4 prints it. */
static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL)
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/*
** Runs argv[1] with argv[2..] as its arguments and in the global `arg`
** (arg[-1] is this program, arg[0] the script), as lua5.4 does. The state
** is closed before returning, so LeakSanitizer sees only real leaks.
*/
int main(int argc, char **argv) {
  lua_State *L;
  int i, st;
  if (argc < 2) {
    fprintf(stderr, "usage: %s SCRIPT [ARGS...]\n", argv[0]);
    return 2;
  }
  L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "%s: cannot create a Lua state\n", argv[0]);
    return 1;
  }
  luaL_openlibs(L);
  lua_createtable(L, argc - 2, 2);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  lua_pushcfunction(L, traceback);
  st = luaL_loadfile(L, argv[1]);
  if (st == LUA_OK) {
    for (i = 2; i < argc; i++)
      lua_pushstring(L, argv[i]);
    st = lua_pcall(L, argc - 2, 0, 1);
  }
  if (st != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "%s: %s\n", argv[0], msg != NULL ? msg : "(no message)");
  }
  lua_close(L);
  return st == LUA_OK ? 0 : 1;
}
