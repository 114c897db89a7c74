/* ct.monitor: starts a container's monitor (monitor.c, this same binary
   re-executed) detached from us, and talks to a running one over its
   control socket. The policy travels in the configuration; none is here. */
#include "ct.h"
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---------- the configuration ---------- */

/* Appends "key=value" to the records table at t. */
static void rec(lua_State *L, int t, const char *key, const char *val) {
  lua_pushfstring(L, "%s=%s", key, val);
  lua_rawseti(L, t, (lua_Integer)luaL_len(L, t) + 1);
}

static void rec_num(lua_State *L, int t, const char *key, long long v) {
  char s[32];
  snprintf(s, sizeof s, "%lld", v);
  rec(L, t, key, s);
}

/* opts[key] as a string without NUL; required unless opt. */
static const char *opt_str(lua_State *L, const char *key, int opt) {
  int t = lua_getfield(L, 1, key);
  if (t == LUA_TNIL && opt) {
    lua_pop(L, 1);
    return NULL;
  }
  size_t len;
  const char *s = t == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
  if (!s || strlen(s) != len) luaL_error(L, "bad argument #1 (opts.%s must be a string without NUL)", key);
  lua_pop(L, 1); /* still anchored in opts */
  return s;
}

/* opts[key] as a number >= 0 times scale, rounded; dflt when absent and
   dflt >= 0, else required. */
static long long opt_num(lua_State *L, const char *key, double scale, long long dflt) {
  int isnum;
  lua_getfield(L, 1, key);
  if (lua_isnil(L, -1) && dflt >= 0) {
    lua_pop(L, 1);
    return dflt;
  }
  double v = (double)lua_tonumberx(L, -1, &isnum);
  lua_pop(L, 1);
  if (!isnum || !(v >= 0) || !isfinite(v) || v * scale > 9e15)
    luaL_error(L, "bad argument #1 (opts.%s must be a number >= 0)", key);
  return llround(v * scale);
}

