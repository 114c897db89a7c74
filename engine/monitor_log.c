/* The monitor's log writer: timestamped stdout/stderr records in current.log, rotated by one rename. */
#include "monitor.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
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

/* One record, written at once: "<time> <stream> <F|P> <text>\n"; P: the
   line goes on in the next record of that stream (n <= CT_LINE_BUF). */
void ct_log_line(struct ct_log *lg, const char *tag, char flag, const char *p, size_t n) {
  char rec[CT_LINE_BUF + 128], ts[40];
  ct_mon_time(ts, ct_now());
  size_t len = (size_t)snprintf(rec, 128, "%s %s %c ", ts, tag, flag);
  memcpy(rec + len, p, n);
  rec[len + n] = '\n';
  len += n + 1;
  if (lg->max > 0 && lg->size + (long long)len > lg->max) ct_log_rotate(lg);
  if (lg->fd < 0 || write_all(lg->fd, rec, len) != 0)
    lg->errors++;
  else
    lg->size += (long long)len;
}

/* ---- the journal ---- */

/* The fields every entry carries, KEY=value lines (ctcli.runtime.monitor
   refuses a newline in them and keeps each below CT_JOURNAL_FIELD bytes). */
void ct_journal_open(struct ct_journal *j, const char *path, const char *name, const char *id) {
  j->addr.sun_family = AF_UNIX;
  snprintf(j->addr.sun_path, sizeof j->addr.sun_path, "%s", path);
  int n = name ? snprintf(j->fields, sizeof j->fields, "SYSLOG_IDENTIFIER=%s\nCONTAINER_NAME=%s\n", name, name) : 0;
  snprintf(j->fields + n, sizeof j->fields - (size_t)n, "CONTAINER_ID=%s\n", id);
  j->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (j->fd < 0) j->errors++;
}

/* One datagram: MESSAGE (a piece of one line: no newline in it), PRIORITY,
   the fixed fields, and docker's and conmon's mark of a line that goes on
   in the next entry. */
int ct_journal_send(struct ct_journal *j, int priority, int partial, const char *p, size_t n) {
  static const char more[] = "CONTAINER_PARTIAL_MESSAGE=true\n";
  char prio[16];
  snprintf(prio, sizeof prio, "\nPRIORITY=%d\n", priority);
  struct iovec iov[] = {{"MESSAGE=", 8}, {(void *)p, n}, {prio, strlen(prio)},
                        {j->fields, strlen(j->fields)}, {(void *)more, partial ? sizeof more - 1 : 0}};
  struct msghdr m = {.msg_name = &j->addr, .msg_namelen = sizeof j->addr, .msg_iov = iov, .msg_iovlen = 5};
  if (j->fd < 0) return EBADF;
  while (sendmsg(j->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
    if (errno != EINTR) return errno;
  return 0;
}

/* The line is in current.log whatever happens here; the first failure is
   noted there too, the rest only counted (journal_errors in state.json). */
static void journal_emit(struct ct_log *lg, struct ct_stream *s, const char *p, size_t n, char flag) {
  struct ct_journal *j = lg->journal;
  int err = ct_journal_send(j, s->priority, flag == 'P', p, n);
  if (!err || j->errors++ > 0) return;
  char msg[400];
  int k = snprintf(msg, sizeof msg, "cannot forward to the journal at %.200s: %s (further failures are only counted)",
                   j->addr.sun_path, strerror(err));
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
}

void ct_stream_drain(struct ct_log *lg, struct ct_stream *s) {
  ct_stream_feed(lg, s);
  if (s->len) stream_emit(lg, s, s->buf, s->len, 'F');
  s->len = 0;
}
