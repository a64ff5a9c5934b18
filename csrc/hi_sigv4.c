/*
** hi_sigv4.c: AWS Signature Version 4 (AWS4-HMAC-SHA256) for the Authorization
** header: canonical request -> string to sign -> signature, each stage exposed
** in core._sigv4 for the specs. The caller owns the clock (amz_date) and the
** transport: it adds the returned headers itself. Not covered: presigned URLs,
** chunked (streaming) payloads and S3's path rules (pass normalize_path=false).
*/
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "hi_core.h"
#include "hi_sigv4.h"

#define SV_ALGORITHM "AWS4-HMAC-SHA256"
#define SV_TERMINATOR "aws4_request"
#define SV_CTX_MT "healthimaging.sigv4.ctx"

/* Status of every internal step; only SV_OK writes any *_out parameter. */
enum { SV_OK = 0, SV_ENOMEM, SV_ECRYPTO, SV_ETOOBIG };

/*
** Never signed, whatever the caller passes (lowercase). The names come from
** the AWS SDK for JavaScript v3 signer (@smithy/signature-v4,
** ALWAYS_UNSIGNABLE_HEADERS); that list also holds cache-control, from,
** max-forwards, pragma and referer and skips every proxy-* and sec-* header,
** which this project's fixed list does not do (proxy-authorization is named).
*/
static const char *const ALWAYS_UNSIGNABLE[] = {
  "authorization", "connection", "expect", "keep-alive",
  "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
  "user-agent", "x-amzn-trace-id", NULL
};

/* A borrowed byte string: it points into a Lua string kept on the stack. */
typedef struct span {
  const char *p;
  size_t n;
} span;

/* One header as given; `order` keeps duplicates in their original order. */
typedef struct hdr {
  span name;
  span value;
  size_t order;
} hdr;


/*
** {======================================================================
** Growable byte buffer (malloc'd; freed by its owner)
** =======================================================================
*/

typedef struct strbuf {
  char *p;
  size_t len;
  size_t cap;
} strbuf;

/* Makes room for `extra` more bytes; overflow counts as out of memory. */
static int sb_reserve(strbuf *b, size_t extra) {
  size_t need, cap;
  char *np;
  if (extra > SIZE_MAX - b->len) return SV_ENOMEM;
  need = b->len + extra;
  if (need <= b->cap) return SV_OK;
  cap = b->cap ? b->cap : 256;
  while (cap < need)
    cap = (cap > SIZE_MAX / 2) ? need : cap * 2;
  np = (char *)realloc(b->p, cap);
  if (np == NULL) return SV_ENOMEM;
  b->p = np;
  b->cap = cap;
  return SV_OK;
}

static int sb_add(strbuf *b, const char *s, size_t n) {
  int st = sb_reserve(b, n);
  if (st != SV_OK) return st;
  if (n > 0) memcpy(b->p + b->len, s, n);
  b->len += n;
  return SV_OK;
}

static int sb_addc(strbuf *b, char c) {
  return sb_add(b, &c, 1);
}

static int sb_adds(strbuf *b, const char *s) {
  return sb_add(b, s, strlen(s));
}

/* Accepts a zeroed or already freed buffer. */
static void sb_free(strbuf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* }====================================================================== */


/*
** {======================================================================
** Byte classes and encodings
** =======================================================================
*/

static const char HEXUP[] = "0123456789ABCDEF";
static const char HEXLO[] = "0123456789abcdef";

/* ASCII only, so the result never depends on the C locale. */
static unsigned char lc(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* RFC 3986 unreserved: the only bytes SigV4 leaves unencoded. */
static int unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
         c == '~';
}

/* Linear white space inside a header value, folded lines included. */
static int lws(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Lowercase hex, as every SigV4 digest is written; out holds 2n+1 bytes. */
static void to_hex(const unsigned char *in, size_t n, char *out) {
  size_t i;
  for (i = 0; i < n; i++) {
    out[2 * i] = HEXLO[in[i] >> 4];
    out[2 * i + 1] = HEXLO[in[i] & 15];
  }
  out[2 * n] = '\0';
}

/* Case-insensitive (ASCII) order of header names, shorter prefix first. */
static int name_cmp(const span *a, const span *b) {
  size_t i, n = a->n < b->n ? a->n : b->n;
  for (i = 0; i < n; i++) {
    int d = (int)lc((unsigned char)a->p[i]) - (int)lc((unsigned char)b->p[i]);
    if (d != 0) return d;
  }
  return (a->n > b->n) - (a->n < b->n);
}

static int name_is(const span *name, const char *lower) {
  span s;
  s.p = lower;
  s.n = strlen(lower);
  return name_cmp(name, &s) == 0;
}

/* Appends one encoded byte: kept when unreserved (or '/' if allowed). */
static void put_encoded(strbuf *b, unsigned char c, int keep_slash) {
  if (unreserved(c) || (keep_slash && c == '/')) {
    b->p[b->len++] = (char)c;
  } else {
    b->p[b->len++] = '%';
    b->p[b->len++] = HEXUP[c >> 4];
    b->p[b->len++] = HEXUP[c & 15];
  }
}

/* URI-encodes raw bytes (each may grow to "%XX", hence 3n). */
static int add_encoded(strbuf *b, const char *s, size_t n, int keep_slash) {
  size_t i;
  int st;
  if (n > SIZE_MAX / 3) return SV_ENOMEM;
  if ((st = sb_reserve(b, 3 * n)) != SV_OK) return st;
  for (i = 0; i < n; i++) put_encoded(b, (unsigned char)s[i], keep_slash);
  return SV_OK;
}

/*
** Percent-decodes then strictly re-encodes a query name or value, so that
** "%2b", "%2B" and "+"-free forms sign alike. A '%' not followed by two hex
** digits is a literal '%' (it becomes "%25"); '+' stays a literal '+'.
*/
static int add_reencoded(strbuf *b, const char *s, size_t n) {
  size_t i;
  int st;
  if (n > SIZE_MAX / 3) return SV_ENOMEM;
  if ((st = sb_reserve(b, 3 * n)) != SV_OK) return st;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '%' && n - i > 2) {
      int hi = hexval((unsigned char)s[i + 1]);
      int lo = hexval((unsigned char)s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        c = (unsigned char)(hi * 16 + lo);
        i += 2;
      }
    }
    put_encoded(b, c, 0);
  }
  return SV_OK;
}

