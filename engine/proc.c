/* ct.proc: running programs (argv only, never a shell), process groups and signals (starting one is spawn.c, fork_call sandbox.c). */
#include "int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;



/* ---------- argument parsing ---------- */

/* argv at idx: a non-empty array of strings -> a NULL-terminated char* array
   in a userdatum pushed on the stack (the strings stay anchored in the table). */
static const char **check_argv(lua_State *L, int idx) {
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_Integer n = luaL_len(L, idx);
  luaL_argcheck(L, n >= 1, idx, "argv must be a non-empty array of strings");
  const char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 1);
  lua_newtable(L); /* anchors converted numbers */
  for (lua_Integer i = 1; i <= n; i++) {
    int t = lua_rawgeti(L, idx, i);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      luaL_error(L, "bad argument #%d (argv[%d] must be a string, got %s)", idx, (int)i,
                 luaL_typename(L, -1));
    if (t == LUA_TNUMBER) lua_tostring(L, -1);
    argv[i - 1] = lua_tostring(L, -1);
    lua_rawseti(L, -2, i);
  }
  argv[n] = NULL;
  lua_setiuservalue(L, -2, 1);
  return argv;
}

/* Collects name=value strings of tab (idx) into out (a table at the top). */
static void env_merge(lua_State *L, int out, int idx, const char *what) {
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
      luaL_error(L, "bad option '%s' (a table of string names to string values)", what);
    const char *k = lua_tostring(L, -2);
    if (!*k || strchr(k, '=')) luaL_error(L, "bad option '%s' (bad variable name '%s')", what, k);
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_tostring(L, -1);
    lua_rawset(L, out);
    lua_pop(L, 1);
  }
}

/* opts.env / opts.env_add -> envp (NULL: ours), pushed anchored on the stack. */
static char **build_env(lua_State *L, int opts) {
  int has_env = 0, has_add = 0;
  if (opts) {
    has_env = lua_getfield(L, opts, "env") != LUA_TNIL;
    has_add = lua_getfield(L, opts, "env_add") != LUA_TNIL;
  } else {
    lua_pushnil(L);
    lua_pushnil(L);
  }
  int ienv = lua_absindex(L, -2), iadd = lua_absindex(L, -1);
  if (has_env && !lua_istable(L, ienv)) luaL_error(L, "bad option 'env' (a table expected)");
  if (has_add && !lua_istable(L, iadd)) luaL_error(L, "bad option 'env_add' (a table expected)");
  if (!has_env && !has_add) {
    lua_pop(L, 2);
    lua_pushnil(L);
    return NULL;
  }
  lua_newtable(L);
  int out = lua_gettop(L);
  if (has_env) {
    env_merge(L, out, ienv, "env");
  } else {
    for (char **e = environ; *e; e++) {
      const char *eq = strchr(*e, '=');
      if (!eq || eq == *e) continue;
      lua_pushlstring(L, *e, (size_t)(eq - *e));
      lua_pushstring(L, eq + 1);
      lua_rawset(L, out);
    }
  }
  if (has_add) env_merge(L, out, iadd, "env_add");
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, out)) {
    n++;
    lua_pop(L, 1);
  }
  char **envp = lua_newuserdatauv(L, sizeof(char *) * (n + 1), 1);
  lua_newtable(L);
  size_t i = 0;
  lua_pushnil(L);
  while (lua_next(L, out)) {
    lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
    envp[i] = (char *)lua_tostring(L, -1);
    lua_rawseti(L, -4, (lua_Integer)++i);
    lua_pop(L, 1);
  }
  envp[n] = NULL;
  lua_setiuservalue(L, -2, 1);
  lua_replace(L, ienv);
  lua_settop(L, ienv);
  return envp;
}

enum dest { D_CAPTURE, D_INHERIT, D_NULL, D_APPEND, D_STDOUT, D_FILE };

