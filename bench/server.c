/*
** bench/server.c: the benchmark's SearchImageSets server. It pre-renders
** every answer (HTTP head + a page of 50 full image-set summaries, ~37 KB)
** at start-up, so serving a page is one lookup and one write: the client,
** not the server, is what `make bench` measures. Not a service emulator:
** no signature check beyond the presence of a SigV4 Authorization header.
*/
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PAGE_ITEMS 50
#define REQ_MAX (64 * 1024)

/* What every connection thread reads; written once before the first accept. */
typedef struct config {
  int pages;
  long latency_ms;
  char **answers;       /* pages pre-rendered responses, head + body */
  size_t *answer_len;
  char **tokens;        /* tokens[p]: the nextToken that asks for page p (p >= 1) */
} config;

/* Counters shared by the threads (the only mutable shared state). */
typedef struct stats {
  pthread_mutex_t lock;
  long connections;     /* connections that carried at least one search */
  long requests;        /* searches answered with a page */
  long rejected;        /* searches answered with an error */
} stats;

typedef struct conn {
  int fd;
  const config *cfg;
  stats *st;
} conn;

/*
** {======================================================
** Pre-rendering
** =======================================================
*/

/* Patient names in several scripts, so clients decode real UTF-8. */
static const char *const NAMES[] = {
  "Doe^Jane", "Yamada^Tarou=\xe5\xb1\xb1\xe7\x94\xb0^\xe5\xa4\xaa\xe9\x83\x8e",
  "M\xc3\xbcller^J\xc3\xbcrgen", "\xd0\x98\xd0\xb2\xd0\xb0\xd0\xbd\xd0\xbe\xd0\xb2^\xd0\x98\xd0\xb2\xd0\xb0\xd0\xbd",
  "Smith^John^Quincy^Dr^Jr", "O'Brien^Siobhan",
};
static const char *const MODALITIES[] = { "CT", "MR", "US", "CR", "PT", "NM" };
static const char *const PARTS[] = { "CHEST", "HEAD", "ABDOMEN", "PELVIS", "KNEE" };
static const char *const DESCRIPTIONS[] = {
  "CT CHEST WITH CONTRAST", "MRI BRAIN WITHOUT CONTRAST", "US ABDOMEN COMPLETE",
  "XR CHEST 2 VIEWS", "PET CT WHOLE BODY", "NM BONE SCAN WHOLE BODY",
};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* The token that asks for page p: base64-like, with the characters a
** client must percent-encode in a query string. */
static char *make_token(int p) {
  char *t = malloc(128);
  if (t != NULL)
    snprintf(t, 128, "AYADeBench+%06d/Zm9vYmFyYmF6cXV4Y29yZ2VncmF1bHRnYXJwbHl3YWxkb2ZyZWRwbHVndGh1ZA==", p);
  return t;
}

/* Appends one summary (global index i) to buf; returns the bytes written. */
static int render_item(char *buf, size_t cap, long i) {
  double created = 1700000000.0 + (double)i * 37.125;
  return snprintf(buf, cap,
    "{\"imageSetId\":\"%08lx%08lx%08lx%08lx\",\"version\":%ld,"
    "\"createdAt\":%.3f,\"updatedAt\":%.3f,\"lastAccessedAt\":%.3f,"
    "\"storageTier\":\"%s\",\"isPrimary\":%s,\"DICOMTags\":{"
    "\"DICOMPatientId\":\"PAT-%07ld\",\"DICOMPatientName\":\"%s\","
    "\"DICOMPatientBirthDate\":\"19%02ld%02ld%02ld\",\"DICOMPatientSex\":\"%s\","
    "\"DICOMStudyInstanceUID\":\"1.2.840.99999.%ld.%ld\","
    "\"DICOMStudyId\":\"%ld\",\"DICOMStudyDescription\":\"%s\","
    "\"DICOMNumberOfStudyRelatedSeries\":%ld,\"DICOMNumberOfStudyRelatedInstances\":%ld,"
    "\"DICOMAccessionNumber\":\"ACC%09ld\","
    "\"DICOMSeriesInstanceUID\":\"1.2.840.99999.%ld.%ld.%ld\","
    "\"DICOMSeriesModality\":\"%s\",\"DICOMSeriesBodyPart\":\"%s\","
    "\"DICOMSeriesNumber\":%ld,\"DICOMStudyDate\":\"2023%02ld%02ld\","
    "\"DICOMStudyTime\":\"%02ld%02ld%02ld\"}}",
    0x1a2b3c4dL + i, (i * 2654435761L) & 0xffffffffL, 0xbe7c4000L + (i % 977),
    (i * 40503L) & 0xffffffffL, 1 + i % 3,
    created, created + 86400.5, created + 172800.25,
    (i % 4 == 0) ? "ARCHIVE_INSTANT_ACCESS" : "FREQUENT_ACCESS",
    (i % 5 == 0) ? "false" : "true",
    i / 3, NAMES[i % COUNT(NAMES)],
    30 + i % 70, 1 + i % 12, 1 + i % 28, (i % 2) ? "F" : "M",
    2000000000L + i / 3, i % 1000,
    1 + i % 9999, DESCRIPTIONS[i % COUNT(DESCRIPTIONS)],
    1 + i % 7, 10 + i % 900,
    i,
    2000000000L + i / 3, i % 1000, i % 10,
    MODALITIES[i % COUNT(MODALITIES)], PARTS[i % COUNT(PARTS)],
    1 + i % 200, 1 + i % 12, 1 + i % 28,
    i % 24, i % 60, (i * 7) % 60);
}

