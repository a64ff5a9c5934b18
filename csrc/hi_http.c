/*
** hi_http.c: HTTP/1.1 transport on one reused libcurl easy handle, driven
** through a private multi handle so that a request can be started now and
** finished later (the paginator's prefetch) on the same keep-alive
** connection. Each call: validate Lua arguments, run curl with no Lua calls,
** then push (status, headers, body) or (nil, err). TLS verification is always
** on; redirects are never followed; only http/https. One transfer at a time.
*/
#define _POSIX_C_SOURCE 200809L  /* nanosleep */

#include <errno.h>
#include <time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "hi_core.h"
#include "hi_http.h"

#if LUA_VERSION_NUM < 502
#define hi_rawlen(L, i) lua_objlen((L), (i))
#else
#define hi_rawlen(L, i) lua_rawlen((L), (i))
#endif

#define DEFAULT_TIMEOUT_S          30.0
#define DEFAULT_CONNECT_TIMEOUT_S   5.0
#define DEFAULT_MAX_RESPONSE   (64u * 1024u * 1024u)
/* Buffers above this are given back after each request instead of being
** kept for the next one (a 60 MiB body should not pin 64 MiB forever). */
#define KEEP_BUFFER_BYTES      (1024u * 1024u)
/* Largest timeout accepted, in seconds: keeps the _MS value inside a
** 32-bit long (about 24 days). */
#define MAX_TIMEOUT_S          2147483.0


/*
** {======================================================
** Process-wide libcurl initialisation (the only global state)
** =======================================================
*/

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

/* curl_global_init is not reentrant before 7.84, and must run once per
** process whatever the number of Lua states: pthread_once gives both. */
static void global_init(void) {
  global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* }====================================================== */


/*
** {======================================================
** Handle and growable buffers
** =======================================================
*/

/* A growable byte buffer; owned by the handle so a raise cannot leak it. */
typedef struct hi_buf {
  char *data;
  size_t len;
  size_t cap;
} hi_buf;

typedef struct hi_http {
  CURL *curl;                       /* NULL once closed */
  CURLM *multi;                     /* drives curl; owns the connection cache */
  int added;                        /* curl is in multi */
  int pending;                      /* a started request not yet finished */
  int done;                         /* that transfer is over; result holds why */
  CURLcode result;
  lua_Integer ticket;               /* number of the latest started transfer */
  long timeout_ms;                  /* budget of waiting per transfer */
  long waited_ms;                   /* waited so far for the one in flight */
  curl_off_t body_len;              /* bytes of request body to send */
  struct curl_slist *req_headers;   /* headers of the request in flight */
  hi_buf body;                      /* response body */
  hi_buf head;                      /* raw header lines of the final response */
  size_t max_response;              /* cap for body and for header bytes */
  int too_large;                    /* set by the callbacks, reset per request */
  int oom;
  char errbuf[CURL_ERROR_SIZE];
} hi_http;

/* Options of http_new, read before anything is allocated. */
typedef struct hi_opts {
  long timeout_ms;
  long connect_timeout_ms;
  const char *ca_bundle;            /* Lua strings anchored on the stack */
  const char *proxy;
  int verbose;
  size_t max_response;
} hi_opts;

