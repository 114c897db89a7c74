/* Starting a program (search PATH, stdio, process group, cwd) and the process record that run, spawn and fork_call share. */
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

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Set in a fork_call child: processes it starts stay in its process group,
   so the parent's kill(-pgid) at the deadline reaches them too. */
int ct_in_sandbox_child;

/* ---------- small helpers ---------- */

/* Milliseconds until deadline for poll(): -1 without one, at least 1 before it. */
int ct_ms_until(double deadline) {
  if (deadline <= 0) return -1;
  double left = deadline - ct_mono();
  if (left <= 0) return 0;
  double ms = ceil(left * 1000.0);
  return ms > INT_MAX ? INT_MAX : (int)ms;
}

int ct_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0) fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

/* Whether the child has exited, without reaping it (the zombie keeps its pid
   and process group id reserved, so kill(-pid) stays safe). */
int ct_has_exited(pid_t pid) {
  siginfo_t si;
  memset(&si, 0, sizeof si);
  if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0) return errno == ECHILD;
  return si.si_pid == pid;
}

int ct_reap(pid_t pid, int *status) {
  for (;;) {
    pid_t r = waitpid(pid, status, 0);
    if (r == pid) return 0;
    if (r < 0 && errno != EINTR) return -1;
  }
}

void ct_close_fd(int *fd) {
  if (*fd >= 0) {
    close(*fd);
    *fd = -1;
  }
}

int ct_set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

void ct_decode_status(int status, int *code, int *sig) {
  if (WIFSIGNALED(status)) {
    *sig = WTERMSIG(status);
    *code = 128 + *sig;
  } else {
    *sig = 0;
    *code = WIFEXITED(status) ? WEXITSTATUS(status) : 255;
  }
}

void ct_reset_signals(const sigset_t *mask) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  for (int s = 1; s < NSIG; s++) {
    if (s == SIGKILL || s == SIGSTOP) continue;
    sigaction(s, &sa, NULL);
  }
  sigprocmask(SIG_SETMASK, mask, NULL);
}

/* ---------- the process record (spawn's userdata, and run's guard) ---------- */


int ct_buf_grow(struct buf *b, size_t need) {
  if (b->cap - b->len >= need) return 0;
  size_t cap = b->cap ? b->cap : 65536;
  while (cap - b->len < need) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}


struct proc *ct_proc_new(lua_State *L) {
  struct proc *p = lua_newuserdatauv(L, sizeof *p, 0);
  memset(p, 0, sizeof *p);
  p->owner = getpid();
  p->pidfd = -1;
  for (int i = 0; i < 6; i++) p->fds[i] = -1;
  luaL_setmetatable(L, PROCESS_MT);
  return p;
}

void ct_proc_kill(struct proc *p, int sig) {
  if (p->pid <= 0 || p->reaped) return;
  if (p->group)
    kill(-p->pid, sig);
  else
    kill(p->pid, sig);
}


/* Kills a live child (its group, its cgroup), reaps it, releases everything. */
void ct_proc_release(struct proc *p) {
  if (p->owner != getpid()) return;
  for (int i = 0; i < 6; i++) ct_close_fd(&p->fds[i]);
  ct_close_fd(&p->pidfd);
  if (p->pid > 0 && !p->reaped) {
    ct_proc_kill(p, SIGKILL);
    if (ct_reap(p->pid, &p->status) == 0 || errno == ECHILD) p->reaped = 1;
  }
  if (p->cgroup) {
    ct_cg_destroy(p->cgroup, 10);
    free(p->cgroup);
    p->cgroup = NULL;
  }
  free(p->out.p);
  free(p->err.p);
  free(p->rec.p);
  memset(&p->out, 0, sizeof p->out);
  memset(&p->err, 0, sizeof p->err);
  memset(&p->rec, 0, sizeof p->rec);
}

/* ---------- starting a child ---------- */

struct start_error {
  int stage; /* 0: exec, 1: chdir, 2: setup */
  int err;
};

static void child_fail(int errfd, int stage, int err) {
  struct start_error e = {stage, err};
  ssize_t n;
  do {
    n = write(errfd, &e, sizeof e);
  } while (n < 0 && errno == EINTR);
  _exit(127);
}

/* Builds "dir/prog\0dir/prog\0..." for each PATH entry; NULL when prog has a
   slash (exec it as given). */
static char *path_candidates(const char *prog, char *const *envp, size_t *count) {
  const char *path = NULL;
  *count = 0;
  if (strchr(prog, '/')) return NULL;
  if (envp)
    for (char *const *e = envp; *e; e++)
      if (strncmp(*e, "PATH=", 5) == 0) path = *e + 5;
  if (!path) path = getenv("PATH");
  if (!path) path = DEFAULT_PATH;
  size_t plen = strlen(prog), n = 1;
  for (const char *s = path; *s; s++) n += *s == ':';
  size_t size = strlen(path) + n * (plen + 3);
  char *out = malloc(size);
  if (!out) return NULL;
  char *w = out;
  const char *s = path;
  for (;;) {
    const char *end = strchrnul(s, ':');
    size_t dl = (size_t)(end - s);
    if (dl == 0) {
      memcpy(w, "./", 2); /* an empty entry is the current directory */
      w += 2;
    } else {
      memcpy(w, s, dl);
      w += dl;
      *w++ = '/';
    }
    memcpy(w, prog, plen + 1);
    w += plen + 1;
    (*count)++;
    if (!*end) break;
    s = end + 1;
  }
  return out;
}