/* Renders page p (0-based) as a full HTTP response. Returns NULL on out
** of memory. */
static char *render_page(const config *cfg, int p, size_t *len_out) {
  size_t cap = 64 * 1024, len = 0;
  char *body = malloc(cap), *out = NULL;
  char head[512];
  int i, n;
  if (body == NULL)
    goto cleanup;
  len += (size_t)snprintf(body, cap, "{\"imageSetsMetadataSummaries\":[");
  for (i = 0; i < PAGE_ITEMS; i++) {
    if (i > 0)
      body[len++] = ',';
    n = render_item(body + len, cap - len, (long)p * PAGE_ITEMS + i);
    if (n < 0 || (size_t)n >= cap - len)
      goto cleanup;
    len += (size_t)n;
  }
  if (p + 1 < cfg->pages)
    n = snprintf(body + len, cap - len, "],\"nextToken\":\"%s\"}", cfg->tokens[p + 1]);
  else
    n = snprintf(body + len, cap - len, "]}");
  if (n < 0 || (size_t)n >= cap - len)
    goto cleanup;
  len += (size_t)n;
  n = snprintf(head, sizeof(head),
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %lu\r\n"
    "x-amzn-RequestId: 6a0b3c1e-0000-4000-8000-%012d\r\n"
    "Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n", (unsigned long)len, p);
  out = malloc((size_t)n + len);
  if (out == NULL)
    goto cleanup;
  memcpy(out, head, (size_t)n);
  memcpy(out + n, body, len);
  *len_out = (size_t)n + len;
cleanup:
  free(body);
  return out;
}

/* }====================================================== */


/*
** {======================================================
** One connection
** =======================================================
*/

/* Writes all n bytes; 0 on success. */
static int send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Sends a small JSON answer (errors, stats). */
static int send_json(int fd, int status, const char *reason, const char *type,
                     const char *body) {
  char buf[1024];
  int n = snprintf(buf, sizeof(buf),
    "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %lu\r\n"
    "%s%s%s\r\n%s", status, reason, (unsigned long)strlen(body),
    type ? "x-amzn-ErrorType: " : "", type ? type : "", type ? "\r\n" : "", body);
  if (n < 0 || (size_t)n >= sizeof(buf))
    return -1;
  return send_all(fd, buf, (size_t)n);
}

/* Value of one hex digit, or -1. */
static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decodes src[0..n) into dst (cap bytes); -1 if it is malformed
** or does not fit. */
static int url_decode(const char *src, size_t n, char *dst, size_t cap) {
  size_t i, j = 0;
  for (i = 0; i < n; i++) {
    char c = src[i];
    if (c == '%') {
      int hi, lo;
      if (i + 2 >= n)
        return -1;
      hi = hexval(src[i + 1]);
      lo = hexval(src[i + 2]);
      if (hi < 0 || lo < 0)
        return -1;
      c = (char)(hi * 16 + lo);
      i += 2;
    }
    if (j + 1 >= cap)
      return -1;
    dst[j++] = c;
  }
  dst[j] = '\0';
  return 0;
}

/* Finds query parameter name in q[0..n); sets *v and *vn. */
static int query_param(const char *q, size_t n, const char *name,
                       const char **v, size_t *vn) {
  size_t nl = strlen(name), i = 0;
  while (i < n) {
    size_t e = i;
    while (e < n && q[e] != '&')
      e++;
    if (e - i > nl && memcmp(q + i, name, nl) == 0 && q[i + nl] == '=') {
      *v = q + i + nl + 1;
      *vn = e - i - nl - 1;
      return 1;
    }
    i = e + 1;
  }
  return 0;
}

