/* A container's monitor (`ctcli __ctcli-monitor__`, no Lua): holds its stdio, records exits, restarts by policy. */
#include "monitor.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

enum { MAX_ARGS = 64, MAX_CLIENTS = 8, REQ_MAX = 256 };

struct argvec {
  const char *v[MAX_ARGS + 1];
  int n;
};

struct config {
  char *blob;
  const char *id, *pid_file, *cgroup, *restart, *journal, *journal_name;
  struct argvec create, start, del;
  int logs_fd, state_fd, ready_fd;
  long long uid, gid, backoff_ms, backoff_max_ms, limit, quick_ms, log_max, log_keep, log_seq, runc_ms;
};

struct client {
  int fd;
  size_t len;
  double deadline;
  char buf[REQ_MAX];
};

static struct mon {
  struct config c;
  int sigfd, lsock, devnull, out_w, err_w;
  struct ct_stream out, err;
  struct ct_log log;
  struct ct_journal journal;
  struct client cl[MAX_CLIENTS];
  pid_t init, cmd;
  int cmd_status, cmd_done, init_exited, init_status;
  long long runs, restarts, quick_fails;
  const char *state;
  int stopping, exit_when_done, done;
  double run_start, run_start_real, restart_at, exit_at;
  int exit_run, exit_code, exit_sig;
  char error[640], last_err[CT_STREAM_LAST];
} M;

/* ---------- time, small helpers ---------- */

/* One line, to the caller of ct.monitor.spawn while it still listens
   (ready), else as the monitor's own note in the log (stream "ctcli"). */
static void say(int ready, const char *fmt, ...) {
  char line[640];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n > sizeof line - 2) n = (int)sizeof line - 2;
  if (!ready) {
    ct_log_line(&M.log, "ctcli", 'F', line, (size_t)n);
  } else if (M.c.ready_fd >= 0) {
    line[n++] = '\n';
    if (write_all(M.c.ready_fd, line, (size_t)n) != 0) ct_close_fd(&M.c.ready_fd);
  }
}
#define note(...) say(0, __VA_ARGS__)
#define ready_say(...) say(1, __VA_ARGS__)

/* ---------- configuration ---------- */

static int set_num(long long *dst, const char *v) {
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (errno || end == v || *end || x < -1) return -1;
  *dst = x;
  return 0;
}

static int set_arg(struct argvec *a, const char *v) {
  if (a->n >= MAX_ARGS) return -1;
  a->v[a->n++] = v;
  a->v[a->n] = NULL;
  return 0;
}

static int config_record(struct config *c, const char *k, const char *v) {
#define F(name) {#name, offsetof(struct config, name)}
  static const struct { const char *key; size_t off; } nums[] = {
      F(uid), F(gid), F(backoff_ms), F(backoff_max_ms), F(limit), F(quick_ms), F(log_max), F(log_keep),
      F(log_seq), F(runc_ms)}, strs[] = {F(id), F(pid_file), F(cgroup), F(restart), F(journal), F(journal_name)};
#undef F
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
    if (strcmp(k, nums[i].key) == 0) return set_num((long long *)((char *)c + nums[i].off), v);
  for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
    if (strcmp(k, strs[i].key) == 0) {
      *(const char **)((char *)c + strs[i].off) = v;
      return 0;
    }
  if (strcmp(k, "create") == 0) return set_arg(&c->create, v);
  if (strcmp(k, "start") == 0) return set_arg(&c->start, v);
  if (strcmp(k, "delete") == 0) return set_arg(&c->del, v);
  return -1; /* an unknown key: a newer ctcli, refuse rather than guess */
}