static void rec_argv(lua_State *L, int t, const char *key) {
  if (lua_getfield(L, 1, key) != LUA_TTABLE || luaL_len(L, -1) < 1 || luaL_len(L, -1) > 64)
    luaL_error(L, "bad argument #1 (opts.%s must be an argv: 1 to 64 strings)", key);
  for (lua_Integer i = 1, n = luaL_len(L, -1); i <= n; i++) {
    size_t len;
    const char *s = lua_rawgeti(L, -1, i) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    if (!s || strlen(s) != len) luaL_error(L, "bad argument #1 (opts.%s[%d] must be a string without NUL)", key, (int)i);
    rec(L, t, key, s);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static int opt_dir(lua_State *L, const char *key) {
  lua_getfield(L, 1, key);
  int fd = ct_testdir(L, -1);
  if (fd < 0) luaL_error(L, "bad argument #1 (opts.%s must be a ct.fs.Dir)", key);
  lua_pop(L, 1);
  return fd;
}

/* Checks opts (at 1) and pushes the configuration: the records joined,
   each ending in NUL. Raises on a bad option, before any descriptor. */
static void push_config(lua_State *L) {
  const char *restart = opt_str(L, "restart", 0);
  int never = strcmp(restart, "no") == 0;
  if (!never && strcmp(restart, "on-failure") != 0 && strcmp(restart, "always") != 0)
    luaL_error(L, "bad argument #1 (opts.restart must be \"no\", \"on-failure\" or \"always\")");
  lua_newtable(L);
  int t = lua_gettop(L);
  rec_num(L, t, CT_MONITOR_CONFIG_KEY, CT_MONITOR_CONFIG_VERSION);
  rec(L, t, "id", opt_str(L, "id", 0));
  rec(L, t, "pid_file", opt_str(L, "pid_file", 0));
  rec(L, t, "restart", restart);
  const char *cg = opt_str(L, "cgroup", 1);
  if (cg) rec(L, t, "cgroup", cg);
  const char *journal = opt_str(L, "journal", 1);
  if (journal) {
    struct sockaddr_un sa;
    if (journal[0] != '/' || strlen(journal) >= sizeof sa.sun_path)
      luaL_error(L, "bad argument #1 (opts.journal must be an absolute socket path below %d bytes)",
                 (int)sizeof sa.sun_path);
    rec(L, t, "journal", journal);
    static const char *const fields[][2] = {{"journal_identifier", "journal_id"}, {"journal_container", "journal_name"}};
    for (int i = 0; i < 2; i++) {
      const char *v = opt_str(L, fields[i][0], 1);
      if (v && strlen(v) > CT_JOURNAL_FIELD)
        luaL_error(L, "bad argument #1 (opts.%s: at most %d bytes)", fields[i][0], CT_JOURNAL_FIELD);
      if (v) rec(L, t, fields[i][1], v);
    }
  }
  rec_num(L, t, "logs_fd", CT_MONITOR_LOGS_FD);
  rec_num(L, t, "state_fd", CT_MONITOR_STATE_FD);
  rec_num(L, t, "ready_fd", CT_MONITOR_READY_FD);
  static const struct {
    const char *key, *rec;
    double scale;
    int always;
  } nums[] = {
      {"log_max", "log_max", 1, 1},
      {"log_keep", "log_keep", 1, 1},
      {"backoff_initial", "backoff_ms", 1000, 0},
      {"backoff_max", "backoff_max_ms", 1000, 0},
      {"crash_limit", "limit", 1, 0},
      {"quick_run", "quick_ms", 1000, 0},
  };
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
    rec_num(L, t, nums[i].rec, opt_num(L, nums[i].key, nums[i].scale, nums[i].always || !never ? -1 : 0));
  rec_num(L, t, "runc_ms", opt_num(L, "runc_timeout", 1000, 0));
  if (lua_getfield(L, 1, "uid") != LUA_TNIL) {
    rec_num(L, t, "uid", opt_num(L, "uid", 1, -1));
    rec_num(L, t, "gid", opt_num(L, "gid", 1, -1));
  }
  lua_pop(L, 1);
  rec_argv(L, t, "create");
  rec_argv(L, t, "start");
  rec_argv(L, t, "delete");
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (lua_Integer i = 1, n = luaL_len(L, t); i <= n; i++) {
    lua_rawgeti(L, t, i);
    luaL_addvalue(&b);
    luaL_addchar(&b, '\0');
  }
  luaL_pushresult(&b);
  lua_remove(L, t);
}

/* ---------- spawning ---------- */

/* What the monitor inherits; -1 when not open. */
struct spawn_fds {
  int cfg, logs, state, ready_r, ready_w, null;
};

static void close_all(struct spawn_fds *f) {
  int *v[] = {&f->cfg, &f->logs, &f->state, &f->ready_r, &f->ready_w, &f->null};
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    if (*v[i] >= 0) close(*v[i]);
    *v[i] = -1;
  }
}

/* The grandchild: stdio on /dev/null, our four descriptors on 3..6 (see
   monitor.h), nothing else, default signals, exec. */
static void exec_monitor(const char *exe, const char *id, struct spawn_fds *f) {
  int src[4] = {f->cfg, f->logs, f->state, f->ready_w};
  for (int i = 0; i < 4; i++) /* out of 0..6 first, so no dup2 clobbers another source */
    if ((src[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 10)) < 0) _exit(127);
  for (int i = 0; i < 3; i++)
    if (dup2(f->null, i) < 0) _exit(127);
  for (int i = 0; i < 4; i++)
    if (dup2(src[i], CT_MONITOR_CFG_FD + i) < 0) _exit(127);
  if (syscall(SYS_close_range, 7U, ~0U, 0U) != 0)
    for (int fd = 7; fd < 1024; fd++) close(fd);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; s++)
    if (s != SIGKILL && s != SIGSTOP) sigaction(s, &sa, NULL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  char cfd[16];
  snprintf(cfd, sizeof cfd, "%d", CT_MONITOR_CFG_FD);
  char *const argv[] = {(char *)exe, CT_MONITOR_ARG, cfd, (char *)id, NULL};
  execv(exe, argv);
  char msg[300];
  int n = snprintf(msg, sizeof msg, "error exec %s: %s\n", exe, strerror(errno));
  if (n > 0 && write(CT_MONITOR_READY_FD, msg, (size_t)n) < 0) _exit(127);
  _exit(127);
}

/* Double fork: the intermediate child starts a session and leaves, so the
   monitor is no child of ours and can never take a controlling terminal. */
static int fork_monitor(const char *exe, const char *id, struct spawn_fds *f) {
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, &old);
  pid_t mid = fork();
  if (mid == 0) {
    pid_t p = setsid() < 0 ? -1 : fork();
    if (p == 0) exec_monitor(exe, id, f);
    if (p < 0) {
      char msg[200];
      int n = snprintf(msg, sizeof msg, "error fork: %s\n", strerror(errno));
      if (n > 0 && write(f->ready_w, msg, (size_t)n) < 0) _exit(127);
    }
    _exit(p < 0 ? 127 : 0);
  }
  int err = errno;
  sigprocmask(SIG_SETMASK, &old, NULL);
  if (mid < 0) return err;
  /* Its failures arrive on the report pipe; its status says nothing more
     (and a tool such as valgrind may change it). */
  while (waitpid(mid, NULL, 0) < 0)
    if (errno != EINTR) return errno;
  return 0;
}