/* Puts src on fd target in the child (src may be any number, even < 3). */
static int child_dup(int src, int target) {
  if (src == target) {
    int fl = fcntl(src, F_GETFD);
    return fl < 0 ? -1 : fcntl(src, F_SETFD, fl & ~FD_CLOEXEC);
  }
  return dup2(src, target) < 0 ? -1 : 0;
}

/* Runs argv[0], or each PATH candidate in turn (cands: ncands NUL-separated
   paths) as execvp does; returns only on failure, with the errno to report
   (EACCES when a candidate was not executable and none was found). Safe in a
   child between fork and exec. */
static int exec_candidates(const char *const *argv, char *const *env, const char *cands,
                           size_t ncands) {
  if (!cands) {
    execve(argv[0], (char *const *)argv, env);
    return errno;
  }
  int err = ENOENT, eacces = 0;
  const char *c = cands;
  for (size_t i = 0; i < ncands; i++) {
    execve(c, (char *const *)argv, env);
    err = errno;
    if (err == EACCES)
      eacces = 1;
    else if (err != ENOENT && err != ENOTDIR && err != ELOOP && err != ENAMETOOLONG)
      break;
    c += strlen(c) + 1;
  }
  return eacces && (err == ENOENT || err == ENOTDIR) ? EACCES : err;
}

/* The child side between fork and exec: async-signal-safe calls only. */
static void child_exec(const char *const *argv, char *const *envp, const char *cwd,
                       const int fds[3], int mode, pid_t parent, const sigset_t *empty,
                       const char *cands, size_t ncands, int errfd) {
  if (mode == CT_START_DETACH || (mode == CT_START_GROUP && !ct_in_sandbox_child)) {
    if (setpgid(0, 0) != 0) child_fail(errfd, 2, errno);
  }
  if (mode != CT_START_DETACH) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(errfd, 2, errno);
    if (getppid() != parent) _exit(127); /* the parent is already gone */
  }
  /* Move sources out of 0..2 first so one dup2 cannot clobber another. */
  int src[3];
  for (int i = 0; i < 3; i++) {
    src[i] = fds[i];
    if (src[i] >= 0 && src[i] < 3 && src[i] != i) {
      src[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 3);
      if (src[i] < 0) child_fail(errfd, 2, errno);
    }
  }
  for (int i = 0; i < 3; i++)
    if (src[i] >= 0 && child_dup(src[i], i) != 0) child_fail(errfd, 2, errno);
  /* Nothing but 0..2 crosses exec, whatever a library opened without CLOEXEC. */
  if (syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */) != 0) {
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536) max = 65536;
    for (int fd = 3; fd < max; fd++)
      if (fd != errfd) fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  if (cwd && chdir(cwd) != 0) child_fail(errfd, 1, errno);
  ct_reset_signals(empty);
  child_fail(errfd, 0, exec_candidates(argv, envp ? envp : environ, cands, ncands));
}

/* See int.h. */
pid_t ct_proc_start(const char *const *argv, char *const *envp, const char *cwd, const int fds[3],
                    int mode, int *err, const char **what) {
  *what = argv[0];
  if (!argv[0] || !argv[0][0]) {
    *err = ENOENT;
    return -1;
  }
  size_t ncands = 0;
  char *cands = path_candidates(argv[0], envp, &ncands);
  if (!cands && !strchr(argv[0], '/')) {
    *err = ENOMEM;
    return -1;
  }
  int ep[2];
  if (pipe2(ep, O_CLOEXEC) != 0) {
    *err = errno;
    free(cands);
    return -1;
  }
  /* Block every signal across fork so no handler of ours runs in the child
     before it resets the dispositions. */
  sigset_t all, old, empty;
  sigfillset(&all);
  sigemptyset(&empty);
  sigprocmask(SIG_SETMASK, &all, &old);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    close(ep[0]);
    child_exec(argv, envp, cwd, fds, mode, parent, &empty, cands, ncands, ep[1]);
    _exit(127);
  }
  int fork_err = errno;
  sigprocmask(SIG_SETMASK, &old, NULL);
  free(cands);
  close(ep[1]);
  if (pid < 0) {
    close(ep[0]);
    *err = fork_err;
    return -1;
  }
  /* Both sides set the group, so it exists whichever runs first. */
  if (mode == CT_START_DETACH || (mode == CT_START_GROUP && !ct_in_sandbox_child)) setpgid(pid, pid);
  struct start_error se;
  size_t got = 0;
  while (got < sizeof se) {
    ssize_t n = read(ep[0], (char *)&se + got, sizeof se - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  close(ep[0]);
  if (got == sizeof se) {
    int st;
    ct_reap(pid, &st);
    *err = se.err;
    if (se.stage == 1) *what = cwd;
    return -1;
  }
  return pid;
}

