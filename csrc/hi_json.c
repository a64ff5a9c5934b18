/*
** hi_json.c: JSON for healthimaging.core. Encoding goes through a private
** lua-cjson instance (cjson.new()), so a host that reconfigures the shared
** `require "cjson"` cannot change ours. Decoding is this file's own one-pass
** parser: JSON nulls never become values and the numbers of listed object
** keys become Lua integers (5.3+) as they are read.
*/
#include <stdlib.h>
#include <string.h>

#include "hi_core.h"
#include "hi_json.h"

#if LUA_VERSION_NUM < 502
#define hi_rawlen(L, i) lua_objlen((L), (i))
#else
#define hi_rawlen(L, i) lua_rawlen((L), (i))
#endif


/*
** {======================================================
** Decoder: JSON text to Lua values in one pass
** =======================================================
*/

/*
** Decoding is done here rather than by cjson.decode followed by a walk over
** the result: that pair spent ~3 M instructions on a 38 KB page of 50
** summaries, this one pass ~1/3 of that (docs/PERFORMANCE.md). Strings
** without escapes are pushed straight from the text, integers are read
** without strtod, nulls are never materialized and the listed keys are typed
** as they are set. Grammar: RFC 8259, strictly (no leading zeros, no NaN,
** Infinity or hex, no raw control characters in strings); other string
** bytes pass through as they are, like cjson (no UTF-8 check).
*/

/* Sizes remembered per depth are capped: a hint only saves rehashes, and
** one odd huge object must not make every later one allocate as much. */
#define HINT_MAX 64

typedef struct jparser {
  const char *p, *end, *start;
  int keys;                       /* stack index of int_keys, or 0 */
  int depth;
  /* Members of the last object and items of the last array finished at each
  ** depth: the next one there (the next summary of a page) is created with
  ** that size, so filling it never rehashes. */
  int ohint[HI_JSON_MAX_DEPTH + 2];
  int ahint[HI_JSON_MAX_DEPTH + 2];
} jparser;

/* Raises a data error naming the position, never the text (it may hold
** patient data). The caller's lua_pcall turns it into nil, message. */
static int jerror(lua_State *L, const jparser *j, const char *what) {
  return luaL_error(L, "%s at character %d", what, (int)(j->p - j->start) + 1);
}

static void skip_ws(jparser *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
    j->p++;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Reads the 4 hex digits after "\u" at p; -1 if they are not there. */
static long hex4(const jparser *j, const char *p) {
  long v = 0;
  int i;
  if (j->end - p < 4)
    return -1;
  for (i = 0; i < 4; i++) {
    int h = hexval(p[i]);
    if (h < 0)
      return -1;
    v = v * 16 + h;
  }
  return v;
}

/* Appends code point cp as UTF-8. */
static void add_utf8(luaL_Buffer *b, unsigned long cp) {
  char u[4];
  size_t n;
  if (cp < 0x80) {
    u[0] = (char)cp; n = 1;
  } else if (cp < 0x800) {
    u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); n = 2;
  } else if (cp < 0x10000) {
    u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
  } else {
    u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
  }
  luaL_addlstring(b, u, n);
}

/* Bytes that end a run of plain string bytes: the quote, the backslash
** and the control characters RFC 8259 forbids unescaped. */
static const unsigned char STOP[256] = {
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,   /* '"' */
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,   /* '\\' */
};