/* Frees the storage; the buffer is left empty and reusable. */
static void buf_free(hi_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* Empties the buffer for the next request, giving back big allocations. */
static void buf_reset(hi_buf *b) {
  if (b->cap > KEEP_BUFFER_BYTES)
    buf_free(b);
  b->len = 0;
}

/*
** Appends n bytes, refusing to grow past max. Returns 0 on success, 1 when
** max would be exceeded, 2 when out of memory. Never touches Lua: it runs
** inside curl callbacks.
*/
static int buf_append(hi_buf *b, const char *p, size_t n, size_t max) {
  if (n > max || b->len > max - n)
    return 1;
  if (b->len + n > b->cap) {
    size_t ncap = b->cap ? b->cap : 4096;
    char *nd;
    while (ncap < b->len + n)
      ncap = (ncap > max / 2) ? max : ncap * 2;
    nd = (char *)realloc(b->data, ncap);
    if (nd == NULL)
      return 2;
    b->data = nd;
    b->cap = ncap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

/* Takes the easy handle out of the multi handle. An unfinished transfer
** is abandoned: curl then closes its connection, since the rest of the
** response would otherwise be read as the next one. */
static void detach(hi_http *h) {
  if (h->added) {
    curl_multi_remove_handle(h->multi, h->curl);
    h->added = 0;
  }
}

/* Releases everything the handle owns; safe on a half-built or closed
** handle, so __gc, __close and close() all use it. */
static void http_free(hi_http *h) {
  if (h->curl != NULL) {
    detach(h);
    curl_easy_cleanup(h->curl);
    h->curl = NULL;
  }
  if (h->multi != NULL) {
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
  }
  curl_slist_free_all(h->req_headers);
  h->req_headers = NULL;
  buf_free(&h->body);
  buf_free(&h->head);
}

/* }====================================================== */


/*
** {======================================================
** curl callbacks (no Lua API calls in here)
** =======================================================
*/

/* Records why a callback refused data; returning 0 makes curl abort the
** transfer with CURLE_WRITE_ERROR, which classify() then explains. */
static size_t store(hi_http *h, hi_buf *b, const char *p, size_t n) {
  int r = buf_append(b, p, n, h->max_response);
  if (r == 1)
    h->too_large = 1;
  else if (r == 2)
    h->oom = 1;
  return r == 0 ? n : 0;
}

/* CURLOPT_WRITEFUNCTION: the body goes to the handle's buffer, not to
** Lua, so nothing can raise while curl is running. */
static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
  hi_http *h = (hi_http *)ud;
  return store(h, &h->body, p, size * nmemb);
}

/* A status line starts a new header block: 1xx interim responses come
** first, and only the final response's headers are returned. */
static size_t on_header(char *p, size_t size, size_t nmemb, void *ud) {
  hi_http *h = (hi_http *)ud;
  size_t n = size * nmemb;
  if (n >= 5 && memcmp(p, "HTTP/", 5) == 0)
    h->head.len = 0;
  return store(h, &h->head, p, n);
}

/* ASCII case-insensitive test of a header name against a lowercase one. */
static int name_is(const char *name, size_t len, const char *lower) {
  size_t i;
  for (i = 0; i < len; i++) {
    char c = name[i];
    if (c >= 'A' && c <= 'Z')
      c = (char)(c - 'A' + 'a');
    if (lower[i] == '\0' || c != lower[i])
      return 0;
  }
  return lower[len] == '\0';
}

/* Headers whose values must never reach a log, even a verbose one. */
static int is_secret_header(const char *name, size_t len) {
  return name_is(name, len, "authorization") ||
         name_is(name, len, "proxy-authorization") ||
         name_is(name, len, "x-amz-security-token") ||
         name_is(name, len, "cookie");
}

/* Writes a header block to stderr line by line, redacting secret values. */
static void trace_headers(const char *prefix, const char *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t e = i, c;
    while (e < n && p[e] != '\n')
      e++;
    c = i;
    while (c < e && p[c] != ':')
      c++;
    if (c < e && is_secret_header(p + i, c - i))
      fprintf(stderr, "%s%.*s: [redacted]\n", prefix, (int)(c - i), p + i);
    else if (e > i)
      fprintf(stderr, "%s%.*s\n", prefix, (int)(e - i - (p[e - 1] == '\r')),
              p + i);
    i = e + 1;
  }
}

/*
** CURLOPT_VERBOSE's default trace prints request headers verbatim, which
** would log the Authorization header; this one redacts secrets and shows
** bodies only by their size (they may hold patient data).
*/
static int on_debug(CURL *c, curl_infotype type, char *p, size_t n,
                    void *ud) {
  (void)c;
  (void)ud;
  switch (type) {
    case CURLINFO_TEXT:
      fprintf(stderr, "* %.*s", (int)n, p);
      break;
    case CURLINFO_HEADER_OUT:
      trace_headers("> ", p, n);
      break;
    case CURLINFO_HEADER_IN:
      trace_headers("< ", p, n);
      break;
    case CURLINFO_DATA_OUT:
      fprintf(stderr, "> [%lu bytes of body]\n", (unsigned long)n);
      break;
    case CURLINFO_DATA_IN:
      fprintf(stderr, "< [%lu bytes of body]\n", (unsigned long)n);
      break;
    default:
      break;
  }
  return 0;
}

/* }====================================================== */


/*
** {======================================================
** Argument reading (may raise; allocates only into the handle)
** =======================================================
*/

/* Raises "bad argument #arg to 'fn' (field 'name' ...)". */
static int field_error(lua_State *L, int arg, const char *name,
                       const char *what) {
  return luaL_argerror(L, arg, lua_pushfstring(L, "field '%s' %s", name,
                                               what));
}

/* Reads an optional positive number of seconds as milliseconds (at least
** 1 ms, so a fraction never turns into curl's "no timeout" 0). Raises. */
static long opt_seconds(lua_State *L, const char *name, double dflt) {
  double s = dflt;
  lua_getfield(L, 1, name);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      field_error(L, 1, name, "must be a positive number of seconds");
    s = (double)lua_tonumber(L, -1);
    if (!(s > 0 && s <= MAX_TIMEOUT_S))   /* also rejects NaN */
      field_error(L, 1, name, "must be a positive number of seconds");
  }
  lua_pop(L, 1);
  return (s * 1000.0 < 1.0) ? 1L : (long)(s * 1000.0 + 0.5);
}