/* }====================================================================== */


/*
** {======================================================================
** Hashes and the signing key (OpenSSL 3 one-shot APIs, no Lua calls)
** =======================================================================
*/

static int sha256(const char *p, size_t n, unsigned char out[32]) {
  unsigned int len = 0;
  if (!EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) || len != 32)
    return SV_ECRYPTO;
  return SV_OK;
}

static int sha256_hex(const char *p, size_t n, char out[65]) {
  unsigned char md[32];
  int st = sha256(p, n, md);
  if (st == SV_OK) to_hex(md, sizeof md, out);
  return st;
}

/* HMAC() takes an int key length; a longer key is refused, not truncated. */
static int hmac256(const void *key, size_t klen, const char *d, size_t n,
                   unsigned char out[32]) {
  unsigned int len = 0;
  if (klen > INT_MAX) return SV_ETOOBIG;
  if (HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)d, n, out,
           &len) == NULL || len != 32)
    return SV_ECRYPTO;
  return SV_OK;
}

/*
** kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
** "aws4_request"). The "AWS4"+secret copy and every intermediate key are
** wiped before return; key_out (wiped by the caller) is written on success.
*/
static int derive_key(const span *secret, const span *date,
                      const span *region, const span *service,
                      unsigned char key_out[32]) {
  unsigned char *k0 = NULL;
  size_t k0len = 0;
  unsigned char kdate[32], kregion[32], kservice[32], ksigning[32];
  int st = SV_OK;
  if (secret->n > SIZE_MAX - 4) { st = SV_ETOOBIG; goto cleanup; }
  k0len = secret->n + 4;
  k0 = (unsigned char *)malloc(k0len);
  if (k0 == NULL) { st = SV_ENOMEM; goto cleanup; }
  memcpy(k0, "AWS4", 4);
  if (secret->n > 0) memcpy(k0 + 4, secret->p, secret->n);
  if ((st = hmac256(k0, k0len, date->p, date->n, kdate)) != SV_OK) goto cleanup;
  if ((st = hmac256(kdate, 32, region->p, region->n, kregion)) != SV_OK)
    goto cleanup;
  if ((st = hmac256(kregion, 32, service->p, service->n, kservice)) != SV_OK)
    goto cleanup;
  if ((st = hmac256(kservice, 32, SV_TERMINATOR, strlen(SV_TERMINATOR),
                    ksigning)) != SV_OK)
    goto cleanup;
  memcpy(key_out, ksigning, 32);
cleanup:
  if (k0 != NULL) {
    OPENSSL_cleanse(k0, k0len);
    free(k0);
  }
  OPENSSL_cleanse(kdate, sizeof kdate);
  OPENSSL_cleanse(kregion, sizeof kregion);
  OPENSSL_cleanse(kservice, sizeof kservice);
  OPENSSL_cleanse(ksigning, sizeof ksigning);
  return st;
}

/* }====================================================================== */


/*
** {======================================================================
** Canonical request stages: each appends to one buffer, returns a status
** =======================================================================
*/

/*
** CanonicalURI. Normalized (the default for every service but S3) as in
** RFC 3986 5.2.4: empty and "." segments go, ".." drops the segment before
** it (never above the root); a path ending in "/", "." or ".." keeps a
** trailing '/'. Unnormalized, the path is only encoded. Either way each
** segment is URI-encoded once, '/' is kept and an empty path becomes "/".
*/
static int stage_uri(strbuf *b, const char *path, size_t n, int normalize) {
  size_t base = b->len, i = 0, last;
  int st, dir;
  if (!normalize) {
    if ((n == 0 || path[0] != '/') && (st = sb_addc(b, '/')) != SV_OK)
      return st;
    return add_encoded(b, path, n, 1);
  }
  while (i < n) {
    size_t s = i, len;
    while (i < n && path[i] != '/') i++;
    len = i - s;
    if (len == 2 && path[s] == '.' && path[s + 1] == '.') {
      while (b->len > base && b->p[b->len - 1] != '/') b->len--;
      if (b->len > base) b->len--;
    } else if (len > 0 && !(len == 1 && path[s] == '.')) {
      if ((st = sb_addc(b, '/')) != SV_OK) return st;
      if ((st = add_encoded(b, path + s, len, 0)) != SV_OK) return st;
    }
    if (i < n) i++;  /* the '/' */
  }
  /* Is the last segment (after the final '/') empty, "." or ".."? */
  last = n;
  while (last > 0 && path[last - 1] != '/') last--;
  dir = (n - last == 0) || (n - last == 1 && path[last] == '.') ||
        (n - last == 2 && path[last] == '.' && path[last + 1] == '.');
  if (b->len == base || dir) return sb_addc(b, '/');
  return SV_OK;
}