static enum dest check_dest(lua_State *L, int opts, const char *name, enum dest dflt,
                            const char **path, int *filefd) {
  *path = NULL;
  *filefd = -1;
  if (!opts) return dflt;
  int t = lua_getfield(L, opts, name);
  enum dest d = dflt;
  if (t == LUA_TSTRING) {
    const char *s = lua_tostring(L, -1);
    if (strcmp(s, "capture") == 0)
      d = D_CAPTURE;
    else if (strcmp(s, "inherit") == 0)
      d = D_INHERIT;
    else if (strcmp(s, "null") == 0)
      d = D_NULL;
    else if (strcmp(s, "stdout") == 0 && strcmp(name, "stderr") == 0)
      d = D_STDOUT;
    else
      luaL_error(L, "bad option '%s' (unknown value '%s')", name, s);
  } else if (t == LUA_TTABLE) {
    if (lua_getfield(L, -1, "append") != LUA_TSTRING)
      luaL_error(L, "bad option '%s' (expected {append=path})", name);
    *path = lua_tostring(L, -1);
    lua_pop(L, 1);
    d = D_APPEND;
  } else if (t == LUA_TUSERDATA && (*filefd = ct_testfile(L, -1)) >= 0) {
    d = D_FILE; /* a ct.fs.File, which opts keeps alive */
  } else if (t != LUA_TNIL) {
    luaL_error(L, "bad option '%s' (a string, {append=path} or a ct.fs.File expected)", name);
  }
  lua_pop(L, 1); /* the path string stays anchored in opts */
  return d;
}

struct opts {
  const char **argv;
  char **envp;
  const char *cwd;
  const char *in;
  size_t in_len;
  enum dest out, err;
  const char *out_path, *err_path;
  int out_fd, err_fd; /* D_FILE: a ct.fs.File's descriptor */
  double timeout; /* 0: none */
  int mode;       /* CT_START_*: opts.detach, opts.foreground */
};

static void check_opts(lua_State *L, struct opts *o, int spawn) {
  memset(o, 0, sizeof *o);
  lua_settop(L, 2);
  o->argv = check_argv(L, 1);
  int opts = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    opts = 2;
  }
  o->envp = build_env(L, opts);
  if (opts) {
    int t = lua_getfield(L, opts, "cwd");
    if (t != LUA_TNIL && t != LUA_TSTRING) luaL_error(L, "bad option 'cwd' (a string expected)");
    o->cwd = lua_tostring(L, -1);
    lua_pop(L, 1);
    t = lua_getfield(L, opts, "stdin");
    if (t != LUA_TNIL && t != LUA_TSTRING) luaL_error(L, "bad option 'stdin' (a string expected)");
    o->in = lua_tolstring(L, -1, &o->in_len);
    lua_pop(L, 1);
    t = lua_getfield(L, opts, "timeout");
    if (t != LUA_TNIL) {
      if (spawn) luaL_error(L, "bad option 'timeout' (spawn takes none: use p:wait(timeout))");
      int isnum;
      double v = (double)lua_tonumberx(L, -1, &isnum);
      if (!isnum || !(v > 0) || !isfinite(v))
        luaL_error(L, "bad option 'timeout' (a positive number of seconds expected)");
      o->timeout = v;
    }
    lua_pop(L, 1);
    o->mode = CT_START_GROUP;
    lua_getfield(L, opts, "detach");
    if (lua_toboolean(L, -1)) o->mode = CT_START_DETACH;
    lua_getfield(L, opts, "foreground");
    if (lua_toboolean(L, -1)) o->mode = o->mode == CT_START_DETACH ? -1 : CT_START_FOREGROUND;
    lua_pop(L, 2);
    if (o->mode < 0) luaL_error(L, "bad option 'foreground' (a detached child cannot be)");
  } else {
    o->mode = CT_START_GROUP;
  }
  if (o->mode == CT_START_FOREGROUND) {
    /* Ours: the terminal (or whatever our stdio is) is the child's. */
    if (o->in) luaL_error(L, "bad option 'stdin' (a foreground child reads ours)");
    o->out = check_dest(L, opts, "stdout", D_INHERIT, &o->out_path, &o->out_fd);
    o->err = check_dest(L, opts, "stderr", D_INHERIT, &o->err_path, &o->err_fd);
    return;
  }
  o->out = check_dest(L, opts, "stdout", spawn ? D_INHERIT : D_CAPTURE, &o->out_path, &o->out_fd);
  o->err = check_dest(L, opts, "stderr", spawn ? D_INHERIT : D_CAPTURE, &o->err_path, &o->err_fd);
  if (spawn && (o->out == D_CAPTURE || o->err == D_CAPTURE))
    luaL_error(L, "bad option (spawn cannot capture: use \"inherit\", \"null\" or {append=path})");
}

