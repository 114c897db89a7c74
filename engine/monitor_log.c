/* The monitor's log writer: timestamped stdout/stderr records in current.log, rotated by one rename. */
#include "monitor.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

void ct_mon_time(char out[40], double t) {
  time_t s = (time_t)t;
  struct tm tm;
  gmtime_r(&s, &tm);
  long ns = (long)((t - (double)s) * 1e9);
  if (ns < 0 || ns > 999999999) ns = 0;
  size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, 40 - n, ".%09ldZ", ns);
}

double ct_mon_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

void ct_log_flush(struct ct_log *lg) {
  if (!lg->olen) return;
  if (lg->fd < 0 || write_all(lg->fd, lg->obuf, lg->olen) != 0)
    lg->errors++;
  else
    lg->size += (long long)lg->olen;
  lg->olen = 0;
}

static void log_open(struct ct_log *lg) {
  lg->fd = openat(lg->dirfd, CT_MONITOR_LOG, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
  struct stat st;
  lg->size = lg->fd >= 0 && fstat(lg->fd, &st) == 0 ? (long long)st.st_size : 0;
  if (lg->fd < 0) lg->errors++;
}

static void seq_name(char out[32], unsigned seq) { snprintf(out, 32, "%08u.log", seq); }

/* current.log becomes <seq>.log (one rename: a reader holding it open
   loses nothing), a new current.log starts, the oldest beyond keep goes. */
void ct_log_rotate(struct ct_log *lg) {
  ct_log_flush(lg);
  if (lg->size == 0) return;
  char name[32];
  seq_name(name, lg->seq + 1);
  if (renameat(lg->dirfd, CT_MONITOR_LOG, lg->dirfd, name) != 0) {
    lg->errors++;
    return;
  }
  lg->seq++;
  if (lg->fd >= 0) close(lg->fd);
  log_open(lg);
  if ((long long)lg->seq > lg->keep) {
    seq_name(name, lg->seq - (unsigned)lg->keep);
    if (unlinkat(lg->dirfd, name, 0) != 0 && errno != ENOENT) lg->errors++;
  }
}

void ct_log_open(struct ct_log *lg, int dirfd, long long max, long long keep, unsigned seq) {
  lg->dirfd = dirfd;
  lg->max = max;
  lg->keep = keep;
  lg->seq = seq;
  log_open(lg);
}

/* One record: "<time> <stream> <F|P> <text>\n"; P: the line goes on in
   the next record of that stream. */
void ct_log_line(struct ct_log *lg, const char *tag, char flag, const char *p, size_t n) {
  char ts[40];
  ct_mon_time(ts, ct_mon_now());
  size_t need = strlen(ts) + strlen(tag) + n + 6;
  if (lg->max > 0 && lg->size + (long long)(lg->olen + need) > lg->max) ct_log_rotate(lg);
  if (lg->olen + need > sizeof lg->obuf) ct_log_flush(lg);
  lg->olen += (size_t)snprintf(lg->obuf + lg->olen, sizeof lg->obuf - lg->olen, "%s %s %c ", ts, tag, flag);
  memcpy(lg->obuf + lg->olen, p, n);
  lg->olen += n;
  lg->obuf[lg->olen++] = '\n';
}

/* ---- the journal ---- */

void ct_journal_open(struct ct_journal *j) {
  j->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (j->fd < 0) j->errors++;
}

/* One field: KEY=value\n, or, for a value holding a newline, the binary
   form KEY\n<64-bit little-endian length><value>\n. Cut to fit cap. */
static size_t journal_field(char *out, size_t cap, size_t at, const char *key, const char *v, size_t n) {
  size_t k = strlen(key);
  if (at + k + 10 >= cap) return at;
  if (n > cap - at - k - 10) n = cap - at - k - 10;
  memcpy(out + at, key, k);
  at += k;
  if (memchr(v, '\n', n)) {
    out[at++] = '\n';
    for (int i = 0; i < 8; i++) out[at++] = (char)((unsigned long long)n >> (8 * i) & 0xff);
  } else {
    out[at++] = '=';
  }
  memcpy(out + at, v, n);
  at += n;
  out[at++] = '\n';
  return at;
}

int ct_journal_send(struct ct_journal *j, int priority, int partial, const char *p, size_t n) {
  if (j->fd < 0) return EBADF;
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  size_t plen = strlen(j->path);
  if (plen >= sizeof a.sun_path) return ENAMETOOLONG;
  memcpy(a.sun_path, j->path, plen);
  char prio[2] = {(char)('0' + priority), '\0'};
  size_t cap = sizeof j->buf, at = 0;
  at = journal_field(j->buf, cap, at, "MESSAGE", p, n);
  at = journal_field(j->buf, cap, at, "PRIORITY", prio, 1);
  if (j->identifier) at = journal_field(j->buf, cap, at, "SYSLOG_IDENTIFIER", j->identifier, strlen(j->identifier));
  if (j->container) at = journal_field(j->buf, cap, at, "CONTAINER_NAME", j->container, strlen(j->container));
  if (j->id) at = journal_field(j->buf, cap, at, "CONTAINER_ID", j->id, strlen(j->id));
  /* docker's and conmon's mark of a line that goes on in the next entry */
  if (partial) at = journal_field(j->buf, cap, at, "CONTAINER_PARTIAL_MESSAGE", "true", 4);
  for (;;) {
    ssize_t w = sendto(j->fd, j->buf, at, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&a,
                       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1));
    if (w >= 0) return 0;
    if (errno != EINTR) return errno;
  }
}