/* Reads an optional string field, leaving it on the stack (anchored)
** until the caller is done with the pointer. Raises. */
static const char *opt_string(lua_State *L, const char *name) {
  lua_getfield(L, 1, name);
  if (lua_isnil(L, -1))
    return NULL;
  if (lua_type(L, -1) != LUA_TSTRING)
    field_error(L, 1, name, "must be a string");
  return lua_tostring(L, -1);
}

/* Reads http_new's option table into o; pushes the two option strings
** (or nils), which must stay on the stack while o is in use. Raises. */
static void read_opts(lua_State *L, hi_opts *o) {
  o->timeout_ms = 0;
  o->connect_timeout_ms = 0;
  o->ca_bundle = o->proxy = NULL;
  o->verbose = 0;
  o->max_response = DEFAULT_MAX_RESPONSE;
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  o->timeout_ms = opt_seconds(L, "timeout", DEFAULT_TIMEOUT_S);
  o->connect_timeout_ms = opt_seconds(L, "connect_timeout",
                                      DEFAULT_CONNECT_TIMEOUT_S);
  lua_getfield(L, 1, "verbose");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TBOOLEAN)
      field_error(L, 1, "verbose", "must be a boolean");
    o->verbose = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  lua_getfield(L, 1, "max_response_bytes");
  if (!lua_isnil(L, -1)) {
    double m = (lua_type(L, -1) == LUA_TNUMBER) ? (double)lua_tonumber(L, -1)
                                                : -1.0;
    if (!(m >= 1 && m <= 1099511627776.0 && m == (double)(size_t)m))
      field_error(L, 1, "max_response_bytes", "must be a positive integer");
    o->max_response = (size_t)m;
  }
  lua_pop(L, 1);
  o->ca_bundle = opt_string(L, "ca_bundle");   /* stack slot 2 */
  o->proxy = opt_string(L, "proxy");           /* stack slot 3 */
}

/* RFC 9110 token: method and header-name characters. */
static int is_token(const char *s, size_t len) {
  size_t i;
  if (len == 0)
    return 0;
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c) != NULL) ||
        c == '\0')
      return 0;
  }
  return 1;
}

/* True if s holds CR, LF or NUL: each would let a caller inject headers
** or silently truncate what curl sends. */
static int has_crlf_nul(const char *s, size_t len) {
  size_t i;
  for (i = 0; i < len; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
      return 1;
  return 0;
}

/* Appends one "Name: value" line to h->req_headers. An empty value uses
** curl's "Name;" form: "Name:" would instead delete the header. Raises. */
static void add_header(lua_State *L, hi_http *h, const char *line) {
  struct curl_slist *n = curl_slist_append(h->req_headers, line);
  if (n == NULL)
    luaL_error(L, "not enough memory");
  h->req_headers = n;
}

/* Which of curl's automatic headers the caller supplied itself. */
typedef struct seen_headers {
  int content_type, accept, expect;
} seen_headers;

/*
** Copies req.headers (an array of {name, value} pairs) into
** h->req_headers, rejecting anything that is not a pair of strings or that
** holds CR/LF/NUL. Messages name the entry, never its value. Raises.
*/
static void read_headers(lua_State *L, hi_http *h, seen_headers *seen) {
  int i, n;
  lua_getfield(L, 2, "headers");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  if (lua_type(L, -1) != LUA_TTABLE)
    field_error(L, 2, "headers", "must be a table");
  n = (int)hi_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    size_t nl, vl;
    const char *name, *value;
    lua_rawgeti(L, -1, i);
    if (lua_type(L, -1) != LUA_TTABLE)
      goto not_pair;
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
      goto not_pair;
    name = lua_tolstring(L, -2, &nl);
    value = lua_tolstring(L, -1, &vl);
    if (has_crlf_nul(name, nl) || has_crlf_nul(value, vl))
      luaL_argerror(L, 2, lua_pushfstring(L, "field 'headers' entry %d "
                    "contains CR, LF or NUL", i));
    if (!is_token(name, nl))
      luaL_argerror(L, 2, lua_pushfstring(L, "field 'headers' entry %d "
                    "has an invalid name", i));
    seen->content_type |= name_is(name, nl, "content-type");
    seen->accept |= name_is(name, nl, "accept");
    seen->expect |= name_is(name, nl, "expect");
    add_header(L, h, vl ? lua_pushfstring(L, "%s: %s", name, value)
                        : lua_pushfstring(L, "%s;", name));
    lua_pop(L, 4);                  /* line, value, name, entry */
  }
  lua_pop(L, 1);
  return;
not_pair:
  luaL_argerror(L, 2, lua_pushfstring(L, "field 'headers' entry %d must be "
                "a {name, value} pair of strings", i));
}