/* One query parameter, both parts already re-encoded into a scratch buffer. */
typedef struct qparam {
  size_t noff, nlen, voff, vlen;
  const char *name;
  const char *value;
} qparam;

/* Byte order of encoded names, then of encoded values. */
static int qparam_cmp(const void *x, const void *y) {
  const qparam *a = (const qparam *)x, *b = (const qparam *)y;
  size_t n = a->nlen < b->nlen ? a->nlen : b->nlen;
  int d = n ? memcmp(a->name, b->name, n) : 0;
  if (d != 0) return d;
  if (a->nlen != b->nlen) return a->nlen < b->nlen ? -1 : 1;
  n = a->vlen < b->vlen ? a->vlen : b->vlen;
  d = n ? memcmp(a->value, b->value, n) : 0;
  if (d != 0) return d;
  return (a->vlen > b->vlen) - (a->vlen < b->vlen);
}

/*
** CanonicalQueryString: split on '&' (empty pieces are dropped), each piece
** into name and value at its first '=' (no '=': empty value), both
** re-encoded, sorted by name then value, joined as "name=value" with '&'.
*/
static int stage_query(strbuf *b, const char *q, size_t n) {
  strbuf scratch = {NULL, 0, 0};
  qparam *params = NULL;
  size_t count = 1, np = 0, i = 0, k;
  int st = SV_OK;
  for (k = 0; k < n; k++) count += (q[k] == '&');
  if (n == 0) goto cleanup;
  if (count > SIZE_MAX / sizeof *params) { st = SV_ENOMEM; goto cleanup; }
  params = (qparam *)malloc(count * sizeof *params);
  if (params == NULL) { st = SV_ENOMEM; goto cleanup; }
  while (i <= n) {
    size_t s = i, eq;
    while (i < n && q[i] != '&') i++;
    if (i > s) {
      eq = s;
      while (eq < i && q[eq] != '=') eq++;
      params[np].noff = scratch.len;
      if ((st = add_reencoded(&scratch, q + s, eq - s)) != SV_OK) goto cleanup;
      params[np].nlen = scratch.len - params[np].noff;
      params[np].voff = scratch.len;
      if (eq < i &&
          (st = add_reencoded(&scratch, q + eq + 1, i - eq - 1)) != SV_OK)
        goto cleanup;
      params[np].vlen = scratch.len - params[np].voff;
      np++;
    }
    i++;  /* the '&', or past the end */
  }
  /* The scratch buffer no longer moves: offsets become pointers. A query
  ** of empty parts only ("=") never allocated it, and NULL + 0 is
  ** undefined behaviour: every part is then "". */
  for (k = 0; k < np; k++) {
    params[k].name = scratch.p != NULL ? scratch.p + params[k].noff : "";
    params[k].value = scratch.p != NULL ? scratch.p + params[k].voff : "";
  }
  if (np > 1) qsort(params, np, sizeof *params, qparam_cmp);
  for (k = 0; k < np; k++) {
    if (k > 0 && (st = sb_addc(b, '&')) != SV_OK) goto cleanup;
    if ((st = sb_add(b, params[k].name, params[k].nlen)) != SV_OK) goto cleanup;
    if ((st = sb_addc(b, '=')) != SV_OK) goto cleanup;
    if ((st = sb_add(b, params[k].value, params[k].vlen)) != SV_OK)
      goto cleanup;
  }
cleanup:
  free(params);
  sb_free(&scratch);
  return st;
}

static int hdr_cmp(const void *x, const void *y) {
  const hdr *a = (const hdr *)x, *b = (const hdr *)y;
  int d = name_cmp(&a->name, &b->name);
  if (d != 0) return d;
  return (a->order > b->order) - (a->order < b->order);
}

static int is_unsignable(const span *name) {
  const char *const *u;
  for (u = ALWAYS_UNSIGNABLE; *u != NULL; u++)
    if (name_is(name, *u)) return 1;
  return 0;
}

/* A header value trimmed, with every run of white space (line folds too)
** collapsed to one space: the output is never longer than the input. */
static int add_header_value(strbuf *b, const span *v) {
  size_t i;
  int st, wrote = 0, gap = 0;
  if ((st = sb_reserve(b, v->n)) != SV_OK) return st;
  for (i = 0; i < v->n; i++) {
    unsigned char c = (unsigned char)v->p[i];
    if (lws(c)) {
      gap = wrote;
      continue;
    }
    if (gap) b->p[b->len++] = ' ';
    b->p[b->len++] = (char)c;
    wrote = 1;
    gap = 0;
  }
  return SV_OK;
}