/* Opens the child's side of one stream; *mine gets the parent's end of a pipe. */
static int open_dest(enum dest d, const char *path, int filefd, int *child, int *mine) {
  int p[2];
  switch (d) {
  case D_CAPTURE:
    if (pipe2(p, O_CLOEXEC) != 0) return -1;
    *mine = p[0];
    *child = p[1];
    return 0;
  case D_INHERIT:
    return 0;
  case D_NULL:
    *child = open("/dev/null", O_WRONLY | O_CLOEXEC);
    return *child < 0 ? -1 : 0;
  case D_APPEND:
    *child = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    return *child < 0 ? -1 : 0;
  case D_FILE:
    *child = fcntl(filefd, F_DUPFD_CLOEXEC, 3);
    return *child < 0 ? -1 : 0;
  case D_STDOUT:
    return 0;
  }
  return 0;
}

/* fds slots in struct proc */
enum { F_IN_CHILD, F_OUT_CHILD, F_ERR_CHILD, F_IN, F_OUT, F_ERR };

/* Opens every stream and starts the child; on failure pushes nil, msg, errno
   and returns 3, else 0. p->fds hold the parent's pipe ends afterwards. */
static int start_with_opts(lua_State *L, struct proc *p, const struct opts *o, int spawn) {
  const char *what = NULL;
  int err = 0;
  int *fd = p->fds;
  /* stdin */
  if (o->in && spawn) {
    /* spawn cannot feed a pipe while the caller runs: a sealed-size memfd holds it */
    fd[F_IN_CHILD] = memfd_create("ct-stdin", MFD_CLOEXEC);
    if (fd[F_IN_CHILD] < 0) return ct_oserror(L, errno, "memfd_create");
    size_t off = 0;
    while (off < o->in_len) {
      ssize_t n = write(fd[F_IN_CHILD], o->in + off, o->in_len - off);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ct_oserror(L, errno, "memfd write");
      off += (size_t)n;
    }
    lseek(fd[F_IN_CHILD], 0, SEEK_SET);
  } else if (o->in) {
    int pp[2];
    if (pipe2(pp, O_CLOEXEC) != 0) return ct_oserror(L, errno, "pipe");
    fd[F_IN_CHILD] = pp[0];
    fd[F_IN] = pp[1];
  } else if (o->mode != CT_START_FOREGROUND) {
    fd[F_IN_CHILD] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd[F_IN_CHILD] < 0) return ct_oserror(L, errno, "/dev/null");
  }
  if (open_dest(o->out, o->out_path, o->out_fd, &fd[F_OUT_CHILD], &fd[F_OUT]) != 0)
    return ct_oserror(L, errno, o->out_path ? o->out_path : "stdout");
  if (open_dest(o->err, o->err_path, o->err_fd, &fd[F_ERR_CHILD], &fd[F_ERR]) != 0)
    return ct_oserror(L, errno, o->err_path ? o->err_path : "stderr");
  int cfds[3] = {fd[F_IN_CHILD], fd[F_OUT_CHILD], fd[F_ERR_CHILD]};
  if (o->err == D_STDOUT) cfds[2] = o->out == D_INHERIT ? 1 : fd[F_OUT_CHILD];
  pid_t pid = ct_proc_start(o->argv, o->envp, o->cwd, cfds, o->mode, &err, &what);
  ct_close_fd(&fd[F_IN_CHILD]);
  ct_close_fd(&fd[F_OUT_CHILD]);
  ct_close_fd(&fd[F_ERR_CHILD]);
  if (pid < 0) return ct_oserror(L, err, what);
  p->pid = pid;
  p->group = o->mode == CT_START_DETACH || (o->mode == CT_START_GROUP && !ct_in_sandbox_child);
  p->pidfd = ct_pidfd_open(pid);
  return 0;
}

/* ---------- run ---------- */