/* }====================================================== */


/*
** {======================================================
** Request
** =======================================================
*/

#define SETOPT(rc, c, opt, val) \
  do { if ((rc) == CURLE_OK) (rc) = curl_easy_setopt((c), (opt), (val)); } \
  while (0)

/* Checks that argument 1 is a transport handle. Raises. */
static hi_http *check_http(lua_State *L) {
  return (hi_http *)luaL_checkudata(L, 1, HI_HTTP_MT);
}

/* Checks that argument 1 is an open transport handle. Raises. */
static hi_http *check_open(lua_State *L) {
  hi_http *h = check_http(L);
  if (h->curl == NULL)
    luaL_error(L, "transport is closed");
  return h;
}

/* Sets the per-request options. A failure (out of memory while curl
** copies a string) is returned like a transfer error. */
static CURLcode set_request(hi_http *h, const char *method, const char *url,
                            const char *body, size_t body_len) {
  CURL *c = h->curl;
  CURLcode rc = CURLE_OK;
  int is_get = strcmp(method, "GET") == 0;
  int is_head = strcmp(method, "HEAD") == 0;
  int is_post = strcmp(method, "POST") == 0;
  SETOPT(rc, c, CURLOPT_URL, url);
  SETOPT(rc, c, CURLOPT_HTTPHEADER, h->req_headers);
  /* Back to a plain GET, whatever the previous request was. */
  SETOPT(rc, c, CURLOPT_NOBODY, 0L);
  SETOPT(rc, c, CURLOPT_CUSTOMREQUEST, (char *)NULL);
  SETOPT(rc, c, CURLOPT_HTTPGET, 1L);
  if (body != NULL || is_post) {
    /* Size first: COPYPOSTFIELDS then copies exactly that many bytes,
    ** NULs included. */
    SETOPT(rc, c, CURLOPT_POSTFIELDSIZE_LARGE,
           (curl_off_t)(body ? body_len : 0));
    SETOPT(rc, c, CURLOPT_COPYPOSTFIELDS, body ? body : "");
  }
  if (is_head)
    SETOPT(rc, c, CURLOPT_NOBODY, 1L);
  else if (!is_post && !(is_get && body == NULL))
    SETOPT(rc, c, CURLOPT_CUSTOMREQUEST, method);
  return rc;
}

/* Maps a curl failure to the err fields. The message is curl's own text,
** which never includes request headers or bodies. */
static void classify(hi_http *h, CURLcode rc, const char **code_out,
                     const char **prefix_out, int *retry_out) {
  const char *code = "HTTPClientError", *prefix = "";
  int retry = 0;
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
      code = "TimeoutError"; retry = 1;
      break;
    case CURLE_COULDNT_CONNECT: case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR: case CURLE_GOT_NOTHING: case CURLE_PARTIAL_FILE:
    case CURLE_WEIRD_SERVER_REPLY:  /* a peer that did not speak HTTP: a broken connection */
      code = "ConnectionError"; retry = 1;
      break;
    case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_RESOLVE_PROXY:
      code = "ResolveError";
      break;
    case CURLE_PEER_FAILED_VERIFICATION: case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR: case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS: case CURLE_SSL_CRL_BADFILE:
      code = "TLSError"; prefix = "TLS verification failed: ";
      break;
    case CURLE_SSL_CONNECT_ERROR: case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER: case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED: case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED: case CURLE_SSL_CLIENTCERT:
    case CURLE_USE_SSL_FAILED:
      /* Not a verdict on the peer's certificate: the handshake itself
      ** failed (e.g. https to a plain-HTTP port), so verification could
      ** not succeed either. */
      code = "TLSError"; prefix = "TLS handshake failed (peer not verified): ";
      break;
    case CURLE_WRITE_ERROR:
      if (h->too_large)
        code = "ResponseTooLarge";
      break;
    default:
      break;
  }
  *code_out = code;
  *prefix_out = prefix;
  *retry_out = retry;
}

