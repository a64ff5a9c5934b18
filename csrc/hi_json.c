/*
** hi_json.c: JSON through a private lua-cjson instance (cjson.new()), so a
** host that reconfigures the shared `require "cjson"` cannot change ours.
** Decoding then walks the result once in C: JSON nulls are removed and the
** numbers of listed object keys become Lua integers (5.3+).
*/
#include "hi_core.h"
#include "hi_json.h"

#if LUA_VERSION_NUM < 502
#define hi_rawlen(L, i) lua_objlen((L), (i))
#else
#define hi_rawlen(L, i) lua_rawlen((L), (i))
#endif


/*
** {======================================================
** Decoded-value walk
** =======================================================
*/

/* cjson.null is a NULL light userdata. */
static int is_null(lua_State *L, int i) {
  return lua_type(L, i) == LUA_TLIGHTUSERDATA && lua_touserdata(L, i) == NULL;
}

static void walk(lua_State *L, int t, int keys);

/*
** An array from cjson is a table with values at 1..n and no holes (a null
** is a light userdata, not nil), so rawlen is exact. Nulls are dropped and
** the rest moved down: [1, null, 2] becomes {1, 2}. Numbers in arrays have
** no key and stay floats.
*/
static void walk_array(lua_State *L, int t, int keys, lua_Integer n) {
  lua_Integer i, j = 1;
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, t, i);
    if (is_null(L, -1)) {
      lua_pop(L, 1);
      continue;
    }
    if (lua_type(L, -1) == LUA_TTABLE)
      walk(L, lua_gettop(L), keys);
    if (j != i)
      lua_rawseti(L, t, j);
    else
      lua_pop(L, 1);
    j++;
  }
  for (i = j; i <= n; i++) {
    lua_pushnil(L);
    lua_rawseti(L, t, i);
  }
}

#if LUA_VERSION_NUM >= 503
/*
** Stack: ... key value(float). If int_keys[key] is true and the value is
** integral and fits, t[key] becomes that integer. Overwriting an existing
** field is allowed during lua_next. One rawget, no allocation.
*/
static void to_integer(lua_State *L, int t, int keys) {
  lua_pushvalue(L, -2);
  lua_rawget(L, keys);
  if (lua_toboolean(L, -1)) {
    lua_Number d = lua_tonumber(L, -2);
    lua_Integer iv;
    if (lua_numbertointeger(d, &iv) && (lua_Number)iv == d) {
      lua_pushvalue(L, -3);
      lua_pushinteger(L, iv);
      lua_rawset(L, t);
    }
  }
  lua_pop(L, 1);
}
#endif

/* An object from cjson has only string keys. A key whose value is null is
** cleared, which lua_next allows during the traversal. */
static void walk_object(lua_State *L, int t, int keys) {
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int vt = lua_type(L, -1);
    if (vt == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == NULL) {
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      lua_pushnil(L);
      lua_rawset(L, t);
      continue;
    }
    if (vt == LUA_TTABLE)
      walk(L, lua_gettop(L), keys);
#if LUA_VERSION_NUM >= 503
    else if (vt == LUA_TNUMBER && keys != 0 && !lua_isinteger(L, -1))
      to_integer(L, t, keys);
#endif
    lua_pop(L, 1);
  }
}

/*
** Visits the table at absolute index t once (lua_next or rawgeti per
** entry). Recursion depth is bounded by the instance's decode_max_depth
** (HI_JSON_MAX_DEPTH), each level using a handful of stack slots. keys is
** the int_keys index, or 0. Raises only on out of memory.
*/
static void walk(lua_State *L, int t, int keys) {
  lua_Integer n = (lua_Integer)hi_rawlen(L, t);
  luaL_checkstack(L, 6, "JSON walk");
  if (n > 0)
    walk_array(L, t, keys, n);
  else
    walk_object(L, t, keys);
}

/* }====================================================== */


/*
** {======================================================
** Lua functions
** =======================================================
*/

/* Upvalues shared by both functions: the private instance's functions. */
#define UP_ENCODE 1
#define UP_DECODE 2

