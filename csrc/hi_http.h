/*
** hi_http.h: the libcurl transport of healthimaging.core.
** Lua sees only core.http_new(opts) and handle:request(req) -> status,
** headers, body | nil, err; nothing about curl leaks past this seam.
*/
#ifndef HI_HTTP_H
#define HI_HTTP_H
#include <lua.h>

/* Metatable name of a transport handle (also its __name in 5.3+). */
#define HI_HTTP_MT "healthimaging.http"

/* Adds http_new to the module table on top of the stack. May raise
** (out of memory). */
void hi_http_open(lua_State *L);
#endif