static int add_lower(strbuf *b, const span *s) {
  size_t i;
  int st = sb_reserve(b, s->n);
  if (st != SV_OK) return st;
  for (i = 0; i < s->n; i++) b->p[b->len++] = (char)lc((unsigned char)s->p[i]);
  return SV_OK;
}

/*
** CanonicalHeaders and SignedHeaders: sorts h (stably) by lowercase name,
** skips ALWAYS_UNSIGNABLE, appends "name:v1,v2\n" per name to block (values
** of duplicates joined with ',' in their given order) and the names joined
** with ';' to signed_list.
*/
static int stage_headers(strbuf *block, strbuf *signed_list, hdr *h, size_t n) {
  size_t i = 0, j;
  int st, first = 1;
  if (n > 1) qsort(h, n, sizeof *h, hdr_cmp);
  while (i < n) {
    j = i + 1;
    while (j < n && name_cmp(&h[j].name, &h[i].name) == 0) j++;
    if (!is_unsignable(&h[i].name)) {
      size_t k;
      if (!first && (st = sb_addc(signed_list, ';')) != SV_OK) return st;
      first = 0;
      if ((st = add_lower(signed_list, &h[i].name)) != SV_OK) return st;
      if ((st = add_lower(block, &h[i].name)) != SV_OK) return st;
      if ((st = sb_addc(block, ':')) != SV_OK) return st;
      for (k = i; k < j; k++) {
        if (k > i && (st = sb_addc(block, ',')) != SV_OK) return st;
        if ((st = add_header_value(block, &h[k].value)) != SV_OK) return st;
      }
      if ((st = sb_addc(block, '\n')) != SV_OK) return st;
    }
    i = j;
  }
  return SV_OK;
}

/*
** The string to sign, four lines:
**   Algorithm               "AWS4-HMAC-SHA256"
**   RequestDateTime         amz_date, "YYYYMMDDTHHMMSSZ"
**   CredentialScope         "YYYYMMDD/region/service/aws4_request"
**   HashedCanonicalRequest  hex SHA-256 of the canonical request
*/
static int stage_sts(strbuf *b, const span *amz_date, const span *scope,
                     const span *creq) {
  char hex[65];
  int st;
  if ((st = sha256_hex(creq->p, creq->n, hex)) != SV_OK) return st;
  if ((st = sb_adds(b, SV_ALGORITHM "\n")) != SV_OK) return st;
  if ((st = sb_add(b, amz_date->p, amz_date->n)) != SV_OK) return st;
  if ((st = sb_addc(b, '\n')) != SV_OK) return st;
  if ((st = sb_add(b, scope->p, scope->n)) != SV_OK) return st;
  if ((st = sb_addc(b, '\n')) != SV_OK) return st;
  return sb_add(b, hex, 64);
}

/* }====================================================================== */


/*
** {======================================================================
** The whole signature
** =======================================================================
*/

/* Everything sign() needs, read and checked before any OpenSSL work. */
typedef struct signreq {
  span method, path, query, body, payload_hash;
  span akid, secret, token, region, service, amz_date, date;
  int has_payload_hash, has_token, normalize, sign_body, omit_token;
  hdr *hdrs;        /* caller's headers, then room for the signer's own */
  size_t nhdrs;     /* caller's headers only */
} signreq;

/* Output buffers that must survive a raise while results are pushed: they
** live in a userdata whose __gc/__close frees them. */
typedef struct sigctx {
  strbuf creq;      /* canonical request (or the one output of a stage) */
  strbuf signed_list;
  strbuf scope;
  strbuf sts;
  strbuf authz;
  char payload_hex[65];
  char signature[65];
} sigctx;

/*
** The canonical request, one field per line (no newline after the last):
**   HTTPMethod            as given, e.g. "POST"
**   CanonicalURI          see stage_uri
**   CanonicalQueryString  see stage_query ("" when there is no query)
**   CanonicalHeaders      "name:value\n" per signed header, so this field
**                         ends in an empty line
**   SignedHeaders         lowercase names joined with ';'
**   HashedPayload         hex SHA-256 of the body, or the given payload_hash
*/
static int build_creq(sigctx *c, signreq *r, size_t nsigned) {
  int st;
  if ((st = sb_add(&c->creq, r->method.p, r->method.n)) != SV_OK) return st;
  if ((st = sb_addc(&c->creq, '\n')) != SV_OK) return st;
  if ((st = stage_uri(&c->creq, r->path.p, r->path.n, r->normalize)) != SV_OK)
    return st;
  if ((st = sb_addc(&c->creq, '\n')) != SV_OK) return st;
  if ((st = stage_query(&c->creq, r->query.p, r->query.n)) != SV_OK) return st;
  if ((st = sb_addc(&c->creq, '\n')) != SV_OK) return st;
  if ((st = stage_headers(&c->creq, &c->signed_list, r->hdrs, nsigned)) != SV_OK)
    return st;
  if ((st = sb_addc(&c->creq, '\n')) != SV_OK) return st;
  if ((st = sb_add(&c->creq, c->signed_list.p, c->signed_list.len)) != SV_OK)
    return st;
  if ((st = sb_addc(&c->creq, '\n')) != SV_OK) return st;
  return sb_add(&c->creq, c->payload_hex, 64);
}

