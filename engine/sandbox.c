/* ct.proc.fork_call and cgroup_kill: a Lua function run in a forked copy of the state under a deadline, and the cgroups that hold what it starts. */
#include "int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RECORD_MAX (16u << 20) /* one fork_call record (a line or the result) */

/* ---------- cgroups: every process a fork_call child started ----------

   A process group does not hold a process that calls setsid(); a cgroup
   holds every descendant, whatever it does, until it is killed. The caller
   names the cgroup (a directory to create in a mounted hierarchy); what it
   can do is read from the files the kernel gives that directory:
   cgroup.kill (v2, Linux >= 5.14), else freezing (v1 freezer.state, v2
   cgroup.freeze) so nothing forks while the listed processes are killed,
   else killing the listed processes until none is left. */

static int cg_write(int dfd, const char *name, const char *text) {
  int fd = openat(dfd, name, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t len = strlen(text);
  ssize_t n;
  do n = write(fd, text, len);
  while (n < 0 && errno == EINTR);
  int err = errno;
  close(fd);
  errno = err;
  return n == (ssize_t)len ? 0 : -1;
}

/* Whether the file name of dfd starts with prefix. */
static int cg_reads(int dfd, const char *name, const char *prefix) {
  char buf[256];
  int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  return strstr(buf, prefix) != NULL;
}

/* Sends sig to every process in cgroup.procs (if sig) -> how many are listed, -1 on error. */
static int cg_signal_listed(int dfd, int sig) {
  int fd = openat(dfd, "cgroup.procs", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  FILE *f = fdopen(fd, "r");
  if (!f) {
    close(fd);
    return -1;
  }
  int count = 0, pid;
  while (fscanf(f, "%d", &pid) == 1) {
    if (pid <= 0) continue;
    count++;
    if (sig) kill(pid, sig);
  }
  fclose(f);
  return count;
}

static void nap_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

/* One round: every process in the cgroup gets SIGKILL. */
static void cg_kill_round(int dfd, double deadline) {
  static const struct { const char *file, *freeze, *thaw, *events, *frozen; } ways[] = {
      {"freezer.state", "FROZEN", "THAWED", "freezer.state", "FROZEN"}, /* v1 */
      {"cgroup.freeze", "1", "0", "cgroup.events", "frozen 1"},        /* v2 */
  };
  if (cg_write(dfd, "cgroup.kill", "1") == 0) return;
  int w = 0;
  while (w < 2 && cg_write(dfd, ways[w].file, ways[w].freeze) != 0) w++;
  /* Freezing takes a moment (a task in an uninterruptible sleep longer);
     kill anyway after a second: the next round catches what forked. */
  double until = ct_mono() + 1.0;
  if (until > deadline) until = deadline;
  while (w < 2 && !cg_reads(dfd, ways[w].events, ways[w].frozen) && ct_mono() < until) nap_ms(2);
  cg_signal_listed(dfd, SIGKILL);
  /* A frozen process dies of its SIGKILL once thawed. */
  if (w < 2) cg_write(dfd, ways[w].file, ways[w].thaw);
}

/* ct_cg_destroy(path, seconds) -> 0 | errno: kills every process in the cgroup
   at path, waits until it is empty and removes it. A missing one is done. */
int ct_cg_destroy(const char *path, double seconds) {
  int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return errno == ENOENT ? 0 : errno;
  double deadline = ct_mono() + seconds;
  int err = 0;
  for (;;) {
    int n = cg_signal_listed(dfd, 0);
    if (n < 0) {
      err = errno;
      break;
    }
    if (n == 0) break;
    if (ct_mono() >= deadline) {
      err = EBUSY;
      break;
    }
    cg_kill_round(dfd, deadline);
    nap_ms(5);
  }
  close(dfd);
  if (err) return err;
  /* The last task leaves a moment after it is gone from cgroup.procs. */
  while (rmdir(path) != 0) {
    if (errno == ENOENT) return 0;
    if (errno != EBUSY || ct_mono() >= deadline) return errno;
    nap_ms(5);
  }
  return 0;
}

/* See int.h. */
const char *ct_cg_join(const char *path) {
  if (mkdir(path, 0755) != 0 && errno != EEXIST) return "create cgroup";
  int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return "open cgroup";
  int rc = cg_write(dfd, "cgroup.procs", "0");
  close_keep_errno(dfd);
  return rc == 0 ? NULL : "join cgroup";
}

/* cgroup_kill(path) -> true | nil, msg, errno: kills every process in the
   cgroup at path and removes it (waiting at most 10 s for them to go). */
static int p_cgroup_kill(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int err = ct_cg_destroy(path, 10);
  if (err == EBUSY) return ct_error(L, err, "cgroup %s: processes still in it after 10s", path);
  if (err) return ct_error(L, err, "cgroup %s: %s", path, strerror(err));
  return ct_true(L);
}

/* ---------- fork_call ----------

   The child sends records on a pipe: a type byte, a 32-bit length, the
   bytes. Lines (emit), then one result or error; a cgroup it could not
   join is a note. */

enum { R_LINE = 'L', R_RESULT = 'S', R_ERROR = 'E', R_NOTE = 'C' };

static int write_record(int fd, char type, const char *data, size_t len) {
  unsigned char hdr[5];
  uint32_t n = (uint32_t)(len > RECORD_MAX ? RECORD_MAX : len);
  hdr[0] = (unsigned char)type;
  memcpy(hdr + 1, &n, 4);
  if (write_all(fd, hdr, 5) != 0) return -1;
  return n ? write_all(fd, data, n) : 0;
}

/* emit(str) in the child: one record to the parent. */
static int fc_emit(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  luaL_argcheck(L, len <= RECORD_MAX, 1, "line too long");
  int fd = (int)lua_tointeger(L, lua_upvalueindex(1));
  if (write_record(fd, R_LINE, s, len) != 0) _exit(1); /* the parent is gone */
  return 0;
}

/* The forked child: makes and joins the cgroup (before it runs anything,
   so all it starts is there), runs fn(emit), sends its result; never returns. */
static void fc_child(lua_State *L, int fd, const char *cgroup, const sigset_t *oldmask) {
  pid_t parent = getppid();
  int nested = ct_in_sandbox_child;
  ct_in_sandbox_child = 1;
  if (!nested) setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(1);
  const char *failed = cgroup ? ct_cg_join(cgroup) : NULL;
  if (failed) {
    const char *msg = lua_pushfstring(L, "cannot %s %s: %s", failed, cgroup, strerror(errno));
    write_record(fd, R_NOTE, msg, strlen(msg));
  }
  sigprocmask(SIG_SETMASK, oldmask, NULL);
  /* The child never reads the terminal (it is in a background group). */
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null >= 0) {
    dup2(null, 0);
    close(null);
  }
  lua_pushvalue(L, 1);
  lua_pushinteger(L, fd);
  lua_pushcclosure(L, fc_emit, 1);
  int st = lua_pcall(L, 1, 1, 0);
  char type = st == LUA_OK ? R_RESULT : R_ERROR;
  if (st == LUA_OK && !lua_isstring(L, -1)) {
    type = R_ERROR;
    lua_pushfstring(L, "fork_call: cannot return a %s (return a string or a number)", luaL_typename(L, -1));
  } else if (st == LUA_OK && lua_rawlen(L, -1) > RECORD_MAX) {
    type = R_ERROR;
    lua_pushliteral(L, "fork_call: the result is too long");
  } else if (st != LUA_OK && !lua_isstring(L, -1)) {
    const char *tn = luaL_typename(L, -1);
    if (!luaL_callmeta(L, -1, "__tostring") || lua_type(L, -1) != LUA_TSTRING)
      lua_pushfstring(L, "(error object is a %s value)", tn);
  }
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  int rc = write_record(fd, type, s, len);
  fflush(stdout);
  fflush(stderr);
  _exit(rc == 0 ? 0 : 1);
}

/* Reads the records in b: lines into the table at lines, the result or
   error (its type in *final) into the slot result, a note into the slot
   note. -1 on a malformed stream. */
static int fc_parse(lua_State *L, const struct buf *b, int lines, int result, int note, int *final) {
  for (size_t off = 0; off < b->len;) {
    uint32_t n;
    if (b->len - off < 5) break; /* the rest of a child killed while it wrote */
    memcpy(&n, b->p + off + 1, 4);
    char type = b->p[off];
    if (n > RECORD_MAX || *final) return -1;
    if (b->len - off - 5 < n) break;
    lua_pushlstring(L, b->p + off + 5, n);
    if (type == R_LINE) {
      lua_rawseti(L, lines, (lua_Integer)luaL_len(L, lines) + 1);
    } else if (type == R_NOTE) {
      lua_replace(L, note);
    } else if (type == R_RESULT || type == R_ERROR) {
      lua_replace(L, result);
      *final = type;
    } else {
      return -1;
    }
    off += 5 + n;
  }
  return 0;
}

/* fork_call(fn, timeout [, opts]) -> true, lines, result [, note]
   | false, lines, message [, note], kind. opts.cgroup: a cgroup directory to
   create for the child (its parent must exist); every process in it is
   killed when the call ends and the cgroup removed. When it cannot be made
   the call runs without it and note says why. */
static int p_fork_call(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  double timeout = luaL_checknumber(L, 2);
  luaL_argcheck(L, timeout > 0 && isfinite(timeout), 2, "a positive number of seconds expected");
  const char *cgroup = NULL;
  lua_settop(L, 3);
  if (!lua_isnil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "cgroup");
    luaL_argcheck(L, lua_isnil(L, -1) || lua_type(L, -1) == LUA_TSTRING, 3, "cgroup: a path expected");
    cgroup = lua_tostring(L, -1);
  }
  lua_settop(L, 3);
  struct proc *p = ct_proc_new(L); /* 4: the guard kills and reaps on any error */
  lua_toclose(L, 4);
  lua_pushnil(L); /* 5: the note: why there is no cgroup */
  lua_newtable(L); /* 6: lines */
  lua_pushnil(L); /* 7: result */
  if (cgroup && !(p->cgroup = strdup(cgroup))) return luaL_error(L, "not enough memory");
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) != 0) return ct_oserror(L, errno, "pipe");
  fflush(NULL); /* or the child would write our buffered output again */
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, &old);
  pid_t pid = fork();
  if (pid == 0) {
    close(pfd[0]);
    fc_child(L, pfd[1], p->cgroup, &old);
  }
  int fork_err = errno;
  sigprocmask(SIG_SETMASK, &old, NULL);
  close(pfd[1]);
  p->fds[CT_FD_OUT] = pfd[0];
  if (pid < 0) return ct_oserror(L, fork_err, "fork");
  int nested = ct_in_sandbox_child;
  if (!nested) setpgid(pid, pid);
  ct_proc_started(p, pid, !nested);
  int timed_out = 0, final = 0;
  if (ct_proc_wait(p, NULL, 0, ct_mono() + timeout, 1, &timed_out) != 0) return luaL_error(L, "not enough memory");
  /* Whatever it left running in its group, or anywhere in its cgroup, goes with it. */
  ct_proc_kill(p, SIGKILL);
  ct_close_fd(&p->fds[CT_FD_OUT]);
  ct_close_fd(&p->pidfd);
  if (ct_reap(pid, &p->status) == 0) p->reaped = 1;
  int bad = fc_parse(L, &p->out, 6, 7, 5, &final) != 0;
  if (p->cgroup) {
    int err = ct_cg_destroy(p->cgroup, 10);
    if (err) {
      lua_pushfstring(L, "cannot empty and remove cgroup %s: %s", p->cgroup,
                      err == EBUSY ? "processes still in it after 10s" : strerror(err));
      lua_replace(L, 5);
    }
    free(p->cgroup);
    p->cgroup = NULL;
  }
  lua_pushboolean(L, final == R_RESULT && !bad);
  lua_pushvalue(L, 6);
  if (final == R_RESULT && !bad) {
    lua_pushvalue(L, 7);
    lua_pushvalue(L, 5);
    return 4;
  }
  const char *kind;
  if (timed_out && !(final && !bad)) {
    char secs[64];
    snprintf(secs, sizeof secs, "%.14g", timeout);
    lua_pushfstring(L, "timed out after %ss", secs);
    kind = "timeout";
  } else if (final && !bad) {
    lua_pushvalue(L, 7);
    kind = "error";
  } else if (bad) {
    lua_pushliteral(L, "the child process sent a malformed record");
    kind = "malformed";
  } else if (p->reaped && WIFSIGNALED(p->status)) {
    lua_pushfstring(L, "the child process died (signal %d)", WTERMSIG(p->status));
    kind = "signal";
  } else {
    lua_pushfstring(L, "the child process exited (status %d) without a result",
                    p->reaped && WIFEXITED(p->status) ? WEXITSTATUS(p->status) : -1);
    kind = "exit";
  }
  lua_pushvalue(L, 5);
  lua_pushstring(L, kind);
  return 5;
}

int luaopen_ct_proc_sandbox(lua_State *L) {
  static const luaL_Reg funcs[] = {{"fork_call", p_fork_call}, {"cgroup_kill", p_cgroup_kill}, {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
  return 0;
}
