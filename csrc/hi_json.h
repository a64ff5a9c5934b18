#ifndef HI_JSON_H
#define HI_JSON_H
#include <lua.h>
/* Adds this part's functions to the module table on top of the stack. */
void hi_json_open(lua_State *L);
#endif
