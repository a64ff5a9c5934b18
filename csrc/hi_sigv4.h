#ifndef HI_SIGV4_H
#define HI_SIGV4_H
#include <lua.h>
/* Adds this part's functions to the module table on top of the stack. */
void hi_sigv4_open(lua_State *L);
#endif