/* Reads up to a newline from fd into buf (NUL-terminated, without the
   newline) before deadline. 0, or an errno (ETIMEDOUT; EPIPE at EOF). */
static int read_line(int fd, char *buf, size_t cap, size_t *len, double deadline) {
  for (;;) {
    char *nl = memchr(buf, '\n', *len);
    if (nl) {
      *nl = '\0';
      return 0;
    }
    if (*len >= cap - 1) return EMSGSIZE;
    double left = deadline - ct_mono();
    if (left <= 0) return ETIMEDOUT;
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, left > 3600 ? 3600000 : (int)(left * 1000) + 1);
    if (r < 0 && errno != EINTR) return errno;
    if (r <= 0) continue;
    ssize_t n = read(fd, buf + *len, cap - 1 - *len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return errno;
    if (n == 0) return EPIPE;
    *len += (size_t)n;
  }
}

/* The monitor's report: "monitor <pid>", then "ready <init pid>" or
   "error <message>". */
static int read_report(lua_State *L, int fd, double timeout) {
  char buf[1024];
  size_t len = 0;
  long long mpid = 0, v;
  double deadline = ct_mono() + timeout;
  for (;;) {
    int err = read_line(fd, buf, sizeof buf, &len, deadline);
    if (err == ETIMEDOUT)
      return ct_error(L, err, "the monitor (pid %d) was not ready after %.14gs", (int)mpid, timeout);
    if (err == EPIPE) return ct_error(L, EIO, "the monitor exited before it was ready");
    if (err) return ct_oserror(L, err, "the monitor's report");
    if (sscanf(buf, "monitor %lld", &v) == 1) mpid = v;
    if (sscanf(buf, "ready %lld", &v) == 1) {
      lua_pushinteger(L, mpid);
      lua_pushinteger(L, v);
      return 2;
    }
    if (strncmp(buf, "error ", 6) == 0) return ct_error(L, EIO, "%s", buf + 6);
    size_t used = strlen(buf) + 1;
    len -= used;
    memmove(buf, buf + used, len);
  }
}

/* Opens what the monitor inherits; 0 or an errno with *what. */
static int open_fds(lua_State *L, struct spawn_fds *f, int logs, int state, const char **what) {
  size_t clen;
  const char *cfg = lua_tolstring(L, -1, &clen);
  int p[2];
  *what = "memfd_create";
  if ((f->cfg = memfd_create("ctcli-monitor-config", MFD_CLOEXEC)) < 0) return errno;
  *what = "monitor config";
  if (write(f->cfg, cfg, clen) != (ssize_t)clen) return errno ? errno : EIO;
  *what = "dup";
  if ((f->logs = fcntl(logs, F_DUPFD_CLOEXEC, 3)) < 0 || (f->state = fcntl(state, F_DUPFD_CLOEXEC, 3)) < 0)
    return errno;
  *what = "/dev/null";
  if ((f->null = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0) return errno;
  *what = "pipe";
  if (pipe2(p, O_CLOEXEC) != 0) return errno;
  f->ready_r = p[0];
  f->ready_w = p[1];
  return 0;
}

/* spawn(opts) -> monitor pid, init pid | nil, msg, errno */
static int m_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  const char *id = opt_str(L, "id", 0);
  double timeout = (double)opt_num(L, "timeout", 1000, -1) / 1000;
  luaL_argcheck(L, timeout > 0, 1, "opts.timeout must be > 0 (seconds)");
  int logs = opt_dir(L, "logs"), state = opt_dir(L, "state");
  char exe[PATH_MAX];
  const char *want = opt_str(L, "exe", 1);
  push_config(L); /* 2; every check is done: no error is raised below */
  if (!want) {
    /* The path, not /proc/self/exe, so a binary run by valgrind starts itself. */
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0) return ct_oserror(L, errno, "/proc/self/exe");
    exe[n] = '\0';
    if (n > 10 && strcmp(exe + n - 10, " (deleted)") == 0) snprintf(exe, sizeof exe, "/proc/self/exe");
    want = exe;
  }
  struct spawn_fds f = {-1, -1, -1, -1, -1, -1};
  const char *what = NULL;
  int err = open_fds(L, &f, logs, state, &what);
  if (!err) {
    what = "fork";
    err = fork_monitor(want, id, &f);
  }
  int ready = f.ready_r;
  f.ready_r = -1;
  close_all(&f); /* ours go; the monitor has its copies */
  if (err) {
    if (ready >= 0) close(ready);
    return ct_oserror(L, err, what);
  }
  int n = read_report(L, ready, timeout);
  close(ready);
  return n;
}

