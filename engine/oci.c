/* ct.oci: runc and umoci, argv only; `create` leaves the container detached
   with its stdout/stderr on the app's log file. */
#include "int.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int ct_proc_run(lua_State *L);

/* rt at idx: {runc=path, root=path}. */
static void check_rt(lua_State *L, int idx, const char **runc, const char **root) {
  luaL_checktype(L, idx, LUA_TTABLE);
  if (lua_getfield(L, idx, "runc") != LUA_TSTRING)
    luaL_argerror(L, idx, "rt.runc must be a string (the runc binary)");
  *runc = lua_tostring(L, -1);
  if (lua_getfield(L, idx, "root") != LUA_TSTRING)
    luaL_argerror(L, idx, "rt.root must be a string (runc's --root)");
  *root = lua_tostring(L, -1);
  lua_pop(L, 2); /* both stay anchored in rt */
}

/* Appends the strings of the array at idx to the table at the top, from n+1. */
static lua_Integer append_args(lua_State *L, int idx, lua_Integer n, const char *what) {
  lua_Integer len = luaL_len(L, idx);
  for (lua_Integer i = 1; i <= len; i++) {
    int t = lua_rawgeti(L, idx, i);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      luaL_error(L, "bad argument (%s[%d] must be a string, got %s)", what, (int)i,
                 luaL_typename(L, -1));
    lua_tostring(L, -1); /* a number becomes its string here */
    lua_rawseti(L, -2, ++n);
  }
  return n;
}

static void push_last_line(lua_State *L, const char *s, size_t len) {
  size_t end = len;
  while (end > 0) {
    while (end > 0 &&
           (s[end - 1] == '\n' || s[end - 1] == '\r' || s[end - 1] == ' ' || s[end - 1] == '\t'))
      end--;
    size_t start = end;
    while (start > 0 && s[start - 1] != '\n') start--;
    while (start < end && (s[start] == ' ' || s[start] == '\t')) start++;
    if (end > start) {
      lua_pushlstring(L, s + start, end - start);
      return;
    }
    end = start;
  }
  lua_pushnil(L);
}

/* runc logs as logrus: time="..." level=error msg="..."; keeps msg's text. */
static void logrus_msg(lua_State *L) {
  size_t len;
  const char *line = lua_tolstring(L, -1, &len);
  const char *m = line ? strstr(line, " msg=\"") : NULL;
  if (!m || line[len - 1] != '"' || m + 6 >= line + len - 1) return;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (const char *c = m + 6; c < line + len - 1; c++) {
    if (*c == '\\' && c + 1 < line + len - 1 && (c[1] == '"' || c[1] == '\\')) c++;
    luaL_addchar(&b, *c);
  }
  luaL_pushresult(&b);
  lua_remove(L, -2);
}

/* The last non-empty line written to the log open at logfd from offset
   on, or nil. A write-only descriptor is reopened for reading through
   /proc, which names that very file. */