/* The string starting at the opening quote j->p: pushes it. Raises. */
static void parse_string(lua_State *L, jparser *j) {
  const char *s = j->p + 1, *p = s, *end = j->end;
  luaL_Buffer b;
  while (p < end && !STOP[(unsigned char)*p])
    p++;
  if (p < end && *p == '"') {       /* the common case: no escapes */
    lua_pushlstring(L, s, (size_t)(p - s));
    j->p = p + 1;
    return;
  }
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, s, (size_t)(p - s));
  for (;;) {
    const char *q = p;
    while (q < end && !STOP[(unsigned char)*q])
      q++;
    luaL_addlstring(&b, p, (size_t)(q - p));
    p = q;
    if (p >= end) {
      j->p = p;
      jerror(L, j, "unterminated string");
    }
    if (*p == '"')
      break;
    if (*p != '\\') {
      j->p = p;
      jerror(L, j, "control character in string");
    }
    if (++p >= end) {
      j->p = p;
      jerror(L, j, "unterminated string");
    }
    switch (*p) {
      case '"': luaL_addchar(&b, '"'); break;
      case '\\': luaL_addchar(&b, '\\'); break;
      case '/': luaL_addchar(&b, '/'); break;
      case 'b': luaL_addchar(&b, '\b'); break;
      case 'f': luaL_addchar(&b, '\f'); break;
      case 'n': luaL_addchar(&b, '\n'); break;
      case 'r': luaL_addchar(&b, '\r'); break;
      case 't': luaL_addchar(&b, '\t'); break;
      case 'u': {
        long cp = hex4(j, p + 1), lo;
        if (cp < 0 || (cp >= 0xDC00 && cp <= 0xDFFF)) {
          j->p = p;
          jerror(L, j, "invalid unicode escape");
        }
        p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {  /* needs its low surrogate */
          lo = (end - p >= 3 && p[1] == '\\' && p[2] == 'u') ? hex4(j, p + 3) : -1;
          if (lo < 0xDC00 || lo > 0xDFFF) {
            j->p = p;
            jerror(L, j, "invalid unicode escape");
          }
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          p += 6;
        }
        add_utf8(&b, (unsigned long)cp);
        break;
      }
      default:
        j->p = p;
        jerror(L, j, "invalid escape");
    }
    p++;
  }
  j->p = p + 1;
  luaL_pushresult(&b);
}

/* Exact powers of ten for the fast path (doubles hold 10^22 exactly). */
static const double POW10[] = {
  1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
};

static int is_digit(const jparser *j, const char *p) {
  return p < j->end && *p >= '0' && *p <= '9';
}

/*
** The number at j->p, pushed as a float. With at most 15 significant
** digits and a decimal exponent within +-22, (double)digits times or divided
** by an exact power of ten is correctly rounded (one IEEE operation on exact
** operands), so it equals strtod's answer; other numbers go to Lua's own
** conversion (strtod). Raises on bad grammar.
*/
static void parse_number(lua_State *L, jparser *j) {
  const char *s = j->p, *p = s;
  unsigned long long m = 0;
  int sig = 0, frac = 0, neg = 0, e10;
  long ex = 0;
  if (*p == '-') {
    neg = 1;
    p++;
  }
  if (!is_digit(j, p)) {
    j->p = p;
    jerror(L, j, "invalid number");
  }
  if (*p == '0') {
    p++;
    if (is_digit(j, p)) {
      j->p = p;
      jerror(L, j, "invalid number (leading zero)");
    }
  } else {
    while (is_digit(j, p)) {
      if (sig < 19) m = m * 10 + (unsigned)(*p - '0');
      if (m != 0) sig++;
      p++;
    }
  }
  if (p < j->end && *p == '.') {
    p++;
    if (!is_digit(j, p)) {
      j->p = p;
      jerror(L, j, "invalid number");
    }
    while (is_digit(j, p)) {
      if (sig < 19) {
        m = m * 10 + (unsigned)(*p - '0');
        frac++;
      }
      if (m != 0) sig++;
      p++;
    }
  }
  if (p < j->end && (*p == 'e' || *p == 'E')) {
    int eneg = 0;
    p++;
    if (p < j->end && (*p == '+' || *p == '-'))
      eneg = (*p++ == '-');
    if (!is_digit(j, p)) {
      j->p = p;
      jerror(L, j, "invalid number");
    }
    while (is_digit(j, p)) {
      if (ex < 100000) ex = ex * 10 + (*p - '0');
      p++;
    }
    if (eneg) ex = -ex;
  }
  j->p = p;
  e10 = (int)ex - frac;
  if (sig <= 15 && e10 >= -22 && e10 <= 22) {
    double d = (double)m;
    d = (e10 < 0) ? d / POW10[-e10] : d * POW10[e10];
    lua_pushnumber(L, neg ? -d : d);
    return;
  }
  lua_pushlstring(L, s, (size_t)(p - s));
#if LUA_VERSION_NUM >= 503
  if (lua_stringtonumber(L, lua_tostring(L, -1)) == 0)
    jerror(L, j, "invalid number");
  {
    lua_Number d = lua_tonumber(L, -1);   /* Lua may have made an integer */
    lua_pop(L, 2);
    lua_pushnumber(L, d);
  }
#else
  {
    lua_Number d = (lua_Number)strtod(lua_tostring(L, -1), NULL);
    lua_pop(L, 1);
    lua_pushnumber(L, d);
  }
#endif
}

