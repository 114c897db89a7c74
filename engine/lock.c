/* ct.lock: the root's exclusive lock, flock(2) on a file that names its holder.

   The lock belongs to the open file description, so it is never taken
   explicitly with LOCK_UN: a forked child that closes its copy of the
   descriptor must not drop the parent's lock. Closing our descriptor (or
   the process dying, even by SIGKILL) releases it. */
#include "int.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOCK_MT "ct.lock"

/* The holder's info is a line or two; anything longer is cut here. */
#define HOLDER_MAX (64 * 1024)

/* Retry step while waiting for a busy lock. */
#define WAIT_STEP 0.05

typedef struct {
  int fd; /* -1 once released */
} ct_lock;

static void sleep_seconds(double s) {
  struct timespec req = {(time_t)s, (long)((s - floor(s)) * 1e9)};
  while (nanosleep(&req, &req) != 0 && errno == EINTR) {
  }
}

static int try_flock(int fd, int op) {
  int r;
  do {
    r = flock(fd, op | LOCK_NB);
  } while (r != 0 && errno == EINTR);
  return r == 0 ? 0 : errno;
}

/* Pushes the file's current content (at most HOLDER_MAX bytes). A read
   error leaves what was read so far: the info is only for the message. */
static void push_holder_info(lua_State *L, int fd) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  off_t off = 0;
  while (off < HOLDER_MAX) {
    size_t want = LUAL_BUFFERSIZE;
    if ((off_t)want > HOLDER_MAX - off) want = (size_t)(HOLDER_MAX - off);
    char *p = luaL_prepbuffsize(&b, want);
    ssize_t n = pread(fd, p, want, off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    luaL_addsize(&b, (size_t)n);
    off += n;
  }
  luaL_pushresult(&b);
}

static int write_all_at(int fd, const char *p, size_t len) {
  off_t off = 0;
  while ((size_t)off < len) {
    ssize_t n = pwrite(fd, p + off, len - (size_t)off, off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    off += n;
  }
  return 0;
}

static void lock_close(ct_lock *lk) {
  if (lk->fd >= 0) {
    close(lk->fd);
    lk->fd = -1;
  }
}

/* acquire(path, info [, wait_seconds]) -> lock
   | nil, msg, errno [, holder_info] */
static int l_acquire(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t info_len;
  const char *info = luaL_checklstring(L, 2, &info_len);
  double wait = -1;
  if (!lua_isnoneornil(L, 3)) {
    wait = luaL_checknumber(L, 3);
    luaL_argcheck(L, wait >= 0 && isfinite(wait), 3, "expected a non-negative number");
  }

  ct_lock *lk = lua_newuserdatauv(L, sizeof *lk, 0);
  lk->fd = -1;
  luaL_setmetatable(L, LOCK_MT);

  lk->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
  if (lk->fd < 0) return ct_oserror(L, errno, path);

  double deadline = wait >= 0 ? ct_mono() + wait : 0;
  int err;
  for (;;) {
    err = try_flock(lk->fd, LOCK_EX);
    if (err != EWOULDBLOCK || wait < 0) break;
    double left = deadline - ct_mono();
    if (left <= 0) break;
    sleep_seconds(left < WAIT_STEP ? left : WAIT_STEP);
  }
  if (err == EWOULDBLOCK) {
    luaL_pushfail(L);
    lua_pushliteral(L, "locked");
    lua_pushinteger(L, EWOULDBLOCK);
    push_holder_info(L, lk->fd);
    lock_close(lk);
    return 4;
  }
  if (err != 0) {
    lock_close(lk);
    return ct_oserror(L, err, path);
  }

  err = ftruncate(lk->fd, 0) == 0 ? write_all_at(lk->fd, info, info_len) : errno;
  if (err != 0) {
    lock_close(lk);
    return ct_oserror(L, err, path);
  }
  return 1;
}

/* holder(path) -> the holder's info while the lock is held, else nil.
   Probes with a shared lock on a descriptor of its own, so two probes never
   see each other as the holder. The descriptor lives in a lock userdata so
   that a memory error while reading cannot leak it. */
static int l_holder(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  ct_lock *probe = lua_newuserdatauv(L, sizeof *probe, 0);
  probe->fd = -1;
  luaL_setmetatable(L, LOCK_MT);

  probe->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (probe->fd < 0) {
    if (errno == ENOENT) {
      luaL_pushfail(L);
      return 1;
    }
    return ct_oserror(L, errno, path);
  }
  int err = try_flock(probe->fd, LOCK_SH);
  if (err == 0) {
    lock_close(probe); /* closing drops our shared lock */
    luaL_pushfail(L);
    return 1;
  }
  if (err != EWOULDBLOCK) {
    lock_close(probe);
    return ct_oserror(L, err, path);
  }
  push_holder_info(L, probe->fd);
  lock_close(probe);
  return 1;
}

/* l:release() -> true; a second call does nothing. Also __gc and __close. */
static int lk_release(lua_State *L) {
  ct_lock *lk = luaL_checkudata(L, 1, LOCK_MT);
  lock_close(lk);
  return ct_true(L);
}

static int lk_tostring(lua_State *L) {
  ct_lock *lk = luaL_checkudata(L, 1, LOCK_MT);
  if (lk->fd >= 0)
    lua_pushfstring(L, "ct.lock (fd %d)", lk->fd);
  else
    lua_pushliteral(L, "ct.lock (released)");
  return 1;
}

static const luaL_Reg lock_methods[] = {
    {"release", lk_release},
    {NULL, NULL},
};

static const luaL_Reg lock_meta[] = {
    {"__gc", lk_release},
    {"__close", lk_release},
    {"__tostring", lk_tostring},
    {"__index", NULL},
    {NULL, NULL},
};

static const luaL_Reg lock_funcs[] = {
    {"acquire", l_acquire},
    {"holder", l_holder},
    {NULL, NULL},
};

int luaopen_ct_lock(lua_State *L) {
  luaL_newmetatable(L, LOCK_MT);
  luaL_setfuncs(L, lock_meta, 0);
  luaL_newlib(L, lock_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newlib(L, lock_funcs);
  return 1;
}
