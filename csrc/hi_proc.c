/*
** hi_proc.c: runs a program without a shell (posix_spawn, after a PATH
** lookup done here as execvp would), stdin from /dev/null, stdout and stderr collected through pipes,
** under a deadline after which the child is killed (SIGKILL) and reaped.
** What credential_process needs; nothing here logs what the child printed
** (its stdout holds secrets). Caveat: a host that ignores SIGCHLD loses the
** exit status (the kernel reaps the child): that is reported as an error.
*/
#define _POSIX_C_SOURCE 200809L  /* posix_spawn, poll, kill, nanosleep, clock_gettime */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hi_core.h"
#include "hi_proc.h"

#if LUA_VERSION_NUM < 502
#define hi_rawlen(L, i) lua_objlen((L), (i))
#else
#define hi_rawlen(L, i) lua_rawlen((L), (i))
#endif

/* The environment the child inherits: the host's own. */
extern char **environ;

#define MAX_ARGS             256
#define DEFAULT_TIMEOUT_S    60.0
#define MAX_TIMEOUT_S        86400.0
#define DEFAULT_MAX_OUTPUT   (1024u * 1024u)
#define MAX_MAX_OUTPUT       (64u * 1024u * 1024u)
#define READ_CHUNK           4096


/*
** {======================================================
** The box: everything allocated for one call, freed by __gc
** =======================================================
*/

typedef struct proc_buf {
  char *data;
  size_t len;
  size_t cap;
} proc_buf;

/* Owned by a userdata so that a raise while reading arguments or pushing
** results (out of memory) cannot leak: __gc frees whatever is set. */
typedef struct proc_box {
  char **argv;      /* argc copies + NULL */
  int argc;
  char *path;       /* the program found for argv[0] */
  proc_buf out;
  proc_buf err;
} proc_box;

static void box_free(proc_box *b) {
  int i;
  if (b->argv != NULL) {
    for (i = 0; i < b->argc; i++) free(b->argv[i]);
    free(b->argv);
    b->argv = NULL;
  }
  b->argc = 0;
  free(b->path);
  b->path = NULL;
  free(b->out.data);
  free(b->err.data);
  memset(&b->out, 0, sizeof b->out);
  memset(&b->err, 0, sizeof b->err);
}

static int box_gc(lua_State *L) {
  box_free((proc_box *)luaL_checkudata(L, 1, HI_PROC_BOX_MT));
  return 0;
}