/*
** Runs every stage into c. Makes no Lua call, so nothing here can raise;
** the signing key is wiped on every path.
*/
static int sign_compute(sigctx *c, signreq *r) {
  unsigned char key[32], sig[32];
  span scope, creq, sts;
  size_t n = r->nhdrs;
  int st = SV_OK;
  memset(key, 0, sizeof key);
  if (r->has_payload_hash) {
    memcpy(c->payload_hex, r->payload_hash.p, 64);
    c->payload_hex[64] = '\0';
  } else if ((st = sha256_hex(r->body.p, r->body.n, c->payload_hex)) != SV_OK) {
    goto cleanup;
  }
  /* The signer's own headers join the signed set (the slots were reserved). */
  r->hdrs[n].name.p = "X-Amz-Date";
  r->hdrs[n].name.n = strlen("X-Amz-Date");
  r->hdrs[n].value = r->amz_date;
  r->hdrs[n].order = n;
  n++;
  if (r->sign_body) {
    r->hdrs[n].name.p = "x-amz-content-sha256";
    r->hdrs[n].name.n = strlen("x-amz-content-sha256");
    r->hdrs[n].value.p = c->payload_hex;
    r->hdrs[n].value.n = 64;
    r->hdrs[n].order = n;
    n++;
  }
  if (r->has_token && !r->omit_token) {
    r->hdrs[n].name.p = "X-Amz-Security-Token";
    r->hdrs[n].name.n = strlen("X-Amz-Security-Token");
    r->hdrs[n].value = r->token;
    r->hdrs[n].order = n;
    n++;
  }
  if ((st = build_creq(c, r, n)) != SV_OK) goto cleanup;
  /* CredentialScope: date/region/service/aws4_request */
  if ((st = sb_add(&c->scope, r->date.p, r->date.n)) != SV_OK ||
      (st = sb_addc(&c->scope, '/')) != SV_OK ||
      (st = sb_add(&c->scope, r->region.p, r->region.n)) != SV_OK ||
      (st = sb_addc(&c->scope, '/')) != SV_OK ||
      (st = sb_add(&c->scope, r->service.p, r->service.n)) != SV_OK ||
      (st = sb_adds(&c->scope, "/" SV_TERMINATOR)) != SV_OK)
    goto cleanup;
  scope.p = c->scope.p;
  scope.n = c->scope.len;
  creq.p = c->creq.p;
  creq.n = c->creq.len;
  if ((st = stage_sts(&c->sts, &r->amz_date, &scope, &creq)) != SV_OK)
    goto cleanup;
  sts.p = c->sts.p;
  sts.n = c->sts.len;
  if ((st = derive_key(&r->secret, &r->date, &r->region, &r->service, key)) !=
      SV_OK)
    goto cleanup;
  if ((st = hmac256(key, sizeof key, sts.p, sts.n, sig)) != SV_OK) goto cleanup;
  to_hex(sig, sizeof sig, c->signature);
  /* AWS4-HMAC-SHA256 Credential=AKID/scope, SignedHeaders=..., Signature=... */
  if ((st = sb_adds(&c->authz, SV_ALGORITHM " Credential=")) != SV_OK ||
      (st = sb_add(&c->authz, r->akid.p, r->akid.n)) != SV_OK ||
      (st = sb_addc(&c->authz, '/')) != SV_OK ||
      (st = sb_add(&c->authz, scope.p, scope.n)) != SV_OK ||
      (st = sb_adds(&c->authz, ", SignedHeaders=")) != SV_OK ||
      (st = sb_add(&c->authz, c->signed_list.p, c->signed_list.len)) != SV_OK ||
      (st = sb_adds(&c->authz, ", Signature=")) != SV_OK ||
      (st = sb_add(&c->authz, c->signature, 64)) != SV_OK)
    goto cleanup;
cleanup:
  OPENSSL_cleanse(key, sizeof key);
  return st;
}

/* }====================================================================== */


/*
** {======================================================================
** Lua side: argument reading (may raise), work context, results
** =======================================================================
*/

static int ctx_release(lua_State *L) {
  sigctx *c = (sigctx *)lua_touserdata(L, 1);
  if (c != NULL) {
    sb_free(&c->creq);
    sb_free(&c->signed_list);
    sb_free(&c->scope);
    sb_free(&c->sts);
    sb_free(&c->authz);
  }
  return 0;
}

/* A zeroed work context on the stack top, freed at return or on a raise.
** Raises only when out of memory (nothing is held yet). */
static sigctx *ctx_new(lua_State *L) {
#if LUA_VERSION_NUM >= 504
  sigctx *c = (sigctx *)lua_newuserdatauv(L, sizeof *c, 0);
#else
  sigctx *c = (sigctx *)lua_newuserdata(L, sizeof *c);
#endif
  memset(c, 0, sizeof *c);
  luaL_setmetatable(L, SV_CTX_MT);
#if LUA_VERSION_NUM >= 504
  lua_toclose(L, -1);
#endif
  return c;
}