/* Pushes nil, err for a failed transfer. Raises only on out of memory. */
static int push_error(lua_State *L, hi_http *h, CURLcode rc) {
  const char *code, *prefix;
  int retry;
  classify(h, rc, &code, &prefix, &retry);
  lua_pushnil(L);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, code);
  lua_setfield(L, -2, "code");
  if (h->too_large) {
    char limit[32];
    snprintf(limit, sizeof(limit), "%lu", (unsigned long)h->max_response);
    lua_pushfstring(L, "response exceeds max_response_bytes (%s)", limit);
  } else if (h->oom)
    lua_pushliteral(L, "out of memory while receiving the response");
  else
    lua_pushfstring(L, "%s%s", prefix,
                    h->errbuf[0] ? h->errbuf : curl_easy_strerror(rc));
  lua_setfield(L, -2, "message");
  lua_pushboolean(L, retry);
  lua_setfield(L, -2, "retryable");
  lua_pushinteger(L, (lua_Integer)rc);
  lua_setfield(L, -2, "curl_code");
  return 2;
}

/* True for the whitespace trimmed around header names and values. */
static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
** Builds the headers table from the raw lines in h->head: lowercase name
** -> value, repeated names joined with ", ". Lines without a colon (status
** line, blank line, obsolete folding) are skipped. Lowercases in place in
** the handle's own buffer. Raises only on out of memory.
*/
static void push_headers(lua_State *L, hi_http *h) {
  char *p = h->head.data;
  size_t n = h->head.len, i = 0;
  lua_newtable(L);
  while (i < n) {
    size_t e = i, c, ns, ne, vs, ve, k;
    while (e < n && p[e] != '\n')
      e++;
    for (c = i; c < e && p[c] != ':'; c++)
      ;
    if (c < e && c > i && !is_space(p[i])) {
      ns = i; ne = c;
      while (ne > ns && is_space(p[ne - 1]))
        ne--;
      vs = c + 1; ve = e;
      while (vs < ve && is_space(p[vs]))
        vs++;
      while (ve > vs && is_space(p[ve - 1]))
        ve--;
      for (k = ns; k < ne; k++)
        if (p[k] >= 'A' && p[k] <= 'Z')
          p[k] = (char)(p[k] - 'A' + 'a');
      lua_pushlstring(L, p + ns, ne - ns);
      lua_pushvalue(L, -1);
      lua_rawget(L, -3);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushlstring(L, p + vs, ve - vs);
      } else {
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, p + vs, ve - vs);
        lua_concat(L, 3);
      }
      lua_rawset(L, -3);
    }
    i = e + 1;
  }
}

/* Milliseconds of a monotonic clock, for the per-transfer time budget. */
static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* True once the whole request, head and body, has been handed to the
** socket: from then on the server can answer while Lua runs. */
static int request_sent(hi_http *h) {
  long head = 0;
  curl_off_t up = 0;
  curl_easy_getinfo(h->curl, CURLINFO_REQUEST_SIZE, &head);
  curl_easy_getinfo(h->curl, CURLINFO_SIZE_UPLOAD_T, &up);
  return head > 0 && up >= h->body_len;
}

#define UNTIL_SENT 1
#define UNTIL_DONE 2