/* ---------- requests ---------- */

/* request(sock, line [, timeout_ms]) -> reply, version | nil, msg, errno.
   sock: the socket's path, or the state ct.fs.Dir holding monitor.sock. */
static int m_request(lua_State *L) {
  lua_settop(L, 3);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  int dfd = ct_testdir(L, 1);
  const char *shown;
  if (dfd >= 0) {
    snprintf(a.sun_path, sizeof a.sun_path, "/proc/self/fd/%d/%s", dfd, CT_MONITOR_SOCKET);
    lua_getiuservalue(L, 1, 1);
    shown = lua_pushfstring(L, "%s/%s", lua_tostring(L, -1), CT_MONITOR_SOCKET);
  } else {
    shown = luaL_checkstring(L, 1);
    if (strlen(shown) >= sizeof a.sun_path) return ct_error(L, ENAMETOOLONG, "%s: path too long for a socket", shown);
    memcpy(a.sun_path, shown, strlen(shown));
  }
  size_t len;
  const char *line = luaL_checklstring(L, 2, &len);
  luaL_argcheck(L, len > 0 && len < 250 && strlen(line) == len && !strchr(line, '\n'), 2,
                "a request is one line of 1 to 249 bytes");
  lua_Integer ms = luaL_optinteger(L, 3, 5000);
  luaL_argcheck(L, ms > 0 && ms <= 3600000, 3, "timeout_ms must be 1 to 3600000");
  double deadline = ct_mono() + (double)ms / 1000;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ct_oserror(L, errno, "socket");
  char buf[4096];
  size_t got = 0;
  int version = 0, err = 0;
  const char *stage = shown;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) err = errno;
  if (!err) {
    stage = "the monitor's greeting";
    err = read_line(fd, buf, sizeof buf, &got, deadline);
  }
  if (!err && sscanf(buf, "ctcli-monitor %d", &version) != 1) err = EPROTO;
  if (!err) {
    got -= strlen(buf) + 1;
    memmove(buf, buf + strlen(buf) + 1, got);
    stage = "the request";
    char out[256];
    int n = snprintf(out, sizeof out, "%s\n", line);
    if (send(fd, out, (size_t)n, MSG_NOSIGNAL) != n) err = errno ? errno : EIO;
  }
  if (!err) {
    stage = "the monitor's reply";
    err = read_line(fd, buf, sizeof buf, &got, deadline);
  }
  close(fd);
  if (err) return ct_oserror(L, err, stage);
  lua_pushstring(L, buf);
  lua_pushinteger(L, version);
  return 2;
}

static const luaL_Reg monitor_funcs[] = {
    {"spawn", m_spawn},
    {"request", m_request},
    {NULL, NULL},
};

int luaopen_ct_monitor(lua_State *L) {
  luaL_newlib(L, monitor_funcs);
  lua_pushinteger(L, CT_MONITOR_PROTOCOL);
  lua_setfield(L, -2, "protocol");
  lua_pushliteral(L, CT_MONITOR_SOCKET);
  lua_setfield(L, -2, "socket_name");
  lua_pushliteral(L, CT_MONITOR_STATE);
  lua_setfield(L, -2, "state_name");
  lua_pushliteral(L, CT_MONITOR_LOG);
  lua_setfield(L, -2, "log_name");
  return 1;
}