static void push_buf(lua_State *L, const strbuf *b) {
  lua_pushlstring(L, b->p != NULL ? b->p : "", b->len);
}

/* Out of memory raises (as Lua itself does); anything else is nil, message.
** Never mentions an input, so no secret can leak through it. */
static int push_failure(lua_State *L, int st) {
  if (st == SV_ENOMEM) return luaL_error(L, "sigv4: not enough memory");
  ERR_clear_error();
  lua_pushnil(L);
  lua_pushstring(L, st == SV_ETOOBIG ? "sigv4: input too large to sign"
                                     : "sigv4: OpenSSL SHA-256/HMAC failed");
  return 2;
}

/* Raises "bad argument #1 to 'sign' (field 'x' <what>)". */
static int field_error(lua_State *L, const char *field, const char *what) {
  return luaL_argerror(L, 1, lua_pushfstring(L, "field '%s' %s", field, what));
}

/* Pushes req[field] and, when it is a string, borrows it into out (the
** value stays on the stack). Returns 0 for an optional nil, which is
** popped. Raises when required and missing, or of another type. */
static int get_string(lua_State *L, const char *field, int required,
                      span *out) {
  int t = lua_getfield(L, 1, field);
  if (t == LUA_TNIL && !required) {
    lua_pop(L, 1);
    return 0;
  }
  if (t != LUA_TSTRING) return field_error(L, field, "must be a string");
  out->p = lua_tolstring(L, -1, &out->n);
  return 1;
}

static int get_bool(lua_State *L, const char *field, int dflt) {
  int t = lua_getfield(L, 1, field), v = dflt;
  if (t == LUA_TBOOLEAN) v = lua_toboolean(L, -1);
  else if (t != LUA_TNIL) field_error(L, field, "must be a boolean");
  lua_pop(L, 1);
  return v;
}

/* Non-empty, no '/', space or control byte: safe inside the scope. */
static void check_scope_part(lua_State *L, const char *field, const span *s) {
  size_t i;
  int ok = s->n > 0;
  for (i = 0; ok && i < s->n; i++) {
    unsigned char c = (unsigned char)s->p[i];
    ok = c > 0x20 && c != 0x7f && c != '/';
  }
  if (!ok)
    field_error(L, field, "must be non-empty, without '/', spaces or control characters");
}

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

/* "YYYYMMDDTHHMMSSZ" with plausible month, day, hour, minute and second. */
static int valid_amz_date(const span *d) {
  static const char shape[] = "00000000T000000Z";
  size_t i;
  int mon, day, hh, mm, ss;
  if (d->n != 16) return 0;
  for (i = 0; i < 16; i++) {
    if (shape[i] == '0' ? !is_digit(d->p[i]) : d->p[i] != shape[i]) return 0;
  }
#define TWO(k) ((d->p[k] - '0') * 10 + (d->p[(k) + 1] - '0'))
  mon = TWO(4); day = TWO(6); hh = TWO(9); mm = TWO(11); ss = TWO(13);
#undef TWO
  return mon >= 1 && mon <= 12 && day >= 1 && day <= 31 && hh <= 23 &&
         mm <= 59 && ss <= 60;
}

/*
** Reads the array of {name, value} pairs at index idx into a new hdr array
** (a userdata left on the stack, `extra` spare entries at its end). Names
** and values stay on the stack so the borrowed pointers remain valid.
** Raises, prefixing messages with `what`, on a malformed entry.
*/
static hdr *read_headers(lua_State *L, int idx, int argn, const char *what,
                         size_t extra, size_t *n_out) {
  lua_Integer len = luaL_len(L, idx), i;
  hdr *h;
  if (len < 0) len = 0;
  if (len > (INT_MAX - 32) / 2)
    luaL_argerror(L, argn, lua_pushfstring(L, "%s has too many entries", what));
  luaL_checkstack(L, (int)(2 * len + 16), "too many headers");
#if LUA_VERSION_NUM >= 504
  h = (hdr *)lua_newuserdatauv(L, ((size_t)len + extra) * sizeof *h, 0);
#else
  h = (hdr *)lua_newuserdata(L, ((size_t)len + extra) * sizeof *h);
#endif
  for (i = 1; i <= len; i++) {
    int t;
    if (lua_geti(L, idx, i) != LUA_TTABLE)
      luaL_argerror(L, argn, lua_pushfstring(L,
          "%s entry #%d must be a {name, value} table", what, (int)i));
    if (lua_geti(L, -1, 1) != LUA_TSTRING)
      luaL_argerror(L, argn, lua_pushfstring(L,
          "%s entry #%d name must be a string", what, (int)i));
    t = lua_geti(L, -2, 2);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      luaL_argerror(L, argn, lua_pushfstring(L,
          "%s entry #%d value must be a string", what, (int)i));
    h[i - 1].name.p = lua_tolstring(L, -2, &h[i - 1].name.n);
    h[i - 1].value.p = lua_tolstring(L, -1, &h[i - 1].value.n);
    h[i - 1].order = (size_t)(i - 1);
    lua_remove(L, -3);  /* the pair; its name and value stay */
  }
  *n_out = (size_t)len;
  return h;
}

