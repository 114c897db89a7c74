#ifndef CT_MONITOR_H
#define CT_MONITOR_H
/* What ct.monitor.spawn (monitor_lua.c) and the monitor (monitor.c) share:
   the reserved argv[1], the configuration format and the protocol version.
   docs/architecture.md ("Monitor protocol") is the reference. */
#include "int.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

/* `<exe> __ctcli-monitor__ <config fd> <id>`: main() hands this to
   ct_monitor_main before any Lua state exists. The id is only for ps. */
#define CT_MONITOR_ARG "__ctcli-monitor__"

/* The configuration: NUL-terminated "key=value" records read from the
   descriptor named in argv[2]; the first is "ctcli-monitor-config=<n>".
   ctcli.runtime.monitor (Lua) encodes them: id, pid_file, restart, cgroup,
   journal, journal_name; numbers uid, gid, backoff_ms,
   backoff_max_ms, limit, quick_ms, log_max, log_keep, log_seq, runc_ms; repeated
   keys (create, start, delete) append to an argv. An unknown key is refused. */
#define CT_MONITOR_CONFIG_KEY "ctcli-monitor-config"
#define CT_MONITOR_CONFIG_VERSION 3 /* 2: fixed descriptors, log_seq; 3: one journal_name */
/* The descriptors the monitor inherits, always these: its configuration,
   the logs and state directories, and the report pipe to ct.monitor.spawn. */
enum { CT_MONITOR_CFG_FD = 3, CT_MONITOR_LOGS_FD, CT_MONITOR_STATE_FD, CT_MONITOR_READY_FD };

/* The control protocol: the monitor greets with "ctcli-monitor <n>\n". */
#define CT_MONITOR_PROTOCOL 1
#define CT_MONITOR_SOCKET "monitor.sock"
#define CT_MONITOR_STATE "state.json"
#define CT_MONITOR_LOG "current.log"

/* monitor.sock in the directory open at dfd, as /proc/self/fd/<dfd>/…
   (no limit on the directory's path length). */
static inline void ct_mon_addr(struct sockaddr_un *a, int dfd) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  snprintf(a->sun_path, sizeof a->sun_path, "/proc/self/fd/%d/%s", dfd, CT_MONITOR_SOCKET);
}

/* Runs the monitor; never returns to a Lua state (argc/argv as main's). */
int ct_monitor_main(int argc, char **argv);

/* ---- the monitor's log writer (monitor_log.c; engine-internal) ---- */
#include <stddef.h>

enum { CT_LINE_BUF = 8192, CT_STREAM_LAST = 512 };

/* Optional forwarding of the app's output to the journal (journald's
   native datagram protocol): one datagram per log record, so a piece of a
   long line is an entry of its own. */
enum { CT_JOURNAL_FIELD = 255 };
struct ct_journal {
  int fd; /* an unconnected SOCK_DGRAM socket; -1: off */
  long long errors;
  struct sockaddr_un addr;
  char fields[3 * CT_JOURNAL_FIELD + 64];
};

struct ct_log {
  int dirfd, fd;
  long long size, max, keep, errors;
  unsigned seq; /* the highest rotated file, <seq>.log (8 digits) */
  struct ct_journal *journal; /* NULL: not forwarding */
};

/* One pipe's reader: a line longer than CT_LINE_BUF goes out in pieces;
   with last set, the text of its latest record is kept there. */
struct ct_stream {
  int fd, priority; /* syslog priority of its lines in the journal */
  const char *tag;
  char *last;
  size_t len;
  char buf[CT_LINE_BUF];
};

void ct_mon_time(char out[40], double t); /* RFC 3339, UTC, nanoseconds */
/* Opens current.log in dirfd for append; seq: the highest rotated file
   there (the caller found it and removed those beyond keep). Failures
   count in errors; nothing stops. */
void ct_log_open(struct ct_log *lg, int dirfd, long long max, long long keep, unsigned seq);
void ct_log_line(struct ct_log *lg, const char *tag, char flag, const char *p, size_t n);
void ct_log_rotate(struct ct_log *lg);
/* Opens j's socket for the journal at path; name (NULL: none) is the
   entries' SYSLOG_IDENTIFIER and CONTAINER_NAME, id their CONTAINER_ID.
   Failures count in j->errors. */
void ct_journal_open(struct ct_journal *j, const char *path, const char *name, const char *id);
/* Sends one record; never blocks, never fails the caller: 0 or an errno. */
int ct_journal_send(struct ct_journal *j, int priority, int partial, const char *p, size_t n);
/* Logs the whole lines the pipe holds now; a partial one waits. */
void ct_stream_feed(struct ct_log *lg, struct ct_stream *s);
/* The same, then the partial rest as a line of its own (a run ended). */
void ct_stream_drain(struct ct_log *lg, struct ct_stream *s);

#endif