static int parse_value(lua_State *L, jparser *j);

/* Raises when a container would pass the nesting limit. */
static void enter(lua_State *L, jparser *j) {
  if (++j->depth > HI_JSON_MAX_DEPTH)
    jerror(L, j, "too many nested data structures");
  luaL_checkstack(L, 6, "JSON nesting");
}

#if LUA_VERSION_NUM >= 503
/*
** Stack: ... t key value(number). If int_keys[key] is true and the value
** is integral and fits, the value becomes that integer.
*/
static void type_integer(lua_State *L, int keys) {
  lua_Integer iv;
  lua_Number d;
  lua_pushvalue(L, -2);
  lua_rawget(L, keys);
  if (!lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  d = lua_tonumber(L, -1);
  if (lua_numbertointeger(d, &iv) && (lua_Number)iv == d) {
    lua_pop(L, 1);
    lua_pushinteger(L, iv);
  }
}
#endif

/* The object at j->p ('{'): pushes a table. A null member clears the key,
** so a later duplicate null wins over an earlier value, as before. */
static void parse_object(lua_State *L, jparser *j) {
  int t, n = 0;
  enter(L, j);
  lua_createtable(L, 0, j->ohint[j->depth]);
  t = lua_gettop(L);
  j->p++;
  skip_ws(j);
  if (j->p < j->end && *j->p == '}') {
    j->p++;
    j->depth--;
    return;
  }
  for (;;) {
    skip_ws(j);
    if (j->p >= j->end || *j->p != '"')
      jerror(L, j, "expected an object key");
    parse_string(L, j);
    skip_ws(j);
    if (j->p >= j->end || *j->p != ':')
      jerror(L, j, "expected ':'");
    j->p++;
    skip_ws(j);
    if (parse_value(L, j)) {
      n++;
#if LUA_VERSION_NUM >= 503
      if (j->keys != 0 && lua_type(L, -1) == LUA_TNUMBER)
        type_integer(L, j->keys);
#endif
    }
    lua_rawset(L, t);
    skip_ws(j);
    if (j->p < j->end && *j->p == ',') {
      j->p++;
      continue;
    }
    if (j->p < j->end && *j->p == '}') {
      j->p++;
      break;
    }
    jerror(L, j, "expected ',' or '}'");
  }
  j->ohint[j->depth] = n < HINT_MAX ? n : HINT_MAX;
  j->depth--;
}

/* The array at j->p ('['): pushes a table; nulls are left out and the
** rest kept in order from 1. Numbers in arrays stay floats. */
static void parse_array(lua_State *L, jparser *j) {
  int t;
  lua_Integer n = 0;
  enter(L, j);
  lua_createtable(L, j->ahint[j->depth], 0);
  t = lua_gettop(L);
  j->p++;
  skip_ws(j);
  if (j->p < j->end && *j->p == ']') {
    j->p++;
    j->depth--;
    return;
  }
  for (;;) {
    skip_ws(j);
    if (parse_value(L, j))
      lua_rawseti(L, t, ++n);
    else
      lua_pop(L, 1);
    skip_ws(j);
    if (j->p < j->end && *j->p == ',') {
      j->p++;
      continue;
    }
    if (j->p < j->end && *j->p == ']') {
      j->p++;
      break;
    }
    jerror(L, j, "expected ',' or ']'");
  }
  j->ahint[j->depth] = n < HINT_MAX ? (int)n : HINT_MAX;
  j->depth--;
}

/* Matches the literal word at j->p. */
static int literal(jparser *j, const char *word, size_t n) {
  if ((size_t)(j->end - j->p) >= n && memcmp(j->p, word, n) == 0) {
    j->p += n;
    return 1;
  }
  return 0;
}

/* Pushes the value at j->p (nil for null). Returns 0 for null, else 1. */
static int parse_value(lua_State *L, jparser *j) {
  if (j->p >= j->end)
    jerror(L, j, "expected a value but found the end");
  switch (*j->p) {
    case '{': parse_object(L, j); return 1;
    case '[': parse_array(L, j); return 1;
    case '"': parse_string(L, j); return 1;
    case 't':
      if (literal(j, "true", 4)) { lua_pushboolean(L, 1); return 1; }
      break;
    case 'f':
      if (literal(j, "false", 5)) { lua_pushboolean(L, 0); return 1; }
      break;
    case 'n':
      if (literal(j, "null", 4)) { lua_pushnil(L); return 0; }
      break;
    default:
      if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9')) {
        parse_number(L, j);
        return 1;
      }
      break;
  }
  return jerror(L, j, "expected a value");
}