/* Appends n bytes; returns 0, or -1 when out of memory. */
static int buf_add(proc_buf *b, const char *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : READ_CHUNK;
    char *d;
    while (cap < b->len + n) cap *= 2;
    d = (char *)realloc(b->data, cap);
    if (d == NULL) return -1;
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

/* }====================================================== */


/*
** {======================================================
** Running the child (no Lua calls in this section)
** =======================================================
*/

typedef enum {
  PR_OK = 0, PR_NOMEM, PR_PIPE, PR_SPAWN, PR_TIMEOUT, PR_TOO_LARGE, PR_WAIT
} proc_status;

typedef struct proc_run {
  long timeout_ms;
  size_t max_output;
  int spawn_errno;       /* set with PR_SPAWN / PR_PIPE / PR_WAIT */
  int exited;            /* 1 with exit_code, 0 with term_signal */
  int exit_code;
  int term_signal;
} proc_run;

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void close_fd(int *fd) {
  if (*fd >= 0) {
    while (close(*fd) != 0 && errno == EINTR) {}
    *fd = -1;
  }
}

/* Parent-side ends must not leak into other children the host spawns, and
** reads must never block past the deadline. */
static int prepare_pipe(int p[2]) {
  if (pipe(p) != 0) return -1;
  if (fcntl(p[0], F_SETFD, FD_CLOEXEC) != 0 || fcntl(p[1], F_SETFD, FD_CLOEXEC) != 0 ||
      fcntl(p[0], F_SETFL, O_NONBLOCK) != 0)
    return -1;
  return 0;
}

/* Reads what is available from fd into b. Returns 1 at end of file (fd
** closed), 0 to keep reading, PR_TOO_LARGE or PR_NOMEM. */
static int drain(int *fd, proc_buf *b, size_t max) {
  char chunk[READ_CHUNK];
  for (;;) {
    ssize_t n = read(*fd, chunk, sizeof chunk);
    if (n > 0) {
      if (b->len + (size_t)n > max) return -PR_TOO_LARGE;
      if (buf_add(b, chunk, (size_t)n) != 0) return -PR_NOMEM;
      continue;
    }
    if (n == 0) { close_fd(fd); return 1; }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    close_fd(fd);   /* a read error ends that stream like EOF */
    return 1;
  }
}

/* 0 when path is a regular file this process may execute, else an errno. */
static int executable(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return errno;
  if (!S_ISREG(st.st_mode)) return EACCES;
  if (access(path, X_OK) != 0) return errno;
  return 0;
}

/*
** Finds the program as execvp would: a name with a '/' as is, else the
** first executable PATH entry (an empty entry is the current folder).
** Done here rather than by posix_spawnp so that "not found" is an error
** value everywhere: where exec failures are only seen in the child (older
** libcs, valgrind), they would come back as exit status 127. Writes a
** malloc'd path to *path_out (only on success); returns 0 or an errno.
*/
static int find_program(const char *name, char **path_out) {
  const char *path_env, *p;
  int found_err = ENOENT, e;
  size_t nlen = strlen(name);
  if (strchr(name, '/') != NULL) {
    char *copy;
    if ((e = executable(name)) != 0) return e;
    copy = (char *)malloc(nlen + 1);
    if (copy == NULL) return ENOMEM;
    memcpy(copy, name, nlen + 1);
    *path_out = copy;
    return 0;
  }
  path_env = getenv("PATH");
  if (path_env == NULL) path_env = "/usr/local/bin:/usr/bin:/bin";
  for (p = path_env;; p++) {
    const char *end = strchr(p, ':');
    size_t dlen = end ? (size_t)(end - p) : strlen(p);
    char *full = (char *)malloc(dlen + nlen + 3);
    if (full == NULL) return ENOMEM;
    if (dlen == 0) {
      full[0] = '.';
      dlen = 1;
    } else {
      memcpy(full, p, dlen);
    }
    full[dlen] = '/';
    memcpy(full + dlen + 1, name, nlen + 1);
    e = executable(full);
    if (e == 0) { *path_out = full; return 0; }
    free(full);
    if (e == EACCES) found_err = EACCES;   /* there, but not runnable */
    if (end == NULL) break;
    p = end;
  }
  return found_err;
}

/* Sleeps a few milliseconds while polling waitpid after both pipes closed. */
static void nap(void) {
  struct timespec ts;
  ts.tv_sec = 0;
  ts.tv_nsec = 5 * 1000000L;
  nanosleep(&ts, NULL);
}

/*
** Runs b->argv to completion or to the deadline. Owns the pipes, the file
** actions and the child: every exit goes through cleanup, which closes what
** is open and kills and reaps a child still running.
*/
static proc_status run(proc_box *b, proc_run *r) {
  int outp[2] = {-1, -1}, errp[2] = {-1, -1};
  pid_t pid = -1;
  int reaped = 0, fa_ready = 0, attr_ready = 0, e, status = 0;
  proc_status st = PR_OK;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t none, defaults;
  long deadline = now_ms() + r->timeout_ms;

  if ((e = find_program(b->argv[0], &b->path)) != 0) {
    r->spawn_errno = e;
    st = e == ENOMEM ? PR_NOMEM : PR_SPAWN;
    goto cleanup;
  }
  if (prepare_pipe(outp) != 0 || prepare_pipe(errp) != 0) {
    r->spawn_errno = errno;
    st = PR_PIPE;
    goto cleanup;
  }
  if ((e = posix_spawn_file_actions_init(&fa)) != 0) { r->spawn_errno = e; st = PR_SPAWN; goto cleanup; }
  fa_ready = 1;
  if ((e = posix_spawnattr_init(&attr)) != 0) { r->spawn_errno = e; st = PR_SPAWN; goto cleanup; }
  attr_ready = 1;
  /* The child starts clean: no blocked signals, and the signals a host
  ** commonly ignores or catches back to their default action. */
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGCHLD);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGHUP);
  sigaddset(&defaults, SIGQUIT);
  if ((e = posix_spawnattr_setsigmask(&attr, &none)) != 0 ||
      (e = posix_spawnattr_setsigdefault(&attr, &defaults)) != 0 ||
      (e = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)) != 0 ||
      (e = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) != 0 ||
      (e = posix_spawn_file_actions_adddup2(&fa, outp[1], 1)) != 0 ||
      (e = posix_spawn_file_actions_adddup2(&fa, errp[1], 2)) != 0) {
    r->spawn_errno = e;
    st = PR_SPAWN;
    goto cleanup;
  }
  if ((e = posix_spawn(&pid, b->path, &fa, &attr, b->argv, environ)) != 0) {
    pid = -1;
    r->spawn_errno = e;
    st = PR_SPAWN;
    goto cleanup;
  }
  close_fd(&outp[1]);
  close_fd(&errp[1]);

  while (outp[0] >= 0 || errp[0] >= 0) {
    struct pollfd fds[2];
    nfds_t nfds = 0;
    int d, i;
    long left = deadline - now_ms();
    if (left <= 0) { st = PR_TIMEOUT; goto cleanup; }
    if (outp[0] >= 0) { fds[nfds].fd = outp[0]; fds[nfds].events = POLLIN; fds[nfds].revents = 0; nfds++; }
    if (errp[0] >= 0) { fds[nfds].fd = errp[0]; fds[nfds].events = POLLIN; fds[nfds].revents = 0; nfds++; }
    if (poll(fds, nfds, left > 1000000L ? 1000000 : (int)left) < 0) {
      if (errno == EINTR) continue;
      r->spawn_errno = errno;
      st = PR_PIPE;
      goto cleanup;
    }
    for (i = 0; i < (int)nfds; i++) {
      int *fd;
      proc_buf *buf;
      if (fds[i].revents == 0) continue;
      fd = fds[i].fd == outp[0] ? &outp[0] : &errp[0];
      buf = fd == &outp[0] ? &b->out : &b->err;
      d = drain(fd, buf, r->max_output);
      if (d < 0) { st = (proc_status)-d; goto cleanup; }
    }
  }
  /* Both streams are closed; the child may still be running. */
  for (;;) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) { reaped = 1; break; }
    if (w < 0) {
      if (errno == EINTR) continue;
      r->spawn_errno = errno;
      reaped = errno == ECHILD;   /* someone else reaped it */
      st = PR_WAIT;
      goto cleanup;
    }
    if (now_ms() >= deadline) { st = PR_TIMEOUT; goto cleanup; }
    nap();
  }
  if (WIFEXITED(status)) {
    r->exited = 1;
    r->exit_code = WEXITSTATUS(status);
  } else {
    r->exited = 0;
    r->term_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  }