/* Reads the records from fd; NULL or what is wrong. */
static const char *config_read(int fd, struct config *c) {
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size <= 0 || st.st_size > (1 << 20)) return "unreadable config";
  c->blob = malloc((size_t)st.st_size + 1);
  if (!c->blob) return "out of memory";
  ssize_t got = pread(fd, c->blob, (size_t)st.st_size, 0);
  if (got != st.st_size) return "short config";
  c->blob[got] = '\0';
  char head[64];
  snprintf(head, sizeof head, "%s=%d", CT_MONITOR_CONFIG_KEY, CT_MONITOR_CONFIG_VERSION);
  if (strcmp(c->blob, head) != 0) return "unsupported config version";
  for (char *p = c->blob + strlen(c->blob) + 1, *next; p < c->blob + got; p = next) {
    next = p + strlen(p) + 1;
    char *eq = strchr(p, '=');
    if (!eq) return "a config record without '='";
    *eq = '\0';
    if (config_record(c, p, eq + 1) != 0) return p;
  }
  if (!c->id || !c->pid_file || !c->restart || !c->create.n || !c->start.n || !c->del.n)
    return "incomplete config";
  return NULL;
}

/* ---------- logs ---------- */

static void feed_both(void) {
  ct_stream_feed(&M.log, &M.out);
  ct_stream_feed(&M.log, &M.err);
}

static void drain_both(void) {
  ct_stream_drain(&M.log, &M.out);
  ct_stream_drain(&M.log, &M.err);
}

/* ---------- state file ---------- */

static size_t json_str(char *out, size_t cap, const char *s) {
  size_t n = 0;
  out[n++] = '"';
  for (; *s && n + 8 < cap; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      out[n++] = '\\';
      out[n++] = (char)ch;
    } else if (ch < 0x20) {
      n += (size_t)snprintf(out + n, cap - n, "\\u%04x", ch);
    } else {
      out[n++] = (char)ch;
    }
  }
  out[n++] = '"';
  out[n] = '\0';
  return n;
}

#define ADD(...) n += (size_t)snprintf(out + n, cap > n ? cap - n : 0, __VA_ARGS__)

static size_t state_json(char *out, size_t cap) {
  char id[300], err[1300], t0[40], t1[40], t2[40];
  json_str(id, sizeof id, M.c.id);
  json_str(err, sizeof err, M.error);
  ct_mon_time(t0, M.run_start_real);
  size_t n = 0;
  ADD("{\"version\":%d,\"id\":%s,\"state\":\"%s\",\"monitor_pid\":%d,\"pid\":%d,", CT_MONITOR_PROTOCOL,
      id, M.state, (int)getpid(), M.init > 0 ? (int)M.init : 0);
  ADD("\"runs\":%lld,\"restarts\":%lld,\"quick_failures\":%lld,\"restart\":\"%s\",\"log_errors\":%lld",
      M.runs, M.restarts, M.quick_fails, M.c.restart, M.log.errors);
  if (M.log.journal) ADD(",\"journal_errors\":%lld", M.journal.errors);
  if (M.runs) ADD(",\"started_at\":\"%s\"", t0);
  if (M.exit_run) {
    ct_mon_time(t1, M.exit_at);
    ADD(",\"last_exit\":{\"run\":%d,\"at\":\"%s\",", M.exit_run, t1);
    if (M.exit_sig) ADD("\"signal\":%d}", M.exit_sig);
    else ADD("\"code\":%d}", M.exit_code);
  }
  if (M.restart_at > 0) {
    ct_mon_time(t2, ct_now() + (M.restart_at - ct_mono()));
    ADD(",\"restart_at\":\"%s\"", t2);
  }
  if (M.error[0]) ADD(",\"error\":%s", err);
  ADD("}");
  return n < cap ? n : cap - 1;
}

