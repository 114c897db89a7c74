/* ct.proc.fork_call and cgroup_kill: a Lua function run in a forked copy of the state under a deadline, and the cgroups that hold what it starts. */
#include "int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
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
  if (cg_write(dfd, "cgroup.kill", "1") == 0) return;
  int v1 = cg_write(dfd, "freezer.state", "FROZEN") == 0;
  int v2 = !v1 && cg_write(dfd, "cgroup.freeze", "1") == 0;
  /* Freezing takes a moment (a task in an uninterruptible sleep longer);
     kill anyway after a second: the next round catches what forked. */
  double until = ct_mono() + 1.0;
  if (until > deadline) until = deadline;
  while ((v1 && !cg_reads(dfd, "freezer.state", "FROZEN")) ||
         (v2 && !cg_reads(dfd, "cgroup.events", "frozen 1"))) {
    if (ct_mono() >= until) break;
    nap_ms(2);
  }
  cg_signal_listed(dfd, SIGKILL);
  /* A frozen process dies of its SIGKILL once thawed. */
  if (v1) cg_write(dfd, "freezer.state", "THAWED");
  if (v2) cg_write(dfd, "cgroup.freeze", "0");
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

/* cg_create(path, pid) -> 0 | errno (*what names the step): makes the
   cgroup at path and moves pid into it. */
static int cg_create(const char *path, pid_t pid, const char **what) {
  *what = "create";
  if (mkdir(path, 0755) != 0) return errno;
  int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int err = dfd < 0 ? errno : 0;
  if (!err) {
    char num[32];
    snprintf(num, sizeof num, "%d", (int)pid);
    *what = "join";
    if (cg_write(dfd, "cgroup.procs", num) != 0) err = errno;
    close(dfd);
  }
  if (err) rmdir(path);
  return err;
}

/* cgroup_kill(path [, seconds]) -> true | nil, msg, errno: kills every
   process in the cgroup at path and removes it (waiting at most seconds,
   default 10, for them to go). */
static int p_cgroup_kill(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  double secs = luaL_optnumber(L, 2, 10);
  luaL_argcheck(L, secs > 0 && isfinite(secs), 2, "a positive number of seconds expected");
  int err = ct_cg_destroy(path, secs);
  if (err == EBUSY) {
    char num[64];
    snprintf(num, sizeof num, "%.14g", secs);
    return ct_error(L, err, "cgroup %s: processes still in it after %ss", path, num);
  }
  if (err) return ct_error(L, err, "cgroup %s: %s", path, strerror(err));
  return ct_true(L);
}

/* ---------- fork_call ---------- */

enum {
  R_LINE = 'L',
  R_ERROR = 'E',
  R_NIL = 'N',
  R_TRUE = 'T',
  R_FALSE = 'F',
  R_STRING = 'S',
  R_NUMBER = 'D'
};