/*
** Runs the transfer in flight until it is over (UNTIL_DONE) or until its
** request is fully sent (UNTIL_SENT). Only the time spent in here counts
** against timeout_ms: curl's own CURLOPT_TIMEOUT would also count the time
** between start and finish, when the caller is busy with the previous page
** and the answer waits in the socket buffer. No Lua calls.
*/
static void drive(hi_http *h, int until) {
  while (!h->done) {
    int running = 0, left = 0;
    long remaining;
    double t0 = now_ms();
    CURLMsg *msg;
    CURLMcode mc = curl_multi_perform(h->multi, &running);
    if (mc != CURLM_OK) {
      h->result = (mc == CURLM_OUT_OF_MEMORY) ? CURLE_OUT_OF_MEMORY : CURLE_FAILED_INIT;
      h->done = 1;
      break;
    }
    while ((msg = curl_multi_info_read(h->multi, &left)) != NULL)
      if (msg->msg == CURLMSG_DONE && msg->easy_handle == h->curl) {
        h->result = msg->data.result;
        h->done = 1;
      }
    if (h->done || (until == UNTIL_SENT && request_sent(h)))
      break;
    remaining = h->timeout_ms - h->waited_ms;
    if (remaining <= 0) {
      curl_off_t got = 0;
      curl_easy_getinfo(h->curl, CURLINFO_SIZE_DOWNLOAD_T, &got);
      snprintf(h->errbuf, sizeof(h->errbuf), "Operation timed out after %ld milliseconds with %"
               CURL_FORMAT_CURL_OFF_T " bytes received", h->waited_ms, got);
      h->result = CURLE_OPERATION_TIMEDOUT;
      h->done = 1;
      break;
    }
#if LIBCURL_VERSION_NUM >= 0x074200
    mc = curl_multi_poll(h->multi, NULL, 0, remaining > 1000 ? 1000 : (int)remaining, NULL);
#else
    mc = curl_multi_wait(h->multi, NULL, 0, remaining > 1000 ? 1000 : (int)remaining, NULL);
#endif
    (void)mc;   /* a failed wait shows up in the next perform */
    h->waited_ms += (long)(now_ms() - t0 + 0.5);
  }
}

/* Forgets the request in flight: out of the multi handle, its headers
** freed. An unfinished transfer's connection is closed by curl. */
static void abandon(hi_http *h) {
  detach(h);
  h->pending = 0;
  curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
  curl_slist_free_all(h->req_headers);
  h->req_headers = NULL;
}

/*
** Reads the request table at index 2 and starts its transfer, returning
** once the request is sent (or the transfer is over). A transfer still in
** flight on this handle is abandoned first. Raises on misuse (messages name
** the field); transfer failures are kept for finish().
*/
static void begin(lua_State *L, hi_http *h) {
  const char *method, *url, *body = NULL;
  size_t method_len, url_len, body_len = 0;
  seen_headers seen = {0, 0, 0};
  CURLcode rc;

  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  /* Start clean: the last request's leftovers are freed here or by __gc. */
  abandon(h);
  buf_reset(&h->body);
  buf_reset(&h->head);
  h->too_large = h->oom = 0;
  h->errbuf[0] = '\0';

  /* Phase 1: read and validate; strings stay anchored at slots 3-5. */
  lua_getfield(L, 2, "method");
  if (lua_type(L, -1) != LUA_TSTRING)
    field_error(L, 2, "method", "must be a string");
  method = lua_tolstring(L, -1, &method_len);
  if (!is_token(method, method_len))
    field_error(L, 2, "method", "must be an HTTP token");
  lua_getfield(L, 2, "url");
  if (lua_type(L, -1) != LUA_TSTRING)
    field_error(L, 2, "url", "must be a string");
  url = lua_tolstring(L, -1, &url_len);
  if (has_crlf_nul(url, url_len))
    field_error(L, 2, "url", "contains CR, LF or NUL");
  lua_getfield(L, 2, "body");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      field_error(L, 2, "body", "must be a string");
    body = lua_tolstring(L, -1, &body_len);
  }
  read_headers(L, h, &seen);
  /* Send only what the caller asked for: no 100-continue round trip, and
  ** none of curl's default Accept / form Content-Type. */
  if (!seen.expect)
    add_header(L, h, "Expect:");
  if (!seen.accept)
    add_header(L, h, "Accept:");
  if (!seen.content_type)
    add_header(L, h, "Content-Type:");

  /* Phase 2: start the transfer; no Lua API calls from here. */
  h->ticket++;
  h->pending = 1;
  h->done = 0;
  h->result = CURLE_OK;
  h->waited_ms = 0;
  h->body_len = (curl_off_t)body_len;
  rc = set_request(h, method, url, body, body_len);
  if (rc == CURLE_OK) {
    if (curl_multi_add_handle(h->multi, h->curl) == CURLM_OK)
      h->added = 1;
    else
      rc = CURLE_OUT_OF_MEMORY;
  }
  if (rc != CURLE_OK) {
    h->result = rc;
    h->done = 1;
  }
  drive(h, UNTIL_SENT);
}

