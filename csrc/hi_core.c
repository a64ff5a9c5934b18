/*
** hi_core.c: entry point of healthimaging.core.
** Builds the module table from the per-concern parts (SigV4, HTTP, JSON,
** processes); holds no state of its own.
*/
#include "hi_core.h"
#include "hi_sigv4.h"
#include "hi_http.h"
#include "hi_json.h"
#include "hi_proc.h"

/*
** Opening the module may raise (out of memory, cjson missing): that is a
** failed `require`, which Lua reports to the caller as usual.
*/
HI_EXPORT int luaopen_healthimaging_core(lua_State *L) {
  lua_newtable(L);
  lua_pushliteral(L, HI_VERSION);
  lua_setfield(L, -2, "_VERSION");
  hi_sigv4_open(L);
  hi_http_open(L);
  hi_json_open(L);
  hi_proc_open(L);
  return 1;
}