static int read_into(int *fd, struct buf *b) {
  for (;;) {
    if (ct_buf_grow(b, 65536) != 0) return -1;
    ssize_t n = read(*fd, b->p + b->len, b->cap - b->len);
    if (n > 0) {
      b->len += (size_t)n;
      continue;
    }
    if (n == 0) {
      ct_close_fd(fd);
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return 0;
    ct_close_fd(fd);
    return 0;
  }
}

/* The I/O loop: feeds stdin, drains stdout/stderr, watches the child and the
   deadline. Returns 0, or an errno (out of memory). */
static int run_loop(struct proc *p, const char *in, size_t in_len, double deadline,
                    int *timed_out) {
  int *fd = p->fds;
  size_t in_off = 0;
  int exited = 0, got_epipe = 0;
  for (int i = F_IN; i <= F_ERR; i++)
    if (fd[i] >= 0) ct_set_nonblock(fd[i]);
  if (fd[F_IN] >= 0 && in_len == 0) ct_close_fd(&fd[F_IN]);
  /* A child that stops reading must not kill us with SIGPIPE. */
  sigset_t pipeset, old, pend;
  sigemptyset(&pipeset);
  sigaddset(&pipeset, SIGPIPE);
  sigpending(&pend);
  int was_pending = sigismember(&pend, SIGPIPE);
  sigprocmask(SIG_BLOCK, &pipeset, &old);
  int rc = 0;
  for (;;) {
    if (!exited && p->pidfd < 0) exited = ct_has_exited(p->pid);
    if (exited) ct_close_fd(&fd[F_IN]);
    if (exited && fd[F_OUT] < 0 && fd[F_ERR] < 0) break;
    struct pollfd pf[4];
    int n = 0, iin = -1, iout = -1, ierr = -1, ipid = -1;
    if (fd[F_IN] >= 0) pf[iin = n++] = (struct pollfd){fd[F_IN], POLLOUT, 0};
    if (fd[F_OUT] >= 0) pf[iout = n++] = (struct pollfd){fd[F_OUT], POLLIN, 0};
    if (fd[F_ERR] >= 0) pf[ierr = n++] = (struct pollfd){fd[F_ERR], POLLIN, 0};
    if (!exited && p->pidfd >= 0) pf[ipid = n++] = (struct pollfd){p->pidfd, POLLIN, 0};
    int ms = ct_ms_until(deadline);
    if (ms == 0) {
      if (!exited) *timed_out = 1;
      break;
    }
    /* Without a pidfd, look at the child now and then. */
    if (p->pidfd < 0 && !exited && (ms < 0 || ms > 50)) ms = 50;
    if (poll(pf, (nfds_t)n, ms) < 0) {
      if (errno == EINTR) continue;
      rc = errno;
      break;
    }
    if (ipid >= 0 && pf[ipid].revents) exited = 1;
    if (iin >= 0 && pf[iin].revents) {
      if (pf[iin].revents & (POLLERR | POLLNVAL)) {
        ct_close_fd(&fd[F_IN]);
      } else {
        size_t chunk = in_len - in_off > 65536 ? 65536 : in_len - in_off;
        ssize_t w = write(fd[F_IN], in + in_off, chunk);
        if (w > 0) {
          in_off += (size_t)w;
          if (in_off == in_len) ct_close_fd(&fd[F_IN]);
        } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
          if (errno == EPIPE) got_epipe = 1;
          ct_close_fd(&fd[F_IN]);
        }
      }
    }
    if (iout >= 0 && pf[iout].revents && read_into(&fd[F_OUT], &p->out) != 0) {
      rc = ENOMEM;
      break;
    }
    if (ierr >= 0 && pf[ierr].revents && read_into(&fd[F_ERR], &p->err) != 0) {
      rc = ENOMEM;
      break;
    }
  }
  if (got_epipe && !was_pending) {
    struct timespec zero = {0, 0};
    sigtimedwait(&pipeset, NULL, &zero);
  }
  sigprocmask(SIG_SETMASK, &old, NULL);
  return rc;
}

/* run(argv [, opts]) -> {code=, signal=, stdout=, stderr=, timed_out=} | nil, msg, errno */
static int ct_proc_run(lua_State *L) {
  struct opts o;
  check_opts(L, &o, 0);
  struct proc *p = ct_proc_new(L);
  lua_toclose(L, -1);
  /* A foreground child: like system(), an interrupt at the terminal is its
     business; we wait for it to end. It starts with default dispositions. */
  struct sigaction ign, old_int, old_quit;
  int fg = o.mode == CT_START_FOREGROUND;
  if (fg) {
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGINT, &ign, &old_int);
    sigaction(SIGQUIT, &ign, &old_quit);
  }
  int r = start_with_opts(L, p, &o, 0);
  if (r && fg) {
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGQUIT, &old_quit, NULL);
  }
  if (r) return r;
  double deadline = o.timeout > 0 ? ct_mono() + o.timeout : 0;
  int timed_out = 0;
  int rc = run_loop(p, o.in, o.in_len, deadline, &timed_out);
  /* At a deadline (or on failure) the whole group goes, including any
     grandchild that still holds our pipes. */
  if (rc || timed_out || (deadline > 0 && ct_ms_until(deadline) == 0)) ct_proc_kill(p, SIGKILL);
  for (int i = 0; i < 6; i++) ct_close_fd(&p->fds[i]);
  ct_close_fd(&p->pidfd);
  int werr = ct_reap(p->pid, &p->status) != 0 ? errno : 0;
  if (fg) {
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGQUIT, &old_quit, NULL);
  }
  if (werr) return ct_oserror(L, werr, o.argv[0]);
  p->reaped = 1;
  if (rc) return ct_oserror(L, rc, o.argv[0]);
  int code, sig;
  ct_decode_status(p->status, &code, &sig);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, code);
  lua_setfield(L, -2, "code");
  if (sig) {
    lua_pushinteger(L, sig);
    lua_setfield(L, -2, "signal");
  }
  lua_pushlstring(L, p->out.p ? p->out.p : "", p->out.len);
  lua_setfield(L, -2, "stdout");
  lua_pushlstring(L, p->err.p ? p->err.p : "", p->err.len);
  lua_setfield(L, -2, "stderr");
  lua_pushboolean(L, timed_out);
  lua_setfield(L, -2, "timed_out");
  return 1;
}

