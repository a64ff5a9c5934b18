/*
** hi_core.h: shared declarations of the healthimaging.core C module.
** Each hi_<module>.c adds its functions to the module table through its
** hi_<module>_open; only luaopen_healthimaging_core is exported.
*/
#ifndef HI_CORE_H
#define HI_CORE_H

#include <lua.h>
#include <lauxlib.h>

/* The one version of the project: the Lua layer and the rockspec must agree
** with it (spec/00-version_spec.lua checks). */
#define HI_VERSION "0.1.0"

#if defined(__GNUC__)
#define HI_EXPORT __attribute__((visibility("default")))
#else
#define HI_EXPORT
#endif

HI_EXPORT int luaopen_healthimaging_core(lua_State *L);

#endif
