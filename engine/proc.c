/* ct.proc: running programs (argv only, never a shell), process groups and signals (starting one is spawn.c, fork_call sandbox.c). */
#include "int.h"

#include <errno.h>
#include <math.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
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

/* opts.env_add -> envp (NULL: ours): env_add's variables, then ours that
   it does not set, in a userdatum pushed on the stack (anchoring them). */
static char **build_env(lua_State *L, int opts) {
  if (!opts || lua_getfield(L, opts, "env_add") == LUA_TNIL) {
    if (opts) lua_pop(L, 1);
    lua_pushnil(L);
    return NULL;
  }
  int add = lua_gettop(L);
  if (!lua_istable(L, add)) luaL_error(L, "bad option 'env_add' (a table expected)");
  size_t n = 0, i = 0;
  for (char **e = environ; *e; e++) n++;
  lua_pushnil(L);
  while (lua_next(L, add)) {
    lua_pop(L, 1);
    n++;
  }
  char **envp = lua_newuserdatauv(L, sizeof(char *) * (n + 1), 1);
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, add)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    if (!k || !lua_isstring(L, -1) || !*k || strchr(k, '='))
      luaL_error(L, "bad option 'env_add' (names without '=' to string values)");
    envp[i] = (char *)lua_pushfstring(L, "%s=%s", k, lua_tostring(L, -1));
    lua_rawseti(L, add + 2, (lua_Integer)++i);
    lua_pop(L, 1);
  }
  for (char **e = environ; *e; e++) {
    const char *eq = strchr(*e, '=');
    lua_pushlstring(L, *e, eq ? (size_t)(eq - *e) : strlen(*e));
    if (lua_rawget(L, add) == LUA_TNIL) envp[i++] = *e;
    lua_pop(L, 1);
  }
  envp[i] = NULL;
  lua_setiuservalue(L, add + 1, 1);
  lua_replace(L, add);
  return envp;
}

/* Where a child's stdout or stderr goes. */
enum dest { D_CAPTURE, D_INHERIT, D_NULL, D_STDOUT, D_FILE };

static enum dest check_dest(lua_State *L, int opts, const char *name, enum dest dflt, int *filefd) {
  static const char *const names[] = {"capture", "inherit", "null", "stdout", NULL};
  *filefd = -1;
  int t = opts ? lua_getfield(L, opts, name) : LUA_TNIL;
  enum dest d = dflt;
  if (t == LUA_TSTRING) {
    d = (enum dest)luaL_checkoption(L, -1, NULL, names);
    if (d == D_STDOUT && strcmp(name, "stderr") != 0)
      luaL_error(L, "bad option '%s' (unknown value 'stdout')", name);
  } else if (t == LUA_TUSERDATA && (*filefd = ct_testfile(L, -1)) >= 0) {
    d = D_FILE; /* a ct.fs.File, which opts keeps alive */
  } else if (t != LUA_TNIL) {
    luaL_error(L, "bad option '%s' (a string or a ct.fs.File expected)", name);
  }
  if (opts) lua_pop(L, 1);
  return d;
}

struct opts {
  const char **argv;
  char **envp;
  const char *cwd;
  const char *in;
  size_t in_len;
  enum dest out, err;
  int out_fd, err_fd; /* D_FILE: a ct.fs.File's descriptor */
  double timeout;     /* 0: none */
  int mode;           /* CT_START_GROUP, or CT_START_FOREGROUND (opts.foreground) */
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
  o->mode = CT_START_GROUP;
  if (opts) {
    o->cwd = opt_string(L, opts, "cwd", NULL); /* anchored in opts */
    if (opt_bool(L, opts, "foreground")) o->mode = CT_START_FOREGROUND;
    int t = lua_getfield(L, opts, "stdin");
    if (t != LUA_TNIL && (t != LUA_TSTRING || spawn))
      luaL_error(L, "bad option 'stdin' (%s)", spawn ? "spawn takes none" : "a string expected");
    o->in = lua_tolstring(L, -1, &o->in_len);
    t = lua_getfield(L, opts, "timeout");
    if (t != LUA_TNIL) {
      if (spawn) luaL_error(L, "bad option 'timeout' (spawn takes none: use p:wait(timeout))");
      int isnum;
      double v = (double)lua_tonumberx(L, -1, &isnum);
      if (!isnum || !(v > 0) || !isfinite(v))
        luaL_error(L, "bad option 'timeout' (a positive number of seconds expected)");
      o->timeout = v;
    }
    lua_pop(L, 2); /* stdin stays anchored in opts */
  }
  /* A foreground child has ours: the terminal (or whatever our stdio is). */
  int fg = o->mode == CT_START_FOREGROUND;
  if (fg && o->in) luaL_error(L, "bad option 'stdin' (a foreground child reads ours)");
  enum dest dflt = spawn || fg ? D_INHERIT : D_CAPTURE;
  o->out = check_dest(L, opts, "stdout", dflt, &o->out_fd);
  o->err = check_dest(L, opts, "stderr", dflt, &o->err_fd);
  if (spawn && (o->out == D_CAPTURE || o->err == D_CAPTURE))
    luaL_error(L, "bad option (spawn cannot capture: use \"inherit\", \"null\" or a ct.fs.File)");
}