static int write_record(int fd, char type, const char *data, size_t len) {
  unsigned char hdr[5];
  uint32_t n = (uint32_t)len;
  hdr[0] = (unsigned char)type;
  memcpy(hdr + 1, &n, 4);
  if (write_all(fd, hdr, 5) != 0) return -1;
  return len ? write_all(fd, data, len) : 0;
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

/* The forked child: never returns. With go >= 0 it waits for the parent's
   byte there (sent once it is in its cgroup) before it runs anything. */
static void fc_child(lua_State *L, int fd, int go, const sigset_t *oldmask) {
  pid_t parent = getppid();
  int nested = ct_in_sandbox_child;
  ct_in_sandbox_child = 1;
  if (!nested) setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(1);
  if (go >= 0) {
    char c;
    ssize_t n;
    do n = read(go, &c, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1) _exit(1); /* the parent is gone */
    close(go);
  }
  sigprocmask(SIG_SETMASK, oldmask, NULL);
  /* A hook never reads the terminal (it is in a background group). */
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null >= 0) {
    dup2(null, 0);
    close(null);
  }
  lua_pushvalue(L, 1);
  lua_pushinteger(L, fd);
  lua_pushcclosure(L, fc_emit, 1);
  int st = lua_pcall(L, 1, 1, 0);
  int rc;
  size_t len = 0;
  const char *s;
  if (st != LUA_OK) {
    s = lua_tolstring(L, -1, &len);
    if (!s) {
      const char *tn = luaL_typename(L, -1);
      if (luaL_callmeta(L, -1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
        s = lua_tostring(L, -1);
      else
        s = lua_pushfstring(L, "(error object is a %s value)", tn);
      len = strlen(s);
    }
    rc = write_record(fd, R_ERROR, s, len > RECORD_MAX ? RECORD_MAX : len);
  } else {
    switch (lua_type(L, -1)) {
    case LUA_TNIL:
      rc = write_record(fd, R_NIL, NULL, 0);
      break;
    case LUA_TBOOLEAN:
      rc = write_record(fd, lua_toboolean(L, -1) ? R_TRUE : R_FALSE, NULL, 0);
      break;
    case LUA_TNUMBER:
      s = lua_tolstring(L, -1, &len);
      rc = write_record(fd, R_NUMBER, s, len);
      break;
    case LUA_TSTRING:
      s = lua_tolstring(L, -1, &len);
      if (len > RECORD_MAX) {
        s = "fork_call: the result is too long";
        rc = write_record(fd, R_ERROR, s, strlen(s));
      } else {
        rc = write_record(fd, R_STRING, s, len);
      }
      break;
    default:
      s = lua_pushfstring(L, "fork_call: cannot return a %s (return a string, number or boolean)",
                          luaL_typename(L, -1));
      rc = write_record(fd, R_ERROR, s, strlen(s));
      break;
    }
  }
  fflush(stdout);
  fflush(stderr);
  _exit(rc == 0 ? 0 : 1);
}

/* Parses complete records from p->rec; lines go to the table at `lines`, the
   final record to the stack slot `result` (type in *final). Returns -1 on a
   malformed stream. */
static int fc_parse(lua_State *L, struct proc *p, int lines, int result, int *final) {
  size_t off = 0;
  struct buf *b = &p->rec;
  while (b->len - off >= 5) {
    uint32_t n;
    memcpy(&n, b->p + off + 1, 4);
    if (n > RECORD_MAX || *final) return -1;
    if (b->len - off - 5 < n) break;
    char type = b->p[off];
    const char *data = b->p + off + 5;
    switch (type) {
    case R_LINE:
      lua_pushlstring(L, data, n);
      lua_rawseti(L, lines, (lua_Integer)luaL_len(L, lines) + 1);
      break;
    case R_ERROR:
    case R_STRING:
      lua_pushlstring(L, data, n);
      lua_replace(L, result);
      *final = type;
      break;
    case R_NUMBER:
      lua_pushlstring(L, data, n);
      if (lua_stringtonumber(L, lua_tostring(L, -1)) == 0) lua_pushnil(L);
      lua_replace(L, result);
      lua_pop(L, 1);
      *final = type;
      break;
    case R_NIL:
    case R_TRUE:
    case R_FALSE:
      if (type == R_NIL)
        lua_pushnil(L);
      else
        lua_pushboolean(L, type == R_TRUE);
      lua_replace(L, result);
      *final = type;
      break;
    default:
      return -1;
    }
    off += 5 + n;
  }
  memmove(b->p, b->p + off, b->len - off);
  b->len -= off;
  return 0;
}

/* Releases a child waiting in fc_child. If it is gone (killed from outside)
   the write fails with EPIPE, without a SIGPIPE killing us; the wait for
   its result tells what became of it. */
static void write_go(int fd) {
  sigset_t pipeset, old, pend;
  sigemptyset(&pipeset);
  sigaddset(&pipeset, SIGPIPE);
  sigpending(&pend);
  int was_pending = sigismember(&pend, SIGPIPE);
  sigprocmask(SIG_BLOCK, &pipeset, &old);
  if (write_all(fd, "g", 1) != 0 && errno == EPIPE && !was_pending) {
    struct timespec zero = {0, 0};
    sigtimedwait(&pipeset, NULL, &zero);
  }
  sigprocmask(SIG_SETMASK, &old, NULL);
}

/* fork_call(fn [, timeout [, opts]]) -> true, lines, result [, note]
   | false, lines, message [, note]. opts.cgroup: a cgroup directory to
   create for the child (its parent must exist); every process in it is
   killed when the call ends and the cgroup removed. When it cannot be made
   the call runs without it and note says why. */
static int p_fork_call(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  double timeout = 0;
  if (!lua_isnoneornil(L, 2)) {
    timeout = luaL_checknumber(L, 2);
    luaL_argcheck(L, timeout > 0 && isfinite(timeout), 2, "a positive number of seconds expected");
  }
  const char *cgroup = NULL;
  lua_settop(L, 3);
  if (!lua_isnil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "cgroup"); /* 4 */
    if (!lua_isnil(L, 4)) {
      luaL_argcheck(L, lua_type(L, 4) == LUA_TSTRING, 3, "cgroup: a path expected");
      cgroup = lua_tostring(L, 4);
    }
  }
  lua_settop(L, 4); /* 4: the cgroup path, then the note */
  char *cg_path = cgroup ? strdup(cgroup) : NULL;
  if (cgroup && !cg_path) return luaL_error(L, "not enough memory");
  int pfd[2], gfd[2] = {-1, -1};
  if (pipe2(pfd, O_CLOEXEC) != 0) {
    free(cg_path);
    return ct_oserror(L, errno, "pipe");
  }
  if (cg_path && pipe2(gfd, O_CLOEXEC) != 0) {
    int err = errno;
    close(pfd[0]);
    close(pfd[1]);
    free(cg_path);
    return ct_oserror(L, err, "pipe");
  }
  fflush(NULL); /* or the child would write our buffered output again */
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, &old);
  pid_t pid = fork();
  if (pid == 0) {
    close(pfd[0]);
    if (gfd[1] >= 0) close(gfd[1]);
    fc_child(L, pfd[1], gfd[0], &old);
  }
  int fork_err = errno;
  sigprocmask(SIG_SETMASK, &old, NULL);
  close(pfd[1]);
  ct_close_fd(&gfd[0]);
  if (pid < 0) {
    close(pfd[0]);
    ct_close_fd(&gfd[1]);
    free(cg_path);
    return ct_oserror(L, fork_err, "fork");
  }
  int nested = ct_in_sandbox_child;
  if (!nested) setpgid(pid, pid);
  struct proc *p = ct_proc_new(L); /* 5: the guard kills and reaps on any error */
  p->pid = pid;
  p->group = !nested;
  p->fds[0] = pfd[0];
  p->fds[1] = gfd[1];
  p->pidfd = ct_pidfd_open(pid);
  lua_toclose(L, 5);
  lua_pushnil(L);
  lua_replace(L, 4); /* 4: the note: why there is no cgroup */
  /* Into its cgroup before it runs anything, so all it starts is there. */
  if (cg_path) {
    const char *what;
    int err = cg_create(cg_path, pid, &what);
    if (err) {
      lua_pushfstring(L, "cannot %s cgroup %s: %s", what, cg_path, strerror(err));
      lua_replace(L, 4);
      free(cg_path);
    } else {
      p->cgroup = cg_path;
    }
    write_go(p->fds[1]);
    ct_close_fd(&p->fds[1]);
  }
  lua_newtable(L);   /* 6: lines */
  lua_pushnil(L);    /* 7: result */
  ct_set_nonblock(pfd[0]);
  double deadline = timeout > 0 ? ct_mono() + timeout : 0;
  int final = 0, eof = 0, exited = 0, timed_out = 0, bad = 0;
  while (!eof && !bad) {
    if (!exited && p->pidfd < 0) exited = ct_has_exited(pid);
    int ms = exited ? 0 : ct_ms_until(deadline);
    if (ms == 0 && !exited) {
      timed_out = 1;
      break;
    }
    /* Once the child is gone, all it wrote is in the pipe: drain it without
       waiting (a process it left behind may hold the pipe open). */
    struct pollfd pf[2];
    int n = 0, ipid = -1;
    pf[n++] = (struct pollfd){p->fds[0], POLLIN, 0};
    if (!exited && p->pidfd >= 0) pf[ipid = n++] = (struct pollfd){p->pidfd, POLLIN, 0};
    if (!exited && p->pidfd < 0 && (ms < 0 || ms > 50)) ms = 50;
    int r = poll(pf, (nfds_t)n, ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    if (ipid >= 0 && pf[ipid].revents) exited = 1;
    if (pf[0].revents) {
      if (ct_buf_grow(&p->rec, 65536) != 0) return luaL_error(L, "not enough memory");
      ssize_t got = read(p->fds[0], p->rec.p + p->rec.len, p->rec.cap - p->rec.len);
      if (got > 0) {
        p->rec.len += (size_t)got;
        if (fc_parse(L, p, 6, 7, &final) != 0) bad = 1;
        continue;
      }
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      eof = 1;
    } else if (exited) {
      break; /* nothing more to read now */
    }
  }
  /* The stream ended without a result (a crash, or the hook exec'd): wait
     for the child itself, within the deadline, to tell what became of it. */
  while (eof && !final && !bad && !exited && !timed_out) {
    int ms = ct_ms_until(deadline);
    if (ms == 0) {
      timed_out = 1;
      break;
    }
    if (p->pidfd >= 0) {
      struct pollfd pf = {p->pidfd, POLLIN, 0};
      if (poll(&pf, 1, ms) > 0) exited = 1;
    } else {
      struct timespec nap = {0, 10 * 1000 * 1000};
      nanosleep(&nap, NULL);
      exited = ct_has_exited(pid);
    }
  }
  /* Whatever the hook left running in its group, or anywhere in its
     cgroup, goes with it. */
  ct_proc_kill(p, SIGKILL);
  ct_close_fd(&p->fds[0]);
  ct_close_fd(&p->pidfd);
  if (ct_reap(pid, &p->status) == 0) p->reaped = 1;
  if (p->cgroup) {
    int err = ct_cg_destroy(p->cgroup, 10);
    if (err) {
      lua_pushfstring(L, "cannot empty and remove cgroup %s: %s", p->cgroup,
                      err == EBUSY ? "processes still in it after 10s" : strerror(err));
      lua_replace(L, 4);
    }
    free(p->cgroup);
    p->cgroup = NULL;
  }
  if (timed_out && !(final && !bad)) {
    lua_pushboolean(L, 0);
    lua_pushvalue(L, 6);
    char secs[64];
    snprintf(secs, sizeof secs, "%.14g", timeout);
    lua_pushfstring(L, "timed out after %ss", secs);
    lua_pushvalue(L, 4);
    lua_pushliteral(L, "timeout");
    return 5;
  }
  if (final && !bad) {
    lua_pushboolean(L, final != R_ERROR);
    lua_pushvalue(L, 6);
    lua_pushvalue(L, 7);
    lua_pushvalue(L, 4);
    if (final != R_ERROR) return 4;
    lua_pushliteral(L, "error");
    return 5;
  }
  lua_pushboolean(L, 0);
  lua_pushvalue(L, 6);
  const char *kind;
  if (bad) {
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
  lua_pushvalue(L, 4);
  lua_pushstring(L, kind);
  return 5;
}

int luaopen_ct_proc_sandbox(lua_State *L) {
  static const luaL_Reg funcs[] = {{"fork_call", p_fork_call}, {"cgroup_kill", p_cgroup_kill}, {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
  return 0;
}