static void push_log_tail(lua_State *L, int logfd, off_t from) {
  int fd = -1;
  int fl = fcntl(logfd, F_GETFL);
  if (fl >= 0 && (fl & O_ACCMODE) != O_WRONLY) {
    fd = fcntl(logfd, F_DUPFD_CLOEXEC, 0);
  } else {
    char proc[48];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", logfd);
    fd = open(proc, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  }
  if (fd < 0) {
    lua_pushnil(L);
    return;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size <= from) {
    close(fd);
    lua_pushnil(L);
    return;
  }
  off_t size = st.st_size - from;
  if (size > 65536) {
    from = st.st_size - 65536;
    size = 65536;
  }
  char buf[65536];
  size_t got = 0;
  while (got < (size_t)size) {
    ssize_t n = pread(fd, buf + got, (size_t)size - got, from + (off_t)got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  close(fd);
  push_last_line(L, buf, got);
}

/* nil, message (a tool's failure, no errno). */
static int fail(lua_State *L, const char *fmt, ...) {
  va_list ap;
  luaL_pushfail(L);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return 2;
}

static int wait_child(pid_t pid, int *status) {
  for (;;) {
    pid_t r = waitpid(pid, status, 0);
    if (r == pid) return 0;
    if (r < 0 && errno != EINTR) return -1;
  }
}

/* create(rt, id, bundle, opts) -> true | nil, msg, errno
   opts: log (required: a ct.fs.File the caller opened, for append, beneath
   the app's log dir), pid_file, timeout (seconds; kills runc create's group). */
static int o_create(lua_State *L) {
  const char *runc, *root;
  check_rt(L, 1, &runc, &root);
  const char *id = luaL_checkstring(L, 2);
  const char *bundle = luaL_checkstring(L, 3);
  luaL_checktype(L, 4, LUA_TTABLE);
  lua_getfield(L, 4, "log");
  int logfd = ct_testfile(L, -1);
  if (logfd < 0) luaL_argerror(L, 4, "opts.log must be a ct.fs.File open for writing");
  int t = lua_getfield(L, 4, "pid_file");
  if (t != LUA_TNIL && t != LUA_TSTRING) luaL_argerror(L, 4, "opts.pid_file must be a path");
  const char *pid_file = lua_tostring(L, -1);
  double timeout = 0;
  if (lua_getfield(L, 4, "timeout") != LUA_TNIL) {
    int isnum;
    timeout = (double)lua_tonumberx(L, -1, &isnum);
    if (!isnum || !(timeout > 0) || !isfinite(timeout))
      luaL_argerror(L, 4, "opts.timeout must be a positive number of seconds");
  }
  lua_Integer log_uid = -1, log_gid = -1;
  if (lua_getfield(L, 4, "log_uid") != LUA_TNIL) log_uid = luaL_checkinteger(L, -1);
  if (lua_getfield(L, 4, "log_gid") != LUA_TNIL) log_gid = luaL_checkinteger(L, -1);
  luaL_argcheck(L, log_uid >= -1 && log_uid < 4294967295LL && log_gid >= -1 && log_gid < 4294967295LL, 4,
                "opts.log_uid/log_gid out of range");
  const char *argv[10];
  int n = 0;
  argv[n++] = runc;
  argv[n++] = "--root";
  argv[n++] = root;
  argv[n++] = "create";
  argv[n++] = "--bundle";
  argv[n++] = bundle;
  if (pid_file) {
    argv[n++] = "--pid-file";
    argv[n++] = pid_file;
  }
  argv[n++] = id;
  argv[n] = NULL;

  struct stat st;
  off_t before = fstat(logfd, &st) == 0 ? st.st_size : 0;
  int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (nullfd < 0) return ct_oserror(L, errno, "/dev/null");
  /* Its own process group and no PDEATHSIG: runc hands its own parent-death
     signal on to the container's init, which must outlive us. The init keeps
     the log descriptor, never a pipe of ours, so nothing here waits on it. */
  int fds[3] = {nullfd, logfd, logfd};
  int err = 0;
  const char *what = NULL;
  pid_t pid = ct_proc_start(argv, NULL, NULL, fds, CT_START_DETACH, &err, &what);
  close(nullfd);
  if (pid < 0) return ct_oserror(L, err, what);

  int status = 0, timed_out = 0;
  if (timeout > 0) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
      pid_t r = waitpid(pid, &status, WNOHANG);
      if (r == pid) break;
      if (r < 0 && errno != EINTR) return ct_oserror(L, errno, "waitpid");
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      double spent = (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
      if (spent >= timeout) {
        kill(-pid, SIGKILL);
        timed_out = 1;
        if (wait_child(pid, &status) != 0) return ct_oserror(L, errno, "waitpid");
        break;
      }
      struct timespec nap = {0, 20 * 1000 * 1000};
      nanosleep(&nap, NULL);
    }
  } else if (wait_child(pid, &status) != 0) {
    return ct_oserror(L, errno, "waitpid");
  }
  if (!timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  char secs[64];
  snprintf(secs, sizeof secs, "%.14g", timeout);
  if (timed_out) return ct_error(L, ETIMEDOUT, "runc create %s: timed out after %ss", id, secs);
  push_log_tail(L, logfd, before);
  if (!lua_isnil(L, -1)) logrus_msg(L);
  const char *last = lua_tostring(L, -1);
  if (last) return fail(L, "runc create %s: %s", id, last);
  if (WIFSIGNALED(status))
    return fail(L, "runc create %s: killed by signal %d", id, WTERMSIG(status));
  return fail(L, "runc create %s: exit status %d", id, WEXITSTATUS(status));
}

/* runc(rt, args [, opts]) -> proc.run's result for runc --root R args... */
static int o_runc(lua_State *L) {
  const char *runc, *root;
  check_rt(L, 1, &runc, &root);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  lua_pushcfunction(L, ct_proc_run);
  lua_newtable(L);
  lua_pushstring(L, runc);
  lua_rawseti(L, -2, 1);
  lua_pushliteral(L, "--root");
  lua_rawseti(L, -2, 2);
  lua_pushstring(L, root);
  lua_rawseti(L, -2, 3);
  append_args(L, 2, 3, "args");
  lua_pushvalue(L, 3);
  lua_call(L, 2, LUA_MULTRET);
  return lua_gettop(L) - 3;
}

/* unpack(umoci, layout, ref, dest [, opts]) -> true | nil, msg, errno */
static int o_unpack(lua_State *L) {
  const char *umoci = luaL_checkstring(L, 1);
  const char *layout = luaL_checkstring(L, 2);
  const char *ref = luaL_checkstring(L, 3);
  const char *dest = luaL_checkstring(L, 4);
  if (!lua_isnoneornil(L, 5)) luaL_checktype(L, 5, LUA_TTABLE);
  lua_settop(L, 5);
  lua_pushcfunction(L, ct_proc_run);
  lua_createtable(L, 5, 0);
  const char *argv[] = {umoci, "unpack", "--image", NULL, dest};
  for (int i = 0; i < 5; i++) {
    if (argv[i])
      lua_pushstring(L, argv[i]);
    else
      lua_pushfstring(L, "%s:%s", layout, ref);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushvalue(L, 5);
  lua_call(L, 2, 3);
  if (lua_isnil(L, -3)) return 3; /* nil, msg, errno: could not start */
  lua_pop(L, 2);
  int r = lua_gettop(L);
  lua_getfield(L, r, "code");
  lua_Integer code = lua_tointeger(L, -1);
  lua_getfield(L, r, "timed_out");
  int timed_out = lua_toboolean(L, -1);
  lua_pop(L, 2);
  if (code == 0 && !timed_out) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (timed_out) return ct_error(L, ETIMEDOUT, "umoci unpack %s: timed out", ref);
  size_t len;
  const char *s;
  const char *streams[] = {"stderr", "stdout"};
  for (int i = 0; i < 2; i++) {
    lua_getfield(L, r, streams[i]);
    s = lua_tolstring(L, -1, &len);
    if (s) {
      push_last_line(L, s, len);
      if (!lua_isnil(L, -1)) return fail(L, "umoci unpack %s: %s", ref, lua_tostring(L, -1));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  return fail(L, "umoci unpack %s: exit status %d", ref, (int)code);
}

/* Runs the strings at stack index t (1..n) sharing our stdio, in our
   process group (so a terminal's reads and signals reach it), and waits.
   Pushes its exit code (128+signal) or nil, msg, errno. */
static int run_foreground(lua_State *L, int t, lua_Integer n) {
  const char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, t, i);
    argv[i - 1] = lua_tostring(L, -1); /* anchored in the table */
    lua_pop(L, 1);
  }
  argv[n] = NULL;
  /* Like system(): an interrupt at the terminal is the container's business;
     we wait for runc to end. The child starts with default dispositions. */
  struct sigaction ign, old_int, old_quit;
  memset(&ign, 0, sizeof ign);
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  sigaction(SIGINT, &ign, &old_int);
  sigaction(SIGQUIT, &ign, &old_quit);
  int fds[3] = {-1, -1, -1};
  int err = 0;
  const char *what = NULL;
  pid_t pid = ct_proc_start(argv, NULL, NULL, fds, CT_START_FOREGROUND, &err, &what);
  int status = 0, werr = 0;
  if (pid > 0 && wait_child(pid, &status) != 0) werr = errno;
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGQUIT, &old_quit, NULL);
  if (pid < 0) return ct_oserror(L, err, what);
  if (werr) return ct_oserror(L, werr, "waitpid");
  lua_pushinteger(L, WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                         : (WIFEXITED(status) ? WEXITSTATUS(status) : 255));
  return 1;
}

/* Appends runc, --root ROOT and, when opts (at index o) has a "log" path,
   --log PATH --log-format json to the table at index t: runc's own errors
   then go to that file as JSON, which the caller reads to tell its own
   failure from the command's status. Returns the count. */
static lua_Integer runc_prefix(lua_State *L, int t, int o, const char *runc, const char *root) {
  lua_Integer n = 0;
  lua_pushstring(L, runc);
  lua_rawseti(L, t, ++n);
  lua_pushliteral(L, "--root");
  lua_rawseti(L, t, ++n);
  lua_pushstring(L, root);
  lua_rawseti(L, t, ++n);
  if (lua_istable(L, o) && lua_getfield(L, o, "log") == LUA_TSTRING) {
    lua_pushliteral(L, "--log");
    lua_rawseti(L, t, ++n);
    lua_rawseti(L, t, ++n); /* the path, popped */
    lua_pushliteral(L, "--log-format");
    lua_rawseti(L, t, ++n);
    lua_pushliteral(L, "json");
    lua_rawseti(L, t, ++n);
  } else if (lua_istable(L, o)) {
    lua_pop(L, 1);
  }
  return n;
}

/* exec_tty(rt, id, argv [, opts]) -> exit code (128+signal) | nil, msg, errno.
   runc exec sharing our stdio, with --tty when stdin is a terminal;
   opts.log: where runc writes its own errors (see runc_prefix). */
static int o_exec_tty(lua_State *L) {
  const char *runc, *root;
  check_rt(L, 1, &runc, &root);
  const char *id = luaL_checkstring(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TTABLE);
  lua_settop(L, 4);
  lua_newtable(L); /* 5: anchors the strings */
  lua_Integer n = runc_prefix(L, 5, 4, runc, root);
  lua_pushliteral(L, "exec");
  lua_rawseti(L, 5, ++n);
  if (isatty(0)) {
    lua_pushliteral(L, "--tty");
    lua_rawseti(L, 5, ++n);
  }
  lua_pushstring(L, id);
  lua_rawseti(L, 5, ++n);
  luaL_argcheck(L, luaL_len(L, 3) >= 1, 3, "argv must be a non-empty array of strings");
  n = append_args(L, 3, n, "argv");
  return run_foreground(L, 5, n);
}

/* run_tty(rt, bundle, id [, opts]) -> exit code (128+signal) | nil, msg, errno.
   runc run of a bundle (a temporary container) sharing our stdio: stdin
   included, so `echo hi | ctcli exec app cat` reads "hi". The bundle's
   process.terminal says whether runc makes a terminal; opts.log as exec_tty. */
static int o_run_tty(lua_State *L) {
  const char *runc, *root;
  check_rt(L, 1, &runc, &root);
  const char *bundle = luaL_checkstring(L, 2);
  const char *id = luaL_checkstring(L, 3);
  if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TTABLE);
  lua_settop(L, 4);
  lua_newtable(L); /* 5: anchors the strings */
  lua_Integer n = runc_prefix(L, 5, 4, runc, root);
  const char *args[] = {"run", "--bundle", bundle, id};
  for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
    lua_pushstring(L, args[i]);
    lua_rawseti(L, 5, ++n);
  }
  return run_foreground(L, 5, n);
}

static const luaL_Reg oci_funcs[] = {
    {"create", o_create},     {"runc", o_runc}, {"unpack", o_unpack},
    {"exec_tty", o_exec_tty}, {"run_tty", o_run_tty}, {NULL, NULL},
};

int luaopen_ct_oci(lua_State *L) {
  luaL_newlib(L, oci_funcs);
  return 1;
}