/* ---------- spawn and the process userdata ---------- */

/* spawn(argv [, opts]) -> process | nil, msg, errno */
static int p_spawn(lua_State *L) {
  struct opts o;
  check_opts(L, &o, 1);
  struct proc *p = ct_proc_new(L);
  int r = start_with_opts(L, p, &o, 1);
  if (r) {
    ct_proc_release(p);
    return r;
  }
  return 1;
}

static struct proc *check_proc(lua_State *L) { return luaL_checkudata(L, 1, PROCESS_MT); }

static int pr_pid(lua_State *L) {
  struct proc *p = check_proc(L);
  lua_pushinteger(L, p->pid);
  return 1;
}

static int push_code(lua_State *L, int status) {
  int code, sig;
  ct_decode_status(status, &code, &sig);
  lua_pushinteger(L, code);
  if (sig)
    lua_pushinteger(L, sig);
  else
    lua_pushnil(L);
  return 2;
}

/* p:wait([timeout]) -> code, signal | nil, "timeout" */
static int pr_wait(lua_State *L) {
  struct proc *p = check_proc(L);
  double timeout = luaL_optnumber(L, 2, -1);
  if (!lua_isnoneornil(L, 2))
    luaL_argcheck(L, timeout >= 0 && isfinite(timeout), 2, "a non-negative number expected");
  if (p->pid <= 0) return luaL_error(L, "process was never started");
  if (p->reaped) return push_code(L, p->status);
  if (timeout >= 0) {
    double deadline = ct_mono() + timeout;
    while (!ct_has_exited(p->pid)) {
      int ms = ct_ms_until(deadline);
      if (ms == 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "timeout");
        return 2;
      }
      if (p->pidfd >= 0) {
        struct pollfd pf = {p->pidfd, POLLIN, 0};
        poll(&pf, 1, ms);
      } else {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
      }
    }
  }
  if (ct_reap(p->pid, &p->status) != 0) return ct_oserror(L, errno, "waitpid");
  p->reaped = 1;
  ct_close_fd(&p->pidfd);
  return push_code(L, p->status);
}

static int check_signal(lua_State *L, int idx, int dflt);

/* p:kill([sig=TERM]) -> true | nil, msg, errno */
static int pr_kill(lua_State *L) {
  struct proc *p = check_proc(L);
  int sig = check_signal(L, 2, SIGTERM);
  if (p->pid <= 0 || p->reaped) return ct_error(L, ESRCH, "process %d has exited", (int)p->pid);
  if (kill(p->group ? -p->pid : p->pid, sig) != 0) return ct_oserror(L, errno, "kill");
  return ct_true(L);
}

/* p:close() / __gc / __close: kills (the group) and reaps a live child. */
static int pr_close(lua_State *L) {
  struct proc *p = check_proc(L);
  ct_proc_release(p);
  return 0;
}

static const luaL_Reg process_methods[] = {
    {"pid", pr_pid}, {"wait", pr_wait}, {"kill", pr_kill}, {"close", pr_close}, {NULL, NULL},
};

/* ---------- signals, kill, alive, getpid, exec ---------- */