/* Reads and validates sign()'s table argument into r. Raises on misuse. */
static void read_sign_request(lua_State *L, signreq *r) {
  size_t i;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkstack(L, 32, "sign");
  get_string(L, "method", 1, &r->method);
  for (i = 0; i < r->method.n; i++) {
    unsigned char c = (unsigned char)r->method.p[i];
    if (c <= 0x20 || c == 0x7f) break;
  }
  if (r->method.n == 0 || i < r->method.n)
    field_error(L, "method", "must be non-empty, without spaces or control characters");
  get_string(L, "path", 1, &r->path);
  if (!get_string(L, "query", 0, &r->query)) r->query.p = "";
  if (!get_string(L, "body", 0, &r->body)) r->body.p = "";
  r->has_payload_hash = get_string(L, "payload_hash", 0, &r->payload_hash);
  if (r->has_payload_hash) {
    int ok = r->payload_hash.n == 64;
    for (i = 0; ok && i < 64; i++) {
      char c = r->payload_hash.p[i];
      ok = is_digit(c) || (c >= 'a' && c <= 'f');
    }
    if (!ok) field_error(L, "payload_hash", "must be 64 lowercase hex digits");
  }
  get_string(L, "access_key_id", 1, &r->akid);
  check_scope_part(L, "access_key_id", &r->akid);
  get_string(L, "secret_access_key", 1, &r->secret);
  if (r->secret.n == 0) field_error(L, "secret_access_key", "must not be empty");
  /* An empty token (AWS_SESSION_TOKEN="") means no token. */
  r->has_token = get_string(L, "session_token", 0, &r->token) && r->token.n > 0;
  for (i = 0; r->has_token && i < r->token.n; i++) {
    unsigned char c = (unsigned char)r->token.p[i];
    if (c < 0x20 || c == 0x7f)
      field_error(L, "session_token", "must not contain control characters");
  }
  get_string(L, "region", 1, &r->region);
  check_scope_part(L, "region", &r->region);
  get_string(L, "service", 1, &r->service);
  check_scope_part(L, "service", &r->service);
  get_string(L, "amz_date", 1, &r->amz_date);
  if (!valid_amz_date(&r->amz_date))
    field_error(L, "amz_date", "must look like YYYYMMDDTHHMMSSZ");
  r->date.p = r->amz_date.p;
  r->date.n = 8;
  r->normalize = get_bool(L, "normalize_path", 1);
  r->sign_body = get_bool(L, "sign_body", 0);
  r->omit_token = get_bool(L, "omit_session_token", 0);
  if (lua_getfield(L, 1, "headers") != LUA_TTABLE)
    field_error(L, "headers", "must be a table");
  /* Three spare slots: X-Amz-Date, x-amz-content-sha256, the token. */
  r->hdrs = read_headers(L, lua_gettop(L), 1, "field 'headers'", 3, &r->nhdrs);
  /* A second copy of a header the signer adds would sign "a,b". */
  for (i = 0; i < r->nhdrs; i++) {
    const span *name = &r->hdrs[i].name;
    if (name_is(name, "x-amz-date"))
      field_error(L, "headers", "must not contain X-Amz-Date (the signer adds it)");
    if (r->sign_body && name_is(name, "x-amz-content-sha256"))
      field_error(L, "headers",
                  "must not contain x-amz-content-sha256 when sign_body is set");
    if (r->has_token && name_is(name, "x-amz-security-token"))
      field_error(L, "headers",
                  "must not contain X-Amz-Security-Token when session_token is set");
  }
}

