/* ct.fs.mount, umount, mounted: the mount system calls the layer store's overlays need
   (their options are built in Lua: ctcli.store.layers.mount_overlay). */
#include "int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

/* mount(source, target, fstype [, data [, {rdonly=, cwd=}]]) -> true;
   with cwd, mount(2) runs in that directory (relative paths in data are
   resolved there) and the working directory is then restored */
static int fs_mount(lua_State *L) {
  const char *source = luaL_checkstring(L, 1);
  const char *target = luaL_checkstring(L, 2);
  const char *fstype = luaL_checkstring(L, 3);
  const char *data = luaL_optstring(L, 4, NULL);
  unsigned long flags = 0;
  const char *dir = NULL;
  if (!lua_isnoneornil(L, 5)) {
    luaL_checktype(L, 5, LUA_TTABLE);
    if (lua_getfield(L, 5, "rdonly") != LUA_TNIL && lua_toboolean(L, -1)) flags |= MS_RDONLY;
    if (lua_getfield(L, 5, "cwd") != LUA_TNIL) dir = luaL_checkstring(L, -1); /* stays on the stack */
  }
  int cwd = -1, err = 0;
  if (dir) {
    cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (chdir(dir) != 0) {
      err = errno;
      if (cwd >= 0) close(cwd);
      return ct_error(L, err, "mount %s on %s: %s: %s", fstype, target, dir, strerror(err));
    }
  }
  if (mount(source, target, fstype, flags, data) != 0) err = errno;
  if (dir) {
    if (cwd < 0 || fchdir(cwd) != 0) (void)chdir("/");
    if (cwd >= 0) close(cwd);
  }
  if (err) return ct_error(L, err, "mount %s on %s: %s", fstype, target, strerror(err));
  return ct_true(L);
}

/* umount(target [, {detach=true}]) -> true; a symlink at target is not followed */
static int fs_umount(lua_State *L) {
  const char *target = luaL_checkstring(L, 1);
  int flags = UMOUNT_NOFOLLOW;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "detach");
    if (lua_toboolean(L, -1)) flags |= MNT_DETACH;
    lua_pop(L, 1);
  }
  if (umount2(target, flags) != 0) return ct_error(L, errno, "umount %s: %s", target, strerror(errno));
  return ct_true(L);
}

/* mounted(path) -> whether path (symlinks followed) is the root of a
   mount: statx's STATX_ATTR_MOUNT_ROOT, else a device other than its
   parent's (is_mount_root) */
static int fs_mounted(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int fd = open(path, O_PATH | O_CLOEXEC), pfd = -1;
  struct stat st, pst;
  int err = fd < 0 || fstat(fd, &st) != 0 ? last_err() : 0;
  if (!err && S_ISDIR(st.st_mode)) pfd = openat(fd, "..", O_PATH | O_CLOEXEC);
  if (!err && S_ISDIR(st.st_mode) && (pfd < 0 || fstat(pfd, &pst) != 0)) err = last_err();
  int yes = !err && is_mount_root(fd, pfd >= 0 ? &pst : NULL, &st);
  if (fd >= 0) close(fd);
  if (pfd >= 0) close(pfd);
  if (err && err != ENOENT && err != ENOTDIR) return ct_oserror(L, err, path);
  lua_pushboolean(L, yes);
  return 1;
}

static const luaL_Reg mount_funcs[] = {
    {"mount", fs_mount},
    {"umount", fs_umount},
    {"mounted", fs_mounted},
    {NULL, NULL},
};

int luaopen_ct_fs_mount(lua_State *L) {
  luaL_setfuncs(L, mount_funcs, 0);
  return 0;
}
