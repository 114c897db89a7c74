/* ct.monitor: starts a container's monitor (monitor.c, this same binary
   re-executed) detached from us, and talks to a running one over its
   control socket. The configuration comes encoded from Lua (ctcli.runtime.monitor). */
#include "ct.h"
#include "monitor.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* ---------- spawning ---------- */

/* Reads up to a newline from fd into buf (NUL-terminated, without the
   newline) before deadline. 0, or an errno (ETIMEDOUT; EPIPE at EOF). */
static int read_line(int fd, char *buf, size_t cap, size_t *len, double deadline) {
  for (;;) {
    char *nl = memchr(buf, '\n', *len);
    if (nl) {
      *nl = '\0';
      return 0;
    }
    if (*len >= cap - 1) return EMSGSIZE;
    double left = deadline - ct_mono();
    if (left <= 0) return ETIMEDOUT;
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, left > 3600 ? 3600000 : (int)(left * 1000) + 1);
    if (r < 0 && errno != EINTR) return errno;
    if (r <= 0) continue;
    ssize_t n = read(fd, buf + *len, cap - 1 - *len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return errno;
    if (n == 0) return EPIPE;
    *len += (size_t)n;
  }
}

/* The report of the monitor mpid: "ready <init pid>" or "error <message>". */
static int read_report(lua_State *L, int fd, pid_t mpid, double timeout) {
  char buf[1024];
  size_t len = 0;
  long long v;
  int err = read_line(fd, buf, sizeof buf, &len, ct_mono() + timeout);
  if (err == ETIMEDOUT)
    return ct_error(L, err, "the monitor (pid %d) was not ready after %.14gs", (int)mpid, timeout);
  if (err == EPIPE) return ct_error(L, EIO, "the monitor exited before it was ready");
  if (err) return ct_oserror(L, err, "the monitor's report");
  if (strncmp(buf, "error ", 6) == 0) return ct_error(L, EIO, "%s", buf + 6);
  if (sscanf(buf, "ready %lld", &v) != 1) return ct_error(L, EPROTO, "the monitor's report: %s", buf);
  lua_pushinteger(L, mpid);
  lua_pushinteger(L, v);
  return 2;
}

/* spawn(id, config, logs, state, timeout) -> monitor pid, init pid | nil,
   msg, errno. config: the records ctcli.runtime.monitor encodes (monitor.h);
   logs, state: ct.fs.Dir; timeout: seconds to wait for the report. The
   monitor runs in a session of its own, stdio on /dev/null, the four
   descriptors of monitor.h on 3..6, and outlives us. */
static int m_spawn(lua_State *L) {
  const char *id = luaL_checkstring(L, 1);
  size_t clen;
  const char *cfg = luaL_checklstring(L, 2, &clen);
  int logs = ct_testdir(L, 3), state = ct_testdir(L, 4);
  luaL_argcheck(L, logs >= 0, 3, "a ct.fs.Dir expected");
  luaL_argcheck(L, state >= 0, 4, "a ct.fs.Dir expected");
  double timeout = luaL_checknumber(L, 5);
  luaL_argcheck(L, timeout > 0 && isfinite(timeout), 5, "a positive number of seconds expected");
  /* The path, not /proc/self/exe, so a binary run by valgrind starts itself. */
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n < 0) return ct_oserror(L, errno, "/proc/self/exe");
  exe[n] = '\0';
  if (n > 10 && strcmp(exe + n - 10, " (deleted)") == 0) snprintf(exe, sizeof exe, "/proc/self/exe");
  int null = open("/dev/null", O_RDWR | O_CLOEXEC), mfd = memfd_create("ctcli-monitor-config", MFD_CLOEXEC);
  int ready[2] = {-1, -1}, err = 0;
  pid_t mpid = -1;
  const char *what = null < 0 ? "/dev/null" : mfd < 0 ? "memfd_create" : "monitor config";
  if (null < 0 || mfd < 0 || (err = write_all(mfd, cfg, clen)) != 0) {
    err = err ? err : errno;
  } else if (pipe2(ready, O_CLOEXEC) != 0) {
    err = errno;
    what = "pipe";
  } else {
    char cfd[16];
    snprintf(cfd, sizeof cfd, "%d", CT_MONITOR_CFG_FD);
    const char *argv[] = {exe, CT_MONITOR_ARG, cfd, id, NULL};
    int fds[] = {null, null, null, mfd, logs, state, ready[1]};
    if ((mpid = ct_proc_start(argv, NULL, NULL, fds, 7, CT_START_SESSION, &err, &what)) >= 0) err = 0;
  }
  close_keep_errno(null);
  close_keep_errno(mfd);
  close_keep_errno(ready[1]);
  if (err) {
    close_keep_errno(ready[0]);
    return ct_oserror(L, err, what);
  }
  int r = read_report(L, ready[0], mpid, timeout);
  close(ready[0]);
  return r;
}

/* ---------- requests ---------- */

/* request(state, line [, timeout_ms]) -> reply, version | nil, msg, errno.
   state: the ct.fs.Dir holding monitor.sock. */
static int m_request(lua_State *L) {
  lua_settop(L, 3);
  int dfd = ct_testdir(L, 1);
  luaL_argcheck(L, dfd >= 0, 1, "a ct.fs.Dir expected");
  struct sockaddr_un a;
  ct_mon_addr(&a, dfd);
  lua_getiuservalue(L, 1, 1);
  const char *shown = lua_pushfstring(L, "%s/%s", lua_tostring(L, -1), CT_MONITOR_SOCKET);
  size_t len;
  const char *line = luaL_checklstring(L, 2, &len);
  luaL_argcheck(L, len > 0 && len < 250 && strlen(line) == len && !strchr(line, '\n'), 2,
                "a request is one line of 1 to 249 bytes");
  lua_Integer ms = luaL_optinteger(L, 3, 5000);
  luaL_argcheck(L, ms > 0 && ms <= 3600000, 3, "timeout_ms must be 1 to 3600000");
  double deadline = ct_mono() + (double)ms / 1000;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ct_oserror(L, errno, "socket");
  char buf[4096];
  size_t got = 0;
  int version = 0, err = 0;
  const char *stage = shown;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) err = errno;
  if (!err) {
    stage = "the monitor's greeting";
    err = read_line(fd, buf, sizeof buf, &got, deadline);
  }
  if (!err && sscanf(buf, "ctcli-monitor %d", &version) != 1) err = EPROTO;
  if (!err) {
    got -= strlen(buf) + 1;
    memmove(buf, buf + strlen(buf) + 1, got);
    stage = "the request";
    char out[256];
    int n = snprintf(out, sizeof out, "%s\n", line);
    if (send(fd, out, (size_t)n, MSG_NOSIGNAL) != n) err = errno ? errno : EIO;
  }
  if (!err) {
    stage = "the monitor's reply";
    err = read_line(fd, buf, sizeof buf, &got, deadline);
  }
  close(fd);
  if (err) return ct_oserror(L, err, stage);
  lua_pushstring(L, buf);
  lua_pushinteger(L, version);
  return 2;
}

static const luaL_Reg monitor_funcs[] = {
    {"spawn", m_spawn},
    {"request", m_request},
    {NULL, NULL},
};

int luaopen_ct_monitor(lua_State *L) {
  luaL_newlib(L, monitor_funcs);
  lua_pushinteger(L, CT_MONITOR_PROTOCOL);
  lua_setfield(L, -2, "protocol");
  lua_pushinteger(L, CT_MONITOR_CONFIG_VERSION);
  lua_setfield(L, -2, "config_version");
  return 1;
}