/*
** Calls the cjson function in upvalue up on the single value at the top,
** protected: a data error becomes nil, message; a memory error is raised
** again, as everywhere else. Returns the number of results pushed.
*/
static int call_cjson(lua_State *L, int up) {
  int st;
  lua_pushvalue(L, lua_upvalueindex(up));
  lua_insert(L, -2);
  st = lua_pcall(L, 1, 1, 0);
  if (st == LUA_ERRMEM)
    return lua_error(L);
  if (st != 0) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  return 1;
}

/*
** core.json_encode(value) -> text | nil, message. NaN/inf, functions and
** other unsupported types, nesting deeper than 64 (so cycles) and arrays
** with holes ("excessively sparse") are data errors, never raises.
** Raises only if called with no argument.
*/
static int l_json_encode(lua_State *L) {
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  return call_cjson(L, UP_ENCODE);
}

/*
** core.json_decode(text [, int_keys]) -> value | nil, message. Malformed
** JSON, NaN/Infinity/hex numbers and nesting deeper than 64 are data
** errors. A top-level null has nothing left once nulls are removed, so it
** is reported as nil, message too. Raises on a non-string text or a
** non-table int_keys.
*/
static int l_json_decode(lua_State *L) {
  int keys = 0;
  luaL_checktype(L, 1, LUA_TSTRING);
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    keys = 2;
  }
  lua_settop(L, 2);
  lua_pushvalue(L, 1);
  if (call_cjson(L, UP_DECODE) == 2)
    return 2;
  if (is_null(L, 3)) {
    lua_pushnil(L);
    lua_pushliteral(L, "the JSON text is null");
    return 2;
  }
  if (lua_type(L, 3) == LUA_TTABLE)
    walk(L, 3, keys);
  lua_settop(L, 3);
  return 1;
}

/* }====================================================== */


static const luaL_Reg funcs[] = {
  {"json_encode", l_json_encode},
  {"json_decode", l_json_decode},
  {NULL, NULL}
};

/* Calls inst[name](...) with the nargs values on top of the stack. */
static void configure(lua_State *L, int inst, const char *name, int nargs) {
  lua_getfield(L, inst, name);
  lua_insert(L, -nargs - 1);
  lua_call(L, nargs, 0);
}

/*
** Each function gets the private instance's own encode and decode as
** upvalues; those cjson closures carry the instance's configuration, so nothing
** is global and the host cannot reach it.
**   encode_sparse_array(false, 1, 0): any array with a hole is an error
**   (never converted to an object, never padded with nulls).
*/
void hi_json_open(lua_State *L) {
  int mod = lua_gettop(L), inst;
  const luaL_Reg *r;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "new");
  lua_call(L, 0, 1);
  inst = lua_gettop(L);
  lua_pushinteger(L, 14);     /* lua-cjson 2.1.0's maximum */
  configure(L, inst, "encode_number_precision", 1);
  lua_pushboolean(L, 0);
  configure(L, inst, "encode_invalid_numbers", 1);
  lua_pushboolean(L, 0);
  configure(L, inst, "decode_invalid_numbers", 1);
  lua_pushinteger(L, HI_JSON_MAX_DEPTH);
  configure(L, inst, "decode_max_depth", 1);
  lua_pushinteger(L, HI_JSON_MAX_DEPTH);
  configure(L, inst, "encode_max_depth", 1);
  lua_pushboolean(L, 0);
  lua_pushinteger(L, 1);
  lua_pushinteger(L, 0);
  configure(L, inst, "encode_sparse_array", 3);
  /* luaL_setfuncs(L, funcs, 2), spelled out so it also builds on 5.1. */
  for (r = funcs; r->name != NULL; r++) {
    lua_getfield(L, inst, "encode");      /* UP_ENCODE */
    lua_getfield(L, inst, "decode");      /* UP_DECODE */
    lua_pushcclosure(L, r->func, 2);
    lua_setfield(L, mod, r->name);
  }
  lua_settop(L, mod);
}
