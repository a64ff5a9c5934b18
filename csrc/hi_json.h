/*
** hi_json.h: JSON for healthimaging.core on a private lua-cjson instance.
** core.json_encode(v) -> text | nil, msg;
** core.json_decode(text [, int_keys]) -> value | nil, msg (nulls removed).
*/
#ifndef HI_JSON_H
#define HI_JSON_H
#include <lua.h>

/* Largest nesting, in both directions, of the private cjson instance. */
#define HI_JSON_MAX_DEPTH 64

/* Adds json_encode and json_decode to the module table on top of the
** stack. Raises if lua-cjson cannot be required (a failed `require`). */
void hi_json_open(lua_State *L);
#endif