/* state.json replaced atomically (temp file, fsync, rename, fsync dir). */
static void state_write(void) {
  char buf[2560];
  size_t n = state_json(buf, sizeof buf - 1);
  buf[n++] = '\n';
  int fd = openat(M.c.state_fd, CT_MONITOR_STATE ".tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                  0644);
  int ok = fd >= 0 && write_all(fd, buf, n) == 0 && fsync(fd) == 0;
  if (fd >= 0 && close(fd) != 0) ok = 0;
  if (ok && renameat(M.c.state_fd, CT_MONITOR_STATE ".tmp", M.c.state_fd, CT_MONITOR_STATE) == 0) {
    fsync(M.c.state_fd);
    return;
  }
  note("cannot write %s: %s", CT_MONITOR_STATE, strerror(errno));
}

/* ---------- children ---------- */

static void reap_all(void) {
  for (;;) {
    int st;
    pid_t p = waitpid(-1, &st, WNOHANG);
    if (p < 0 && errno == EINTR) continue;
    if (p <= 0) return;
    if (p == M.init && !M.init_exited) {
      M.init_exited = 1;
      M.init_status = st;
    } else if (p == M.cmd) {
      M.cmd_done = 1;
      M.cmd_status = st;
    }
  }
}

static void drain_signals(void) {
  struct signalfd_siginfo si;
  while (read(M.sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
    if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) M.exit_when_done = 1;
  }
  reap_all();
}

/* Runs a runc command with the container's pipes as its stdout/stderr
   (what it prints is logged); -1 with M.error set unless it exits 0. */
static int run_cmd(const struct argvec *a, const char *what) {
  int quiet = strcmp(what, "delete") == 0; /* "does not exist" is no news */
  int fds[3] = {M.devnull, quiet ? M.devnull : M.out_w, quiet ? M.devnull : M.err_w}, err = 0;
  const char *which = NULL;
  M.last_err[0] = '\0';
  M.err.last = M.last_err;
  M.cmd_done = 0;
  M.cmd = ct_proc_start(a->v, NULL, "/", fds, 3, CT_START_DETACH, &err, &which);
  if (M.cmd < 0) {
    M.err.last = NULL;
    snprintf(M.error, sizeof M.error, "runc %s: %s: %s", what, which, strerror(err));
    return -1;
  }
  double deadline = M.c.runc_ms > 0 ? ct_mono() + (double)M.c.runc_ms / 1000 : 0;
  int killed = 0;
  while (!M.cmd_done) {
    struct pollfd p[3] = {{M.sigfd, POLLIN, 0}, {M.out.fd, POLLIN, 0}, {M.err.fd, POLLIN, 0}};
    if (poll(p, 3, 100) < 0 && errno != EINTR) break;
    feed_both();
    drain_signals();
    if (!killed && deadline > 0 && ct_mono() > deadline) {
      kill(-M.cmd, SIGKILL);
      killed = 1;
    }
  }
  feed_both();
  M.err.last = NULL;
  M.cmd = 0;
  int st = M.cmd_status;
  if (M.cmd_done && WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
  if (killed)
    snprintf(M.error, sizeof M.error, "runc %s: timed out", what);
  else if (M.last_err[0])
    snprintf(M.error, sizeof M.error, "runc %s: %s", what, M.last_err);
  else if (M.cmd_done && WIFSIGNALED(st))
    snprintf(M.error, sizeof M.error, "runc %s: killed by signal %d", what, WTERMSIG(st));
  else
    snprintf(M.error, sizeof M.error, "runc %s: exit status %d", what, WEXITSTATUS(st));
  return -1;
}

static pid_t read_pid_file(void) {
  char buf[32] = {0};
  int fd = openat(M.c.state_fd, M.c.pid_file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  long v = n > 0 ? strtol(buf, NULL, 10) : 0;
  return v > 0 ? (pid_t)v : -1;
}

/* delete (a leftover), create, start: one run of the container. */
static int start_container(void) {
  M.error[0] = '\0';
  run_cmd(&M.c.del, "delete"); /* nothing to delete is fine */
  M.error[0] = '\0';
  M.init = 0;
  M.init_exited = 0;
  /* Before create: the app may write before `start` returns, and a reader
     tells one run's output from the next by this note. */
  note("run %lld starting", M.runs + 1);
  if (run_cmd(&M.c.create, "create") != 0) return -1;
  M.init = read_pid_file();
  if (M.init <= 0) {
    snprintf(M.error, sizeof M.error, "runc create: no pid in %s", M.c.pid_file);
    return -1;
  }
  if (run_cmd(&M.c.start, "start") != 0) {
    run_cmd(&M.c.del, "delete");
    M.init = 0;
    return -1;
  }
  M.runs++;
  M.run_start = ct_mono();
  M.run_start_real = ct_now();
  M.state = "running";
  note("run %lld started, pid %d", M.runs, (int)M.init);
  return 0;
}

/* ---------- policy ---------- */

/* After a failed run or a failed start: back off, or give up. */
static void schedule_restart(int quick) {
  M.quick_fails = quick ? M.quick_fails + 1 : 0;
  if (M.c.limit > 0 && M.quick_fails >= M.c.limit) {
    M.state = "failed";
    M.done = 1;
    note("%lld quick failures in a row: not restarting", M.quick_fails);
    return;
  }
  long long delay = M.c.backoff_ms;
  for (long long i = 1; i < M.quick_fails && delay < M.c.backoff_max_ms; i++) delay *= 2;
  if (delay > M.c.backoff_max_ms) delay = M.c.backoff_max_ms;
  M.restart_at = ct_mono() + (double)delay / 1000;
  M.state = "restarting";
  note("restarting in %lld ms", delay);
}

static void on_init_exit(void) {
  int st = M.init_status;
  drain_both();
  M.exit_run = (int)M.runs;
  M.exit_at = ct_now();
  ct_decode_status(st, &M.exit_code, &M.exit_sig);
  M.init = 0;
  M.init_exited = 0;
  if (M.exit_sig) note("run %d ended by signal %d", M.exit_run, M.exit_sig);
  else note("run %d exited with code %d", M.exit_run, M.exit_code);
  int failed = M.exit_sig || M.exit_code != 0;
  int policy = strcmp(M.c.restart, "always") == 0 || (failed && strcmp(M.c.restart, "on-failure") == 0);
  /* A state directory that was removed (its root deleted) restarts nothing:
     there is no one left to supervise for. */
  struct stat sd;
  if (policy && fstat(M.c.state_fd, &sd) == 0 && sd.st_nlink == 0) {
    note("the state directory is gone: not restarting");
    policy = 0;
  }
  if (M.stopping || M.exit_when_done || !policy) {
    M.state = "exited";
    M.done = 1;
  } else {
    schedule_restart(ct_mono() - M.run_start < (double)M.c.quick_ms / 1000);
  }
  state_write();
}

static void restart_now(void) {
  M.restart_at = 0;
  if (start_container() == 0) {
    M.restarts++;
  } else {
    note("%s", M.error);
    schedule_restart(1);
  }
  state_write();
}

/* ---------- control socket ---------- */

/* Binds monitor.sock in the state dir through /proc/self/fd/N (any path
   length); refuses when a live monitor answers there. */
static const char *ctl_listen(void) {
  struct sockaddr_un a;
  ct_mon_addr(&a, M.c.state_fd);
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) return "socket";
  int live = connect(probe, (struct sockaddr *)&a, sizeof a) == 0;
  close(probe);
  if (live) {
    errno = EADDRINUSE;
    return "another monitor answers on " CT_MONITOR_SOCKET;
  }
  if (unlinkat(M.c.state_fd, CT_MONITOR_SOCKET, 0) != 0 && errno != ENOENT) return "unlink " CT_MONITOR_SOCKET;
  M.lsock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (M.lsock < 0) return "socket";
  if (bind(M.lsock, (struct sockaddr *)&a, sizeof a) != 0) return "bind " CT_MONITOR_SOCKET;
  if (listen(M.lsock, MAX_CLIENTS) != 0) return "listen";
  return NULL;
}

static void ctl_accept(void) {
  int fd = accept4(M.lsock, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) return;
  for (int i = 0; i < MAX_CLIENTS; i++) {
    if (M.cl[i].fd >= 0) continue;
    char hello[40];
    int n = snprintf(hello, sizeof hello, "ctcli-monitor %d\n", CT_MONITOR_PROTOCOL);
    if (write(fd, hello, (size_t)n) != n) break;
    M.cl[i].fd = fd;
    M.cl[i].len = 0;
    M.cl[i].deadline = ct_mono() + 5;
    return;
  }
  close(fd); /* too many at once, or gone already */
}

static void ctl_answer(const char *req, char *out, size_t cap) {
  size_t n = 0;
  if (strcmp(req, "status") == 0) {
    ADD("ok ");
    n += state_json(out + n, cap - n);
  } else if (strcmp(req, "stop") == 0) {
    M.stopping = 1;
    if (M.init > 0) {
      M.state = "stopping";
    } else { /* between runs: nothing to wait for */
      M.restart_at = 0;
      if (strcmp(M.state, "failed") != 0) M.state = "exited";
      M.done = 1;
    }
    note("stop requested");
    state_write();
    ADD("ok %s", M.state);
  } else if (strcmp(req, "rotate") == 0) {
    ct_log_rotate(&M.log);
    ADD("ok %u", M.log.seq);
  } else if (strcmp(req, "exit-when-done") == 0) {
    M.exit_when_done = 1;
    ADD("ok");
  } else {
    ADD("error unknown request: %.100s", req);
  }
}

static void ctl_read(struct client *c) {
  ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (r > 0) c->len += (size_t)r;
  c->buf[c->len] = '\0';
  char *nl = strchr(c->buf, '\n');
  if (!nl && r > 0 && c->len < sizeof c->buf - 1) return;
  char reply[3072];
  if (nl) {
    *nl = '\0';
    ctl_answer(c->buf, reply, sizeof reply - 1);
  } else {
    snprintf(reply, sizeof reply - 1, "error a request is one line of at most %d bytes", REQ_MAX - 2);
  }
  size_t n = strlen(reply);
  reply[n++] = '\n';
  if (write(c->fd, reply, n) < 0) { /* the client went away: nothing to tell */ }
  ct_close_fd(&c->fd);
}

/* ---------- start-up and the loop ---------- */

static const char *make_pipe(struct ct_stream *s, int *w, const char *tag, int priority) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return "pipe";
  s->fd = p[0];
  *w = p[1];
  s->tag = tag;
  s->priority = priority;
  int fl = fcntl(p[0], F_GETFL);
  if (fl < 0 || fcntl(p[0], F_SETFL, fl | O_NONBLOCK) != 0) return "fcntl";
  /* Owned by the app's root so /dev/stdout opens inside a user namespace. */
  if (M.c.uid >= 0 && fchown(p[1], (uid_t)M.c.uid, (gid_t)M.c.gid) != 0) return "fchown pipe";
  return NULL;
}

static const char *setup(void) {
  const char *e;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) return "sigprocmask";
  signal(SIGPIPE, SIG_IGN);
  if ((M.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) return "signalfd";
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return "prctl(PR_SET_CHILD_SUBREAPER)";
  /* First: a second monitor for the same state dir stops before touching anything. */
  if ((e = ctl_listen())) return e;
  if (M.c.cgroup && *M.c.cgroup && (e = ct_cg_join(M.c.cgroup))) return e;
  if ((M.devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0) return "/dev/null";
  /* syslog's info and err, as journald's own stdout streams */
  if ((e = make_pipe(&M.out, &M.out_w, "stdout", 6)) || (e = make_pipe(&M.err, &M.err_w, "stderr", 3))) return e;
  ct_log_open(&M.log, M.c.logs_fd, M.c.log_max, M.c.log_keep,
              M.c.log_seq > 0 && M.c.log_seq < 99999999 ? (unsigned)M.c.log_seq : 0);
  if (M.c.journal) {
    ct_journal_open(&M.journal, M.c.journal, M.c.journal_name, M.c.id);
    M.log.journal = &M.journal;
  }
  return NULL;
}

static int poll_timeout(void) {
  double until = M.restart_at;
  for (int i = 0; i < MAX_CLIENTS; i++)
    if (M.cl[i].fd >= 0 && (until <= 0 || M.cl[i].deadline < until)) until = M.cl[i].deadline;
  if (until <= 0) return -1;
  double ms = (until - ct_mono()) * 1000 + 1;
  return ms < 0 ? 0 : (ms > 3600000 ? 3600000 : (int)ms);
}

static void loop(void) {
  while (!M.done) {
    struct pollfd p[4 + MAX_CLIENTS] = {
        {M.sigfd, POLLIN, 0}, {M.out.fd, POLLIN, 0}, {M.err.fd, POLLIN, 0}, {M.lsock, POLLIN, 0}};
    int n = 4;
    for (int i = 0; i < MAX_CLIENTS; i++) p[n++] = (struct pollfd){M.cl[i].fd, POLLIN, 0};
    /* An exit reaped inside run_cmd left no signal behind to wake poll. */
    if (poll(p, (nfds_t)n, M.init_exited ? 0 : poll_timeout()) < 0 && errno != EINTR) break;
    feed_both();
    drain_signals();
    if (M.init_exited) on_init_exit();
    if (p[3].revents & POLLIN) ctl_accept();
    for (int i = 0; i < MAX_CLIENTS; i++) {
      if (M.cl[i].fd >= 0 && (p[4 + i].revents & (POLLIN | POLLHUP | POLLERR))) ctl_read(&M.cl[i]);
      if (M.cl[i].fd >= 0 && ct_mono() > M.cl[i].deadline) ct_close_fd(&M.cl[i].fd);
    }
    if (M.exit_when_done && M.init <= 0 && !M.done) {
      M.restart_at = 0;
      M.done = 1;
    }
    if (!M.done && M.restart_at > 0 && ct_mono() >= M.restart_at) restart_now();
  }
}

int ct_monitor_main(int argc, char **argv) {
  memset(&M, 0, sizeof M);
  M.c = (struct config){.logs_fd = CT_MONITOR_LOGS_FD, .state_fd = CT_MONITOR_STATE_FD,
                        .ready_fd = CT_MONITOR_READY_FD, .uid = -1, .gid = -1};
  M.sigfd = M.lsock = M.devnull = M.out_w = M.err_w = M.log.fd = M.out.fd = M.err.fd = M.journal.fd = -1;
  for (int i = 0; i < MAX_CLIENTS; i++) M.cl[i].fd = -1;
  M.state = "starting";
  if (argc < 3) return 2;
  int cfd = atoi(argv[2]);
  const char *e = config_read(cfd, &M.c);
  close(cfd);
  if (e) {
    ready_say("error config: %s", e);
    return 2;
  }
  if (chdir("/") != 0 || (e = setup())) {
    ready_say("error %s: %s", e ? e : "chdir /", strerror(errno));
    if (M.lsock >= 0) unlinkat(M.c.state_fd, CT_MONITOR_SOCKET, 0);
    return 1;
  }
  /* state.json is written before the report, so the caller finds it. */
  int started = start_container() == 0;
  if (!started) {
    note("%s", M.error);
    M.state = "failed";
  }
  state_write();
  if (started) ready_say("ready %d", (int)M.init);
  else ready_say("error %s", M.error);
  ct_close_fd(&M.c.ready_fd);
  if (M.init > 0) loop();
  state_write();
  drain_both();
  unlinkat(M.c.state_fd, CT_MONITOR_SOCKET, 0);
  free(M.c.blob);
  return 0;
}