/*
** Run under lua_pcall by l_json_decode: (parser, int_keys or nil) ->
** value, is_null. Raises on malformed text.
*/
static int decode_protected(lua_State *L) {
  jparser *j = (jparser *)lua_touserdata(L, 1);
  int got;
  j->keys = lua_istable(L, 2) ? 2 : 0;
  skip_ws(j);
  got = parse_value(L, j);
  skip_ws(j);
  if (j->p != j->end)
    jerror(L, j, "expected the end of the text");
  lua_pushboolean(L, !got);
  return 2;
}

/* }====================================================== */


/*
** {======================================================
** Lua functions
** =======================================================
*/

/* Upvalue of both functions: the private instance's encode (json_decode
** has no use for it). */
#define UP_ENCODE 1

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
** non-table int_keys, and on out of memory.
*/
static int l_json_decode(lua_State *L) {
  jparser j;
  size_t len;
  int st;
  luaL_checktype(L, 1, LUA_TSTRING);   /* not checklstring: no numbers */
  j.start = j.p = lua_tolstring(L, 1, &len);
  j.end = j.start + len;
  j.depth = 0;
  j.keys = 0;
  memset(j.ohint, 0, sizeof(j.ohint));
  memset(j.ahint, 0, sizeof(j.ahint));
  if (!lua_isnoneornil(L, 2))
    luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_pushcfunction(L, decode_protected);
  lua_pushlightuserdata(L, &j);
  lua_pushvalue(L, 2);
  st = lua_pcall(L, 2, 2, 0);
  if (st == LUA_ERRMEM)
    return lua_error(L);
  if (st != 0) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  if (lua_toboolean(L, -1)) {
    lua_pushnil(L);
    lua_pushliteral(L, "the JSON text is null");
    return 2;
  }
  lua_pop(L, 1);
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
** Each function gets the private instance's own encode as its upvalue; that
** cjson closure carries the instance's configuration, so nothing is global
** and the host cannot reach it.
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
  lua_pushinteger(L, HI_JSON_MAX_DEPTH);
  configure(L, inst, "encode_max_depth", 1);
  lua_pushboolean(L, 0);
  lua_pushinteger(L, 1);
  lua_pushinteger(L, 0);
  configure(L, inst, "encode_sparse_array", 3);
  /* luaL_setfuncs(L, funcs, 1), spelled out so it also builds on 5.1. */
  for (r = funcs; r->name != NULL; r++) {
    lua_getfield(L, inst, "encode");      /* UP_ENCODE */
    lua_pushcclosure(L, r->func, 1);
    lua_setfield(L, mod, r->name);
  }
  lua_settop(L, mod);
}
