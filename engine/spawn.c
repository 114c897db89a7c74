/* Starting a program (PATH, stdio, process group, cwd), the process record and the one wait that run, spawn and fork_call share. */
#include "int.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Set in a fork_call child: processes it starts stay in its process group,
   so the parent's kill(-pgid) at the deadline reaches them too. */
int ct_in_sandbox_child;

/* ---------- small helpers ---------- */

/* Milliseconds until deadline for poll(): -1 without one, at least 1 before it. */
static int ms_until(double deadline) {
  if (deadline <= 0) return -1;
  double left = deadline - ct_mono();
  if (left <= 0) return 0;
  double ms = ceil(left * 1000.0);
  return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* Whether the child has exited, without reaping it (the zombie keeps its pid
   and process group id reserved, so kill(-pid) stays safe). */
static int has_exited(pid_t pid) {
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

void ct_decode_status(int status, int *code, int *sig) {
  if (WIFSIGNALED(status)) {
    *sig = WTERMSIG(status);
    *code = 128 + *sig;
  } else {
    *sig = 0;
    *code = WIFEXITED(status) ? WEXITSTATUS(status) : 255;
  }
}

static void reset_signals(const sigset_t *mask) {
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

/* ---------- the process record (spawn's userdata, run's and fork_call's guard) ---------- */

int ct_buf_grow(struct buf *b, size_t need) {
  if (b->cap - b->len >= need) return 0;
  size_t cap = b->cap ? b->cap : 256;
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
  for (int i = 0; i < 3; i++) p->fds[i] = -1;
  luaL_setmetatable(L, PROCESS_MT);
  return p;
}

void ct_proc_started(struct proc *p, pid_t pid, int group) {
  p->pid = pid;
  p->group = group;
#ifdef SYS_pidfd_open
  p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (p->pidfd >= 0) fcntl(p->pidfd, F_SETFD, FD_CLOEXEC);
#endif
}

int ct_proc_kill(struct proc *p, int sig) {
  if (p->pid <= 0 || p->reaped) {
    errno = ESRCH;
    return -1;
  }
  return kill(p->group ? -p->pid : p->pid, sig);
}

/* Kills a live child (its group, its cgroup), reaps it, releases everything. */
void ct_proc_release(struct proc *p) {
  if (p->owner != getpid()) return;
  for (int i = 0; i < 3; i++) ct_close_fd(&p->fds[i]);
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
  memset(&p->out, 0, sizeof p->out);
  memset(&p->err, 0, sizeof p->err);
}

/* ---------- the wait ---------- */

/* Reads what fd holds now into b; at its end (or an error) fd is closed.
   -1: out of memory. */
static int read_into(int *fd, struct buf *b) {
  for (;;) {
    if (ct_buf_grow(b, 65536) != 0) return -1;
    ssize_t n = read(*fd, b->p + b->len, b->cap - b->len);
    if (n > 0) {
      b->len += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return 0;
    ct_close_fd(fd);
    return 0;
  }
}

/* See int.h. */
int ct_proc_wait(struct proc *p, const char *in, size_t in_len, double deadline, int stop_at_exit,
                 int *timed_out) {
  int *fd = p->fds;
  size_t in_off = 0;
  int exited = 0, got_epipe = 0;
  for (int i = CT_FD_IN; i <= CT_FD_ERR; i++) {
    int fl = fd[i] >= 0 ? fcntl(fd[i], F_GETFL) : -1;
    if (fl >= 0) fcntl(fd[i], F_SETFL, fl | O_NONBLOCK);
  }
  if (fd[CT_FD_IN] >= 0 && in_len == 0) ct_close_fd(&fd[CT_FD_IN]);
  /* A child that stops reading must not kill us with SIGPIPE. */
  sigset_t pipeset, old, pend;
  sigemptyset(&pipeset);
  sigaddset(&pipeset, SIGPIPE);
  sigpending(&pend);
  int was_pending = sigismember(&pend, SIGPIPE);
  sigprocmask(SIG_BLOCK, &pipeset, &old);
  int rc = 0;
  for (;;) {
    if (!exited) exited = has_exited(p->pid);
    if (exited) ct_close_fd(&fd[CT_FD_IN]);
    if (exited && fd[CT_FD_OUT] < 0 && fd[CT_FD_ERR] < 0) break;
    struct pollfd pf[4];
    int n = 0, iin = -1, iout = -1, ierr = -1;
    if (fd[CT_FD_IN] >= 0) pf[iin = n++] = (struct pollfd){fd[CT_FD_IN], POLLOUT, 0};
    if (fd[CT_FD_OUT] >= 0) pf[iout = n++] = (struct pollfd){fd[CT_FD_OUT], POLLIN, 0};
    if (fd[CT_FD_ERR] >= 0) pf[ierr = n++] = (struct pollfd){fd[CT_FD_ERR], POLLIN, 0};
    if (!exited && p->pidfd >= 0) pf[n++] = (struct pollfd){p->pidfd, POLLIN, 0};
    /* With stop_at_exit, once the child is gone only what the pipes hold
       now is read (a process it left behind may keep them open). */
    int drain = exited && stop_at_exit;
    int ms = drain ? 0 : ms_until(deadline);
    if (ms == 0 && !drain) {
      if (!exited) *timed_out = 1;
      break;
    }
    /* Without a pidfd, look at the child now and then. */
    if (p->pidfd < 0 && !exited && (ms < 0 || ms > 50)) ms = 50;
    int r = poll(pf, (nfds_t)n, ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      rc = errno;
      break;
    }
    if (r == 0 && drain) break;
    if (iin >= 0 && pf[iin].revents) {
      if (pf[iin].revents & (POLLERR | POLLNVAL)) {
        ct_close_fd(&fd[CT_FD_IN]);
      } else {
        size_t chunk = in_len - in_off > 65536 ? 65536 : in_len - in_off;
        ssize_t w = write(fd[CT_FD_IN], in + in_off, chunk);
        if (w > 0) {
          in_off += (size_t)w;
          if (in_off == in_len) ct_close_fd(&fd[CT_FD_IN]);
        } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
          if (errno == EPIPE) got_epipe = 1;
          ct_close_fd(&fd[CT_FD_IN]);
        }
      }
    }
    if ((iout >= 0 && pf[iout].revents && read_into(&fd[CT_FD_OUT], &p->out) != 0) ||
        (ierr >= 0 && pf[ierr].revents && read_into(&fd[CT_FD_ERR], &p->err) != 0)) {
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

/* Puts src on fd target in the child (src may be any number, even < 3). */
static int child_dup(int src, int target) {
  if (src == target) {
    int fl = fcntl(src, F_GETFD);
    return fl < 0 ? -1 : fcntl(src, F_SETFD, fl & ~FD_CLOEXEC);
  }
  return dup2(src, target) < 0 ? -1 : 0;
}

/* The child side between fork and exec: async-signal-safe calls only. */
static void child_exec(const char *const *argv, char *const *envp, const char *cwd, const int *fds,
                       int nfds, int mode, pid_t parent, const sigset_t *empty, int errfd) {
  if (mode == CT_START_SESSION && setsid() < 0) child_fail(errfd, 2, errno);
  if (mode == CT_START_DETACH || (mode == CT_START_GROUP && !ct_in_sandbox_child)) {
    if (setpgid(0, 0) != 0) child_fail(errfd, 2, errno);
  }
  if (mode != CT_START_DETACH && mode != CT_START_SESSION) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(errfd, 2, errno);
    if (getppid() != parent) _exit(127); /* the parent is already gone */
  }
  /* Move sources out of 0..nfds-1 first so one dup2 cannot clobber another. */
  int src[CT_START_FDS];
  for (int i = 0; i < nfds; i++) {
    src[i] = fds[i];
    if (src[i] >= 0 && src[i] < nfds && src[i] != i) {
      src[i] = fcntl(src[i], F_DUPFD_CLOEXEC, nfds);
      if (src[i] < 0) child_fail(errfd, 2, errno);
    }
  }
  for (int i = 0; i < nfds; i++)
    if (src[i] >= 0 && child_dup(src[i], i) != 0) child_fail(errfd, 2, errno);
  /* Nothing but those crosses exec, whatever a library opened without CLOEXEC. */
  if (syscall(SYS_close_range, (unsigned)nfds, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */) != 0) {
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536) max = 65536;
    for (int fd = nfds; fd < max; fd++)
      if (fd != errfd) fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  if (cwd && chdir(cwd) != 0) child_fail(errfd, 1, errno);
  reset_signals(empty);
  /* execvp searches the PATH of the environment the program gets. */
  if (envp) environ = (char **)envp;
  execvp(argv[0], (char *const *)argv);
  child_fail(errfd, 0, errno);
}

/* See int.h. */
pid_t ct_proc_start(const char *const *argv, char *const *envp, const char *cwd, const int *fds, int nfds,
                    int mode, int *err, const char **what) {
  *what = argv[0];
  if (!argv[0] || !argv[0][0]) {
    *err = ENOENT;
    return -1;
  }
  int ep[2];
  if (pipe2(ep, O_CLOEXEC) != 0) {
    *err = errno;
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
    child_exec(argv, envp, cwd, fds, nfds < CT_START_FDS ? nfds : CT_START_FDS, mode, parent, &empty, ep[1]);
  }
  int fork_err = errno;
  sigprocmask(SIG_SETMASK, &old, NULL);
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
