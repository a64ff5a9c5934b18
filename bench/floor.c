/*
** bench/floor.c: `bench_floor`, the least a Lua program can do to page
** through the service: one libcurl easy handle reused for keep-alive, a
** POST, the body returned as a Lua string. Built only for `make bench`; it
** shares no code with healthimaging.core, so the floor does not move when
** the library's own transport gets faster. No signing, no validation.
*/
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <lua.h>
#include <lauxlib.h>

#define FLOOR_MT "bench_floor.handle"

typedef struct floor_handle {
  CURL *curl;
  struct curl_slist *headers;
  char *data;
  size_t len, cap;
} floor_handle;

/* Body bytes go to a C buffer: no Lua call may run inside curl. */
static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
  floor_handle *h = ud;
  size_t n = size * nmemb;
  if (h->len + n > h->cap) {
    size_t ncap = h->cap ? h->cap : 65536;
    char *nd;
    while (ncap < h->len + n)
      ncap *= 2;
    nd = realloc(h->data, ncap);
    if (nd == NULL)
      return 0;
    h->data = nd;
    h->cap = ncap;
  }
  memcpy(h->data + h->len, p, n);
  h->len += n;
  return n;
}

/* floor.new() -> handle. Raises when curl cannot start. */
static int l_new(lua_State *L) {
  floor_handle *h = lua_newuserdata(L, sizeof(*h));
  memset(h, 0, sizeof(*h));
  luaL_setmetatable(L, FLOOR_MT);
  h->curl = curl_easy_init();
  if (h->curl == NULL)
    return luaL_error(L, "curl_easy_init failed");
  h->headers = curl_slist_append(NULL, "Content-Type: application/json");
  h->headers = curl_slist_append(h->headers, "Authorization: AWS4-HMAC-SHA256 floor-sends-no-signature");
  curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, h->headers);
  curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, (void *)h);
  curl_easy_setopt(h->curl, CURLOPT_TIMEOUT, 30L);
  return 1;
}

/* handle:post(url, body) -> status, body | nil, message. */
static int meth_post(lua_State *L) {
  floor_handle *h = luaL_checkudata(L, 1, FLOOR_MT);
  const char *url = luaL_checkstring(L, 2);
  size_t blen;
  const char *body = luaL_checklstring(L, 3, &blen);
  long status = 0;
  CURLcode rc;
  h->len = 0;
  curl_easy_setopt(h->curl, CURLOPT_URL, url);
  curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE, (long)blen);
  curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, body);
  rc = curl_easy_perform(h->curl);
  if (rc != CURLE_OK) {
    lua_pushnil(L);
    lua_pushstring(L, curl_easy_strerror(rc));
    return 2;
  }
  curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
  lua_pushinteger(L, status);
  lua_pushlstring(L, h->data ? h->data : "", h->len);
  return 2;
}

/* __gc: frees the handle and its connection. */
static int meth_gc(lua_State *L) {
  floor_handle *h = luaL_checkudata(L, 1, FLOOR_MT);
  if (h->curl)
    curl_easy_cleanup(h->curl);
  curl_slist_free_all(h->headers);
  free(h->data);
  memset(h, 0, sizeof(*h));
  return 0;
}

/* floor.sleep(seconds): the consumer time of the third workload. */
static int l_sleep(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  struct timespec ts;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
  return 0;
}

static const luaL_Reg meth[] = {
  {"post", meth_post},
  {"__gc", meth_gc},
  {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"new",   l_new},
  {"sleep", l_sleep},
  {NULL, NULL}
};

__attribute__((visibility("default"))) int luaopen_bench_floor(lua_State *L);

int luaopen_bench_floor(lua_State *L) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  luaL_newmetatable(L, FLOOR_MT);
  luaL_setfuncs(L, meth, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
