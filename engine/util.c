/* Small helpers every engine file shares (see int.h): writes, errno, the monotonic clock. */
#include "int.h"

#include <errno.h>
#include <time.h>
#include <unistd.h>

void close_keep_errno(int fd) {
  int e = errno;
  if (fd >= 0) close(fd);
  errno = e;
}

int last_err(void) { return errno ? errno : EIO; }

int write_all(int fd, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return last_err();
    if (n == 0) return EIO;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

double ct_mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int ct_opt_special(lua_State *L, int opts) {
  static const char *const names[] = {"refuse", "skip", NULL};
  lua_getfield(L, opts, "special");
  int v = lua_isnil(L, -1) ? CT_SPECIAL_REFUSE : luaL_checkoption(L, -1, NULL, names);
  lua_pop(L, 1);
  return v;
}
