/* ct.lock: the root's exclusive lock, flock(2) on a file that names its holder.

   The lock belongs to the open file description, so it is never taken
   explicitly with LOCK_UN: a forked child that closes its copy of the
   descriptor must not drop the parent's lock. Closing our descriptor (or
   the process dying, even by SIGKILL) releases it. */
#include "int.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#define LOCK_MT "ct.lock"

typedef struct {
  int fd; /* -1 once released */
} ct_lock;

/* acquire(path, info) -> lock | false while another holds it
   | nil, msg, errno. One try: waiting, and reading the holder's info back
   out of the file, are the caller's (ctcli.base.lock). */
static int l_acquire(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t info_len;
  const char *info = luaL_checklstring(L, 2, &info_len);

  ct_lock *lk = lua_newuserdatauv(L, sizeof *lk, 0);
  lk->fd = -1;
  luaL_setmetatable(L, LOCK_MT);

  lk->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
  if (lk->fd < 0) return ct_oserror(L, errno, path);
  /* LOCK_NB never sleeps, so it is never interrupted. */
  int err = flock(lk->fd, LOCK_EX | LOCK_NB) == 0 ? 0 : errno;
  if (err == EWOULDBLOCK) {
    ct_close_fd(&lk->fd);
    lua_pushboolean(L, 0);
    return 1;
  }
  /* The descriptor is fresh, at offset 0: the info replaces the old one. */
  if (!err) err = ftruncate(lk->fd, 0) == 0 ? write_all(lk->fd, info, info_len) : errno;
  if (err != 0) {
    ct_close_fd(&lk->fd);
    return ct_oserror(L, err, path);
  }
  return 1;
}

/* l:release() -> true; a second call does nothing. Also __gc and __close. */
static int lk_release(lua_State *L) {
  ct_lock *lk = luaL_checkudata(L, 1, LOCK_MT);
  ct_close_fd(&lk->fd);
  return ct_true(L);
}

static const luaL_Reg lock_methods[] = {
    {"release", lk_release},
    {NULL, NULL},
};

static const luaL_Reg lock_funcs[] = {
    {"acquire", l_acquire},
    {NULL, NULL},
};

int luaopen_ct_lock(lua_State *L) {
  ct_class(L, LOCK_MT, lock_methods, lk_release, NULL);
  luaL_newlib(L, lock_funcs);
  return 1;
}