/*
** Waits for the transfer in flight and pushes status, headers, body or
** nil, err. Raises only on out of memory (the buffers stay with the
** handle).
*/
static int collect(lua_State *L, hi_http *h) {
  long status = 0;
  CURLcode rc;
  int nret;
  drive(h, UNTIL_DONE);
  rc = h->result;
  if (rc == CURLE_OK)
    rc = curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
  abandon(h);   /* the transfer is over: this keeps its connection */

  /* Phase 3: push; a raise here leaves the buffers to the handle. */
  if (rc != CURLE_OK) {
    nret = push_error(L, h, rc);
    goto cleanup;
  }
  lua_pushinteger(L, (lua_Integer)status);
  push_headers(L, h);
  lua_pushlstring(L, h->body.data ? h->body.data : "", h->body.len);
  nret = 3;
cleanup:
  buf_reset(&h->body);
  buf_reset(&h->head);
  return nret;
}

/*
** handle:request{ method=, url=, headers={{name, value}...}, body= }
** -> status, headers, body | nil, err. Raises on misuse (messages name the
** field) and on a closed handle; transfer failures are returned.
*/
static int meth_request(lua_State *L) {
  hi_http *h = check_open(L);
  begin(L, h);
  return collect(L, h);
}

/*
** handle:start(req) -> ticket: sends the request (same table as request)
** and returns once it is on the wire, so the answer can arrive while Lua
** does something else; handle:finish(ticket) collects it. A transfer
** already in flight is abandoned. Raises as request does.
*/
static int meth_start(lua_State *L) {
  hi_http *h = check_open(L);
  begin(L, h);
  lua_pushinteger(L, h->ticket);
  return 1;
}

/*
** handle:finish(ticket) -> status, headers, body | nil, err, as request.
** A ticket that is no longer in flight (finished, cancelled, or replaced by
** a later start or request) gives nil, err with code RequestAbandoned and
** nothing sent: the caller may send it again.
*/
static int meth_finish(lua_State *L) {
  hi_http *h = check_open(L);
  lua_Integer ticket = luaL_checkinteger(L, 2);
  if (!h->pending || ticket != h->ticket) {
    lua_pushnil(L);
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, "RequestAbandoned");
    lua_setfield(L, -2, "code");
    lua_pushliteral(L, "the request is no longer in flight on this transport (finished, cancelled, "
                       "or replaced by a later request)");
    lua_setfield(L, -2, "message");
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "retryable");
    return 2;
  }
  return collect(L, h);
}

/*
** handle:cancel([ticket]) -> boolean: abandons the transfer in flight (only
** if it is ticket's, when given); true if there was one. Its connection is
** closed unless the answer had fully arrived. Works on a closed handle.
*/
static int meth_cancel(lua_State *L) {
  hi_http *h = check_http(L);
  int any = lua_isnoneornil(L, 2);
  lua_Integer ticket = any ? 0 : luaL_checkinteger(L, 2);
  int hit = h->curl != NULL && h->pending && (any || ticket == h->ticket);
  if (hit) {
    abandon(h);
    buf_reset(&h->body);
    buf_reset(&h->head);
  }
  lua_pushboolean(L, hit);
  return 1;
}

/* }====================================================== */


/*
** {======================================================
** Life cycle
** =======================================================
*/