cleanup:
  close_fd(&outp[0]);
  close_fd(&outp[1]);
  close_fd(&errp[0]);
  close_fd(&errp[1]);
  if (pid > 0 && !reaped) {
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
  }
  if (attr_ready) posix_spawnattr_destroy(&attr);
  if (fa_ready) posix_spawn_file_actions_destroy(&fa);
  return st;
}

/* }====================================================== */


/*
** {======================================================
** Lua interface
** =======================================================
*/

/* Reads argv (a list of 1..MAX_ARGS strings without NUL bytes) into the
** box as private copies. Raises on misuse or when out of memory. */
static void read_argv(lua_State *L, proc_box *b) {
  size_t n = hi_rawlen(L, 1), i;
  luaL_argcheck(L, n >= 1 && n <= MAX_ARGS, 1, "argv must hold 1 to 256 strings");
  b->argv = (char **)calloc(n + 1, sizeof *b->argv);
  if (b->argv == NULL) luaL_error(L, "not enough memory");
  for (i = 0; i < n; i++) {
    size_t len;
    const char *s;
    lua_rawgeti(L, 1, (int)i + 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_argerror(L, 1, lua_pushfstring(L, "argv[%d] must be a string", (int)i + 1));
    s = lua_tolstring(L, -1, &len);
    if (strlen(s) != len)
      luaL_argerror(L, 1, lua_pushfstring(L, "argv[%d] contains a NUL byte", (int)i + 1));
    if (i == 0 && len == 0) luaL_argerror(L, 1, "argv[1] must not be empty");
    b->argv[i] = (char *)malloc(len + 1);
    if (b->argv[i] == NULL) luaL_error(L, "not enough memory");
    memcpy(b->argv[i], s, len + 1);
    b->argc = (int)i + 1;
    lua_pop(L, 1);
  }
}

/* Reads the optional option table at index 2. Raises on misuse. */
static void read_opts(lua_State *L, proc_run *r) {
  lua_Number t = DEFAULT_TIMEOUT_S, m = (lua_Number)DEFAULT_MAX_OUTPUT;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "timeout");
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TNUMBER) luaL_argerror(L, 2, "field 'timeout' must be a number");
      t = lua_tonumber(L, -1);
      if (!(t > 0 && t <= MAX_TIMEOUT_S))
        luaL_argerror(L, 2, "field 'timeout' must be between 0 (excluded) and 86400 seconds");
    }
    lua_getfield(L, 2, "max_output");
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TNUMBER) luaL_argerror(L, 2, "field 'max_output' must be a number");
      m = lua_tonumber(L, -1);
      if (!(m >= 1 && m <= (lua_Number)MAX_MAX_OUTPUT))
        luaL_argerror(L, 2, "field 'max_output' must be between 1 and 67108864 bytes");
    }
    lua_pop(L, 2);
  }
  r->timeout_ms = (long)(t * 1000.0);
  if (r->timeout_ms < 1) r->timeout_ms = 1;
  r->max_output = (size_t)m;
}

