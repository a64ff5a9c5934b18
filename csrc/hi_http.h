#ifndef HI_HTTP_H
#define HI_HTTP_H
#include <lua.h>
/* Adds this part's functions to the module table on top of the stack. */
void hi_http_open(lua_State *L);
#endif