/* Opens the child's side of one stream; *mine gets the parent's end of a pipe. */
static int open_dest(enum dest d, int filefd, int *child, int *mine) {
  int p[2];
  if (d == D_CAPTURE) {
    if (pipe2(p, O_CLOEXEC) != 0) return -1;
    *mine = p[0];
    *child = p[1];
    return 0;
  }
  if (d == D_NULL)
    *child = open("/dev/null", O_WRONLY | O_CLOEXEC);
  else if (d == D_FILE)
    *child = fcntl(filefd, F_DUPFD_CLOEXEC, 3);
  else
    return 0;
  return *child < 0 ? -1 : 0;
}

/* Opens every stream and starts the child; on failure pushes nil, msg, errno
   and returns 3, else 0. p->fds hold the parent's pipe ends afterwards. */
static int start_with_opts(lua_State *L, struct proc *p, const struct opts *o) {
  const char *what = NULL;
  int err = 0, cfds[3] = {-1, -1, -1}, *fd = p->fds, r = 0;
  if (o->in) {
    int pp[2];
    if (pipe2(pp, O_CLOEXEC) != 0) return ct_oserror(L, errno, "pipe");
    cfds[0] = pp[0];
    fd[CT_FD_IN] = pp[1];
  } else if (o->mode != CT_START_FOREGROUND && (cfds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
    return ct_oserror(L, errno, "/dev/null");
  }
  if (open_dest(o->out, o->out_fd, &cfds[1], &fd[CT_FD_OUT]) != 0)
    r = ct_oserror(L, errno, "stdout");
  else if (open_dest(o->err, o->err_fd, &cfds[2], &fd[CT_FD_ERR]) != 0)
    r = ct_oserror(L, errno, "stderr");
  if (!r) {
    if (o->err == D_STDOUT) cfds[2] = o->out == D_INHERIT ? 1 : cfds[1];
    pid_t pid = ct_proc_start(o->argv, o->envp, o->cwd, cfds, 3, o->mode, &err, &what);
    if (pid < 0) r = ct_oserror(L, err, what);
    else ct_proc_started(p, pid, o->mode == CT_START_GROUP && !ct_in_sandbox_child);
  }
  for (int i = 0; i < 3; i++)
    if (o->err != D_STDOUT || i != 2) ct_close_fd(&cfds[i]);
  return r;
}

/* ---------- run ---------- */

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
  int r = start_with_opts(L, p, &o), timed_out = 0, rc = 0, werr = 0;
  if (!r) {
    double deadline = o.timeout > 0 ? ct_mono() + o.timeout : 0;
    rc = ct_proc_wait(p, o.in, o.in_len, deadline, 0, &timed_out);
    /* At a deadline (or on failure) the whole group goes, including any
       grandchild that still holds our pipes. */
    if (rc || timed_out || (deadline > 0 && ct_mono() >= deadline)) ct_proc_kill(p, SIGKILL);
    for (int i = 0; i < 3; i++) ct_close_fd(&p->fds[i]);
    ct_close_fd(&p->pidfd);
    werr = ct_reap(p->pid, &p->status) != 0 ? errno : 0;
  }
  if (fg) {
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGQUIT, &old_quit, NULL);
  }
  if (r) return r;
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
  int r = start_with_opts(L, p, &o);
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
  int timed_out = 0;
  if (timeout >= 0 && ct_proc_wait(p, NULL, 0, ct_mono() + timeout, 1, &timed_out) == 0 && timed_out) {
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    return 2;
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
  if (ct_proc_kill(p, sig) != 0) return ct_error(L, errno, "kill %d: %s", (int)p->pid, strerror(errno));
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

/* The signals ctcli sends by name (kill and p:kill take any number). */
static const struct {
  const char *name;
  int sig;
} signal_names[] = {{"KILL", SIGKILL}, {"TERM", SIGTERM}};

/* A signal number (ct.proc.signals names them). */
static int check_signal(lua_State *L, int idx, int dflt) {
  lua_Integer sig = luaL_optinteger(L, idx, dflt);
  luaL_argcheck(L, sig >= 0 && sig < NSIG, idx, "not a signal number");
  return (int)sig;
}

static pid_t check_pid(lua_State *L, int idx) {
  lua_Integer pid = luaL_checkinteger(L, idx);
  /* 0 and negatives mean groups or everything to kill(2): never by accident. */
  luaL_argcheck(L, pid > 0 && pid <= INT_MAX, idx, "a positive pid expected");
  return (pid_t)pid;
}

/* kill(pid, sig) -> true | nil, msg, errno */
static int p_kill(lua_State *L) {
  pid_t pid = check_pid(L, 1);
  int sig = check_signal(L, 2, SIGTERM);
  if (kill(pid, sig) != 0)
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