/* Configures a fresh easy handle once; these options hold for every
** request the handle makes. */
static CURLcode configure(hi_http *h, const hi_opts *o) {
  CURL *c = h->curl;
  CURLcode rc = CURLE_OK;
  SETOPT(rc, c, CURLOPT_NOSIGNAL, 1L);
  SETOPT(rc, c, CURLOPT_ERRORBUFFER, h->errbuf);
  SETOPT(rc, c, CURLOPT_WRITEFUNCTION, on_body);
  SETOPT(rc, c, CURLOPT_WRITEDATA, (void *)h);
  SETOPT(rc, c, CURLOPT_HEADERFUNCTION, on_header);
  SETOPT(rc, c, CURLOPT_HEADERDATA, (void *)h);
  /* No CURLOPT_TIMEOUT_MS: drive() keeps the time budget (see there). */
  SETOPT(rc, c, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
#if LIBCURL_VERSION_NUM >= 0x075500
  SETOPT(rc, c, CURLOPT_PROTOCOLS_STR, "http,https");
  SETOPT(rc, c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
  SETOPT(rc, c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
  SETOPT(rc, c, CURLOPT_REDIR_PROTOCOLS,
         (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  SETOPT(rc, c, CURLOPT_FOLLOWLOCATION, 0L);
  SETOPT(rc, c, CURLOPT_SSL_VERIFYPEER, 1L);
  SETOPT(rc, c, CURLOPT_SSL_VERIFYHOST, 2L);
  /* HTTP/1.1 everywhere: one well-tested framing and error set. */
  SETOPT(rc, c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  SETOPT(rc, c, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
  if (o->ca_bundle != NULL)
    SETOPT(rc, c, CURLOPT_CAINFO, o->ca_bundle);
  /* An empty proxy disables curl's reading of http_proxy & co: the
  ** caller decides, explicitly. */
  SETOPT(rc, c, CURLOPT_PROXY, o->proxy ? o->proxy : "");
  if (o->verbose) {
    SETOPT(rc, c, CURLOPT_DEBUGFUNCTION, on_debug);
    SETOPT(rc, c, CURLOPT_VERBOSE, 1L);
  }
  return rc;
}

/*
** core.http_new([opts]) -> handle. Raises on misuse (messages name the
** field) and when curl cannot be initialised (out of memory).
*/
static int l_http_new(lua_State *L) {
  hi_opts o;
  hi_http *h;
  CURLcode rc;
  read_opts(L, &o);
  pthread_once(&global_once, global_init);
  if (global_rc != CURLE_OK)
    return luaL_error(L, "curl_global_init failed: %s",
                      curl_easy_strerror(global_rc));
  h = (hi_http *)lua_newuserdata(L, sizeof(hi_http));
  memset(h, 0, sizeof(*h));
  h->max_response = o.max_response;
  h->timeout_ms = o.timeout_ms;
  luaL_getmetatable(L, HI_HTTP_MT);
  lua_setmetatable(L, -2);
  /* From here the handle's __gc owns whatever gets allocated. */
  h->curl = curl_easy_init();
  if (h->curl == NULL)
    return luaL_error(L, "curl_easy_init failed");
  h->multi = curl_multi_init();
  if (h->multi == NULL) {
    http_free(h);
    return luaL_error(L, "curl_multi_init failed");
  }
  rc = configure(h, &o);
  if (rc != CURLE_OK) {
    http_free(h);
    return luaL_error(L, "cannot configure the transport: %s",
                      curl_easy_strerror(rc));
  }
  return 1;
}

/* handle:close(): frees the curl handle now; idempotent. Also __gc and
** __close (whose extra error argument is ignored). */
static int meth_close(lua_State *L) {
  http_free(check_http(L));
  return 0;
}

/*
** Waits `seconds` (the number at stack index idx): how the blocking
** transport waits between retries. It belongs to the transport so that a
** non-blocking transport can wait by yielding to its scheduler instead.
** Interrupted sleeps resume for the time left; a negative, NaN or huge
** value raises (programmer misuse).
*/
static int sleep_for(lua_State *L, int idx) {
  struct timespec ts, left;
  lua_Number s = luaL_checknumber(L, idx);
  luaL_argcheck(L, s >= 0 && s <= MAX_TIMEOUT_S, idx, "seconds must be between 0 and 2147483");
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &left) != 0 && errno == EINTR) ts = left;
  return 0;
}

/* handle:sleep(seconds); works on a closed handle too. */
static int meth_sleep(lua_State *L) {
  luaL_checkudata(L, 1, HI_HTTP_MT);
  return sleep_for(L, 2);
}

/* core.monotime(): seconds of a monotonic clock, with fractions, for rate
** measurements that must not jump with the wall clock. */
static int l_monotime(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* core.sleep(seconds), for callers without a transport at hand. */
static int l_sleep(lua_State *L) {
  return sleep_for(L, 1);
}

/* __tostring: the address identifies a handle in logs without showing
** anything about its requests. */
static int meth_tostring(lua_State *L) {
  lua_pushfstring(L, "%s (%p)", HI_HTTP_MT, lua_touserdata(L, 1));
  return 1;
}

/* }====================================================== */


static const luaL_Reg meth[] = {
  {"request",    meth_request},
  {"start",      meth_start},
  {"finish",     meth_finish},
  {"cancel",     meth_cancel},
  {"close",      meth_close},
  {"sleep",      meth_sleep},
  {"__gc",       meth_close},
  {"__close",    meth_close},
  {"__tostring", meth_tostring},
  {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"http_new", l_http_new},
  {"sleep",    l_sleep},
  {"monotime", l_monotime},
  {NULL, NULL}
};

/* luaL_setfuncs without upvalues, spelled out so it also builds on 5.1. */
static void set_funcs(lua_State *L, const luaL_Reg *r) {
  for (; r->name != NULL; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
  }
}

void hi_http_open(lua_State *L) {
  luaL_newmetatable(L, HI_HTTP_MT);
  set_funcs(L, meth);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  set_funcs(L, funcs);
}