/* Answers one search; returns -1 when the connection must close. */
static int answer_search(conn *c, const char *target, size_t tlen,
                         int signed_req, int *searched) {
  const config *cfg = c->cfg;
  const char *q = memchr(target, '?', tlen), *v;
  size_t qn = q ? tlen - (size_t)(q - target) - 1 : 0, vn;
  char token[512];
  int page = 0;
  if (!signed_req) {
    pthread_mutex_lock(&c->st->lock);
    c->st->rejected++;
    pthread_mutex_unlock(&c->st->lock);
    return send_json(c->fd, 403, "Forbidden", "MissingAuthenticationTokenException",
                     "{\"message\":\"Missing Authentication Token\"}");
  }
  if (q != NULL && query_param(q + 1, qn, "maxResults", &v, &vn) &&
      !(vn == 2 && memcmp(v, "50", 2) == 0))
    page = -1;
  if (page == 0 && q != NULL && query_param(q + 1, qn, "nextToken", &v, &vn)) {
    page = -1;
    if (url_decode(v, vn, token, sizeof(token)) == 0) {
      const char *d = strchr(token, '+');
      int p = d ? atoi(d + 1) : 0;
      if (p >= 1 && p < cfg->pages && strcmp(token, cfg->tokens[p]) == 0)
        page = p;
    }
  }
  if (page < 0) {
    pthread_mutex_lock(&c->st->lock);
    c->st->rejected++;
    pthread_mutex_unlock(&c->st->lock);
    return send_json(c->fd, 400, "Bad Request", "ValidationException",
                     "{\"message\":\"the bench server serves pages of 50 and only its own tokens\"}");
  }
  if (cfg->latency_ms > 0) {
    struct timespec ts = { cfg->latency_ms / 1000, (cfg->latency_ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
      ;
  }
  pthread_mutex_lock(&c->st->lock);
  c->st->requests++;
  if (!*searched)
    c->st->connections++;
  pthread_mutex_unlock(&c->st->lock);
  *searched = 1;
  return send_all(c->fd, cfg->answers[page], cfg->answer_len[page]);
}

/* True if the n bytes at p hold the word w (ASCII, any case). */
static int contains(const char *p, size_t n, const char *w) {
  size_t wl = strlen(w), i;
  for (i = 0; i + wl <= n; i++)
    if (strncasecmp(p + i, w, wl) == 0)
      return 1;
  return 0;
}

/* Where the blank line ending a request head starts, or NULL. */
static char *head_end(char *p, size_t n) {
  size_t i;
  for (i = 0; i + 3 < n; i++)
    if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n')
      return p + i;
  return NULL;
}

/* Reads requests until the peer closes; keep-alive, no pipelining needed
** but leftovers are kept. */
static void *serve(void *arg) {
  conn *c = arg;
  char *buf = malloc(REQ_MAX);
  size_t have = 0;
  int searched = 0;
  if (buf == NULL)
    goto cleanup;
  for (;;) {
    char *end = NULL, *line_end, *sp1, *sp2, *h;
    size_t head_len, body_len = 0, total;
    int close_after = 0, signed_req = 0, rc = 0;
    while ((end = (have >= 4) ? head_end(buf, have) : NULL) == NULL) {
      ssize_t r;
      if (have == REQ_MAX)
        goto cleanup;
      r = recv(c->fd, buf + have, REQ_MAX - have, 0);
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        goto cleanup;
      have += (size_t)r;
    }
    head_len = (size_t)(end - buf) + 4;
    line_end = memchr(buf, '\r', head_len);
    sp1 = memchr(buf, ' ', (size_t)(line_end - buf));
    sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(line_end - sp1 - 1)) : NULL;
    if (sp2 == NULL)
      goto cleanup;
    for (h = line_end + 2; h < end; ) {
      char *e = memchr(h, '\r', (size_t)(end - h) + 2);
      size_t n = (size_t)(e - h);
      if (n > 15 && strncasecmp(h, "content-length:", 15) == 0)
        body_len = (size_t)strtoul(h + 15, NULL, 10);
      else if (n > 11 && strncasecmp(h, "connection:", 11) == 0 && contains(h, n, "close"))
        close_after = 1;
      else if (n > 32 && strncasecmp(h, "authorization: AWS4-HMAC-SHA256 ", 32) == 0)
        signed_req = 1;
      else if (n > 7 && strncasecmp(h, "expect:", 7) == 0)
        send_all(c->fd, "HTTP/1.1 100 Continue\r\n\r\n", 25);
      h = e + 2;
    }
    if (body_len > REQ_MAX - head_len)
      goto cleanup;
    total = head_len + body_len;
    while (have < total) {
      ssize_t r = recv(c->fd, buf + have, REQ_MAX - have, 0);
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        goto cleanup;
      have += (size_t)r;
    }
    {
      const char *target = sp1 + 1;
      size_t tlen = (size_t)(sp2 - sp1 - 1);
      const char *path_end = memchr(target, '?', tlen);
      size_t plen = path_end ? (size_t)(path_end - target) : tlen;
      if ((size_t)(sp1 - buf) == 4 && memcmp(buf, "POST", 4) == 0 && plen > 27 &&
          memcmp(target, "/datastore/", 11) == 0 &&
          memcmp(target + plen - 16, "/searchImageSets", 16) == 0) {
        rc = answer_search(c, target, tlen, signed_req, &searched);
      } else if (plen == 7 && memcmp(target, "/_stats", 7) == 0) {
        char body[256];
        pthread_mutex_lock(&c->st->lock);
        snprintf(body, sizeof(body), "{\"connections\":%ld,\"requests\":%ld,\"rejected\":%ld}",
                 c->st->connections, c->st->requests, c->st->rejected);
        pthread_mutex_unlock(&c->st->lock);
        rc = send_json(c->fd, 200, "OK", NULL, body);
      } else {
        rc = send_json(c->fd, 404, "Not Found", "UnknownOperationException",
                       "{\"message\":\"not found\"}");
      }
    }
    memmove(buf, buf + total, have - total);
    have -= total;
    if (rc != 0 || close_after)
      goto cleanup;
  }
cleanup:
  free(buf);
  close(c->fd);
  free(c);
  return NULL;
}

/* }====================================================== */


/*
** {======================================================
** Start-up and the accept loop
** =======================================================
*/

static void usage(void) {
  fprintf(stderr, "usage: server [--pages N] [--latency-ms MS] [--port PORT]\n"
                  "Serves N pages of 50 image-set summaries (default 2000) on 127.0.0.1;\n"
                  "prints 'listening on http://127.0.0.1:PORT' first. GET /_stats gives\n"
                  "the connections that carried a search and the searches answered.\n");
  exit(2);
}

int main(int argc, char **argv) {
  config cfg;
  stats st;
  struct sockaddr_in addr;
  socklen_t alen = sizeof(addr);
  int port = 0, lfd, one = 1, i, p;
  size_t total = 0;
  memset(&cfg, 0, sizeof(cfg));
  cfg.pages = 2000;
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--pages") == 0 && i + 1 < argc)
      cfg.pages = atoi(argv[++i]);
    else if (strcmp(argv[i], "--latency-ms") == 0 && i + 1 < argc)
      cfg.latency_ms = atol(argv[++i]);
    else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
      port = atoi(argv[++i]);
    else
      usage();
  }
  if (cfg.pages < 1 || cfg.pages > 1000000 || cfg.latency_ms < 0)
    usage();
  signal(SIGPIPE, SIG_IGN);
  cfg.answers = calloc((size_t)cfg.pages, sizeof(char *));
  cfg.answer_len = calloc((size_t)cfg.pages, sizeof(size_t));
  cfg.tokens = calloc((size_t)cfg.pages, sizeof(char *));
  if (!cfg.answers || !cfg.answer_len || !cfg.tokens) {
    fprintf(stderr, "server: out of memory\n");
    return 1;
  }
  for (p = 1; p < cfg.pages; p++)
    if ((cfg.tokens[p] = make_token(p)) == NULL) {
      fprintf(stderr, "server: out of memory\n");
      return 1;
    }
  for (p = 0; p < cfg.pages; p++) {
    cfg.answers[p] = render_page(&cfg, p, &cfg.answer_len[p]);
    if (cfg.answers[p] == NULL) {
      fprintf(stderr, "server: cannot render page %d\n", p);
      return 1;
    }
    total += cfg.answer_len[p];
  }
  memset(&st, 0, sizeof(st));
  pthread_mutex_init(&st.lock, NULL);

  lfd = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons((unsigned short)port);
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
      listen(lfd, 128) != 0 || getsockname(lfd, (struct sockaddr *)&addr, &alen) != 0) {
    perror("server: listen");
    return 1;
  }
  printf("listening on http://127.0.0.1:%d\n", ntohs(addr.sin_port));
  printf("bench server (C, pre-rendered): %d pages of %d summaries, %lu bytes a page on average, "
         "latency %ld ms\n", cfg.pages, PAGE_ITEMS, (unsigned long)(total / (size_t)cfg.pages),
         cfg.latency_ms);
  fflush(stdout);

  for (;;) {
    pthread_t th;
    pthread_attr_t attr;
    conn *c;
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE)
        continue;
      perror("server: accept");
      return 1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c = malloc(sizeof(*c));
    if (c == NULL) {
      close(fd);
      continue;
    }
    c->fd = fd;
    c->cfg = &cfg;
    c->st = &st;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, serve, c) != 0) {
      close(fd);
      free(c);
    }
    pthread_attr_destroy(&attr);
  }
}

/* }====================================================== */