/* The line is in current.log whatever happens here; the first failure is
   noted there too, the rest only counted (journal_errors in state.json). */
static void journal_emit(struct ct_log *lg, struct ct_stream *s, const char *p, size_t n, char flag) {
  struct ct_journal *j = lg->journal;
  int err = ct_journal_send(j, s->priority, flag == 'P', p, n);
  if (!err || j->errors++ > 0) return;
  char msg[400];
  int k = snprintf(msg, sizeof msg, "cannot forward to the journal at %.200s: %s (further failures are only counted)",
                   j->path, strerror(err));
  if (k > 0) ct_log_line(lg, "ctcli", 'F', msg, strlen(msg));
}

static void stream_emit(struct ct_log *lg, struct ct_stream *s, const char *p, size_t n, char flag) {
  ct_log_line(lg, s->tag, flag, p, n);
  if (lg->journal) journal_emit(lg, s, p, n, flag);
  if (s->last && n) {
    size_t k = n < CT_STREAM_LAST - 1 ? n : CT_STREAM_LAST - 1;
    memcpy(s->last, p, k);
    s->last[k] = '\0';
  }
}

void ct_stream_feed(struct ct_log *lg, struct ct_stream *s) {
  for (int round = 0; round < 16; round++) {
    ssize_t r = read(s->fd, s->buf + s->len, sizeof s->buf - s->len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    s->len += (size_t)r;
    char *start = s->buf, *nl;
    while ((nl = memchr(start, '\n', s->len - (size_t)(start - s->buf)))) {
      stream_emit(lg, s, start, (size_t)(nl - start), 'F');
      start = nl + 1;
    }
    s->len -= (size_t)(start - s->buf);
    memmove(s->buf, start, s->len);
    if (s->len == sizeof s->buf) { /* a line longer than the buffer */
      stream_emit(lg, s, s->buf, s->len, 'P');
      s->len = 0;
    }
  }
  ct_log_flush(lg);
}

void ct_stream_drain(struct ct_log *lg, struct ct_stream *s) {
  ct_stream_feed(lg, s);
  if (s->len) stream_emit(lg, s, s->buf, s->len, 'F');
  s->len = 0;
  ct_log_flush(lg);
}