/* t[#t+1] = {name, value} */
static void push_pair(lua_State *L, const char *name, const char *v, size_t n) {
  lua_createtable(L, 2, 0);
  lua_pushstring(L, name);
  lua_rawseti(L, -2, 1);
  lua_pushlstring(L, v, n);
  lua_rawseti(L, -2, 2);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

/*
** core.sign(req) -> result | nil, message. Raises on misuse (see
** read_sign_request) and when out of memory. The result never holds the
** secret key or the signing key.
*/
static int l_sign(lua_State *L) {
  signreq r;
  sigctx *c;
  int st;
  memset(&r, 0, sizeof r);
  read_sign_request(L, &r);
  c = ctx_new(L);
  if ((st = sign_compute(c, &r)) != SV_OK) return push_failure(L, st);
  lua_createtable(L, 0, 7);
  push_buf(L, &c->authz);
  lua_setfield(L, -2, "authorization");
  lua_createtable(L, 3, 0);
  push_pair(L, "X-Amz-Date", r.amz_date.p, r.amz_date.n);
  if (r.sign_body) push_pair(L, "x-amz-content-sha256", c->payload_hex, 64);
  if (r.has_token) push_pair(L, "X-Amz-Security-Token", r.token.p, r.token.n);
  lua_setfield(L, -2, "headers");
  push_buf(L, &c->creq);
  lua_setfield(L, -2, "canonical_request");
  push_buf(L, &c->sts);
  lua_setfield(L, -2, "string_to_sign");
  push_buf(L, &c->signed_list);
  lua_setfield(L, -2, "signed_headers");
  lua_pushlstring(L, c->signature, 64);
  lua_setfield(L, -2, "signature");
  lua_pushlstring(L, c->payload_hex, 64);
  lua_setfield(L, -2, "payload_hash");
  return 1;
}

/* _sigv4.canonical_uri(path [, normalize = true]) -> string */
static int l_canonical_uri(lua_State *L) {
  size_t n;
  const char *path = luaL_checklstring(L, 1, &n);
  int normalize = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
  sigctx *c = ctx_new(L);
  int st = stage_uri(&c->creq, path, n, normalize);
  if (st != SV_OK) return push_failure(L, st);
  push_buf(L, &c->creq);
  return 1;
}

/* _sigv4.canonical_query(query or nil) -> string */
static int l_canonical_query(lua_State *L) {
  size_t n;
  const char *q = luaL_optlstring(L, 1, "", &n);
  sigctx *c = ctx_new(L);
  int st = stage_query(&c->creq, q, n);
  if (st != SV_OK) return push_failure(L, st);
  push_buf(L, &c->creq);
  return 1;
}

/* _sigv4.canonical_headers({{name, value}, ...}) -> block, signed_headers */
static int l_canonical_headers(lua_State *L) {
  size_t n;
  hdr *h;
  sigctx *c;
  int st;
  luaL_checktype(L, 1, LUA_TTABLE);
  h = read_headers(L, 1, 1, "headers", 0, &n);
  c = ctx_new(L);
  if ((st = stage_headers(&c->creq, &c->signed_list, h, n)) != SV_OK)
    return push_failure(L, st);
  push_buf(L, &c->creq);
  push_buf(L, &c->signed_list);
  return 2;
}

/* _sigv4.sha256_hex(s) -> hex */
static int l_sha256_hex(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  char hex[65];
  int st = sha256_hex(s, n, hex);
  if (st != SV_OK) return push_failure(L, st);
  lua_pushlstring(L, hex, 64);
  return 1;
}

/* _sigv4.hmac_sha256_hex(key, data) -> hex */
static int l_hmac_sha256_hex(lua_State *L) {
  size_t kn, dn;
  const char *key = luaL_checklstring(L, 1, &kn);
  const char *data = luaL_checklstring(L, 2, &dn);
  unsigned char mac[32];
  char hex[65];
  int st = hmac256(key, kn, data, dn, mac);
  if (st != SV_OK) return push_failure(L, st);
  to_hex(mac, sizeof mac, hex);
  lua_pushlstring(L, hex, 64);
  return 1;
}

/* _sigv4.signing_key_hex(secret, yyyymmdd, region, service) -> hex. For
** specs only: sign() never returns the key. */
static int l_signing_key_hex(lua_State *L) {
  span secret, date, region, service;
  unsigned char key[32];
  char hex[65];
  int st;
  secret.p = luaL_checklstring(L, 1, &secret.n);
  date.p = luaL_checklstring(L, 2, &date.n);
  region.p = luaL_checklstring(L, 3, &region.n);
  service.p = luaL_checklstring(L, 4, &service.n);
  st = derive_key(&secret, &date, &region, &service, key);
  if (st == SV_OK) to_hex(key, sizeof key, hex);
  OPENSSL_cleanse(key, sizeof key);
  if (st != SV_OK) return push_failure(L, st);
  lua_pushlstring(L, hex, 64);
  OPENSSL_cleanse(hex, sizeof hex);
  return 1;
}

/* _sigv4.string_to_sign(amz_date, scope, canonical_request) -> string */
static int l_string_to_sign(lua_State *L) {
  span amz_date, scope, creq;
  sigctx *c;
  int st;
  amz_date.p = luaL_checklstring(L, 1, &amz_date.n);
  scope.p = luaL_checklstring(L, 2, &scope.n);
  creq.p = luaL_checklstring(L, 3, &creq.n);
  c = ctx_new(L);
  if ((st = stage_sts(&c->sts, &amz_date, &scope, &creq)) != SV_OK)
    return push_failure(L, st);
  push_buf(L, &c->sts);
  return 1;
}

static const luaL_Reg stage_funcs[] = {
  {"canonical_uri",     l_canonical_uri},
  {"canonical_query",   l_canonical_query},
  {"canonical_headers", l_canonical_headers},
  {"sha256_hex",        l_sha256_hex},
  {"hmac_sha256_hex",   l_hmac_sha256_hex},
  {"signing_key_hex",   l_signing_key_hex},
  {"string_to_sign",    l_string_to_sign},
  {NULL, NULL}
};

/* Adds sign and the _sigv4 stage table to the module table on the top. */
void hi_sigv4_open(lua_State *L) {
  if (luaL_newmetatable(L, SV_CTX_MT)) {
    lua_pushcfunction(L, ctx_release);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, ctx_release);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_sign);
  lua_setfield(L, -2, "sign");
  luaL_newlib(L, stage_funcs);
  lua_setfield(L, -2, "_sigv4");
}

/* }====================================================================== */