/* Pushes nil and an error table {code, message}; returns 2. */
static int push_error(lua_State *L, const char *code, const char *message) {
  lua_pushnil(L);
  lua_createtable(L, 0, 2);
  lua_pushstring(L, code);
  lua_setfield(L, -2, "code");
  lua_pushstring(L, message);
  lua_setfield(L, -2, "message");
  return 2;
}

/*
** core.spawn(argv [, {timeout = s, max_output = bytes}]) ->
**   {exit_code = n | signal = n, stdout = s, stderr = s} | nil, err.
** err.code: ProcessNotFound (argv[1] not found or not executable),
** ProcessTimeout, ProcessOutputTooLarge (either stream past max_output),
** ProcessError (pipes, spawn or wait failed). Raises on misuse and when out
** of memory; the child never outlives the call.
*/
static int l_spawn(lua_State *L) {
  proc_box *b;
  proc_run r;
  proc_status st;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  memset(&r, 0, sizeof r);
  b = (proc_box *)lua_newuserdata(L, sizeof *b);   /* stack index 3 */
  memset(b, 0, sizeof *b);
  luaL_getmetatable(L, HI_PROC_BOX_MT);
  lua_setmetatable(L, -2);
  read_argv(L, b);
  read_opts(L, &r);

  st = run(b, &r);

  switch (st) {
    case PR_OK: break;
    case PR_NOMEM: box_free(b); return luaL_error(L, "not enough memory");
    case PR_TIMEOUT:
      box_free(b);
      return push_error(L, "ProcessTimeout", "the process did not finish in time and was killed");
    case PR_TOO_LARGE:
      box_free(b);
      return push_error(L, "ProcessOutputTooLarge", "the process wrote more than max_output bytes and was killed");
    case PR_SPAWN:
      box_free(b);
      if (r.spawn_errno == ENOENT || r.spawn_errno == EACCES || r.spawn_errno == ENOTDIR ||
          r.spawn_errno == ENOEXEC || r.spawn_errno == ELOOP || r.spawn_errno == ENAMETOOLONG)
        return push_error(L, "ProcessNotFound", lua_pushfstring(L, "cannot run the program: %s",
                          strerror(r.spawn_errno)));
      return push_error(L, "ProcessError", lua_pushfstring(L, "cannot start the process: %s",
                        strerror(r.spawn_errno)));
    case PR_PIPE:
      box_free(b);
      return push_error(L, "ProcessError", lua_pushfstring(L, "cannot talk to the process: %s",
                        strerror(r.spawn_errno)));
    case PR_WAIT:
      box_free(b);
      return push_error(L, "ProcessError", lua_pushfstring(L, "the exit status of the process was lost "
                        "(%s; does the host ignore SIGCHLD?)", strerror(r.spawn_errno)));
  }
  lua_createtable(L, 0, 3);
  if (r.exited) {
    lua_pushinteger(L, r.exit_code);
    lua_setfield(L, -2, "exit_code");
  } else {
    lua_pushinteger(L, r.term_signal);
    lua_setfield(L, -2, "signal");
  }
  lua_pushlstring(L, b->out.data ? b->out.data : "", b->out.len);
  lua_setfield(L, -2, "stdout");
  lua_pushlstring(L, b->err.data ? b->err.data : "", b->err.len);
  lua_setfield(L, -2, "stderr");
  box_free(b);
  return 1;
}

/* }====================================================== */


static const luaL_Reg funcs[] = {
  {"spawn", l_spawn},
  {NULL, NULL}
};

void hi_proc_open(lua_State *L) {
  const luaL_Reg *f;
  luaL_newmetatable(L, HI_PROC_BOX_MT);
  lua_pushcfunction(L, box_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  for (f = funcs; f->name != NULL; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
}