static const struct {
  const char *name;
  int sig;
} signal_names[] = {
    {"HUP", SIGHUP},       {"INT", SIGINT},   {"QUIT", SIGQUIT},   {"ILL", SIGILL},
    {"TRAP", SIGTRAP},     {"ABRT", SIGABRT}, {"BUS", SIGBUS},     {"FPE", SIGFPE},
    {"KILL", SIGKILL},     {"USR1", SIGUSR1}, {"SEGV", SIGSEGV},   {"USR2", SIGUSR2},
    {"PIPE", SIGPIPE},     {"ALRM", SIGALRM}, {"TERM", SIGTERM},   {"CHLD", SIGCHLD},
    {"CONT", SIGCONT},     {"STOP", SIGSTOP}, {"TSTP", SIGTSTP},   {"TTIN", SIGTTIN},
    {"TTOU", SIGTTOU},     {"URG", SIGURG},   {"XCPU", SIGXCPU},   {"XFSZ", SIGXFSZ},
    {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO},
    {"PWR", SIGPWR},       {"SYS", SIGSYS},
};

/* A signal number, or a name ("TERM" or "SIGTERM"). */
static int check_signal(lua_State *L, int idx, int dflt) {
  if (lua_isnoneornil(L, idx)) return dflt;
  if (lua_type(L, idx) == LUA_TSTRING) {
    const char *s = lua_tostring(L, idx);
    if (strncmp(s, "SIG", 3) == 0) s += 3;
    for (size_t i = 0; i < sizeof signal_names / sizeof signal_names[0]; i++)
      if (strcmp(s, signal_names[i].name) == 0) return signal_names[i].sig;
    return luaL_argerror(L, idx, lua_pushfstring(L, "unknown signal '%s'", lua_tostring(L, idx)));
  }
  lua_Integer sig = luaL_checkinteger(L, idx);
  luaL_argcheck(L, sig >= 0 && sig < NSIG, idx, "not a signal number");
  return (int)sig;
}

static pid_t check_pid(lua_State *L, int idx) {
  lua_Integer pid = luaL_checkinteger(L, idx);
  /* 0 and negatives mean groups or everything to kill(2): never by accident. */
  luaL_argcheck(L, pid > 0 && pid <= INT_MAX, idx, "a positive pid expected");
  return (pid_t)pid;
}

/* kill(pid, sig [, group]) -> true | nil, msg, errno */
static int p_kill(lua_State *L) {
  pid_t pid = check_pid(L, 1);
  int sig = check_signal(L, 2, SIGTERM);
  int group = lua_toboolean(L, 3);
  if (kill(group ? -pid : pid, sig) != 0)
    return ct_error(L, errno, "kill %d: %s", (int)pid, strerror(errno));
  return ct_true(L);
}

/* alive(pid) -> boolean; a zombie is not alive. */
static int p_alive(lua_State *L) {
  pid_t pid = check_pid(L, 1);
  int alive = kill(pid, 0) == 0 || errno == EPERM;
  if (alive) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t n = read(fd, buf, sizeof buf - 1);
      close(fd);
      if (n > 0) {
        buf[n] = 0;
        const char *rp = strrchr(buf, ')');
        if (rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X')) alive = 0;
      }
    }
  }
  lua_pushboolean(L, alive);
  return 1;
}

static int p_getpid(lua_State *L) {
  lua_pushinteger(L, getpid());
  return 1;
}

/* getuid() -> uid, name (nil when the password database has no entry) */
static int p_getuid(lua_State *L) {
  uid_t uid = getuid();
  lua_pushinteger(L, (lua_Integer)uid);
  struct passwd pw, *res = NULL;
  char buf[4096];
  if (getpwuid_r(uid, &pw, buf, sizeof buf, &res) == 0 && res && res->pw_name)
    lua_pushstring(L, res->pw_name);
  else
    lua_pushnil(L);
  return 2;
}

/* ---------- the module ---------- */

static const luaL_Reg proc_funcs[] = {
    {"run", ct_proc_run},       {"spawn", p_spawn},   {"kill", p_kill},
    {"alive", p_alive},         {"getpid", p_getpid}, {"getuid", p_getuid},
    {"signals", NULL},          {NULL, NULL},
};

int luaopen_ct_proc(lua_State *L) {
  ct_class(L, PROCESS_MT, process_methods, pr_close, NULL);
  luaL_newlib(L, proc_funcs);
  lua_createtable(L, 0, (int)(sizeof signal_names / sizeof signal_names[0]));
  for (size_t i = 0; i < sizeof signal_names / sizeof signal_names[0]; i++) {
    lua_pushinteger(L, signal_names[i].sig);
    lua_setfield(L, -2, signal_names[i].name);
  }
  lua_setfield(L, -2, "signals");
  luaopen_ct_proc_sandbox(L);
  return 1;
}
