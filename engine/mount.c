/* ct.fs.mount_overlay, umount, mounted: the overlayfs mounts of the layer store.

   An app's rootfs is an overlay of its image's extracted layers (lower,
   read-only) and its own upper directory. The options always turn off
   index, metacopy and redirect_dir: an upper is tarred into backups and
   compared by `diff`, so it must hold plain copies and no redirects, and
   the same lower is mounted under many uppers. mount(2) takes at most a
   page of options: when absolute lower paths do not fit, they are given
   relative to their longest common directory, made the working directory
   for the call. */
#include "int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#define OVL_OPTS_MAX 4096 /* the page mount(2) copies, NUL included */
#define OVL_FIXED ",index=off,metacopy=off,redirect_dir=off"

/* A path overlayfs can take in its options: absolute, no separator of the
   option string or of lowerdir, no escape. */
static const char *bad_path(const char *p) {
  if (p[0] != '/') return "is not an absolute path";
  if (strpbrk(p, ",:\\\n")) return "holds ',', ':', '\\' or a newline, which overlayfs options cannot carry";
  return NULL;
}

static int check_field(lua_State *L, const char *k, const char **out, int need) {
  int ty = lua_getfield(L, 1, k);
  if (ty == LUA_TNIL && !need) {
    lua_pop(L, 1);
    *out = NULL;
    return 0;
  }
  if (ty != LUA_TSTRING) luaL_error(L, "bad argument #1 to 'mount_overlay' ('%s' must be a path)", k);
  *out = lua_tostring(L, -1); /* anchored in the table */
  lua_pop(L, 1);
  const char *why = bad_path(*out);
  return why ? ct_error(L, EINVAL, "overlay %s %s: %s", k, *out, why) : 0;
}

/* The directory part shared by every lower ("/a/b" for "/a/b/x", "/a/b/y"). */
static size_t common_dir(const char **v, size_t n) {
  size_t len = strlen(v[0]);
  for (size_t i = 1; i < n; i++) {
    size_t j = 0;
    while (j < len && v[i][j] && v[i][j] == v[0][j]) j++;
    len = j;
  }
  /* back to a '/' that ends a directory of every lower */
  for (;;) {
    while (len > 0 && v[0][len] != '/') len--;
    int all = 1;
    for (size_t i = 0; i < n; i++) all &= v[i][len] == '/';
    if (all || len == 0) return len;
    len--;
  }
}

/* Pushes the options: lowerdir (each lower without its first `skip` bytes), upper, work, the fixed ones. */
static void push_options(lua_State *L, const char **lower, size_t n, size_t skip, const char *upper,
                         const char *work) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "lowerdir=");
  for (size_t i = 0; i < n; i++) {
    if (i) luaL_addchar(&b, ':');
    luaL_addstring(&b, lower[i] + skip);
  }
  if (upper) {
    luaL_addstring(&b, ",upperdir=");
    luaL_addstring(&b, upper);
    luaL_addstring(&b, ",workdir=");
    luaL_addstring(&b, work);
  }
  luaL_addstring(&b, OVL_FIXED);
  luaL_pushresult(&b);
}

/* mount_overlay{lower={dirs, top first}, upper=, work=, target=} -> true
   (without upper and work: a read-only overlay of the lowers) */
static int fs_mount_overlay(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  const char *upper, *work, *target;
  if (check_field(L, "upper", &upper, 0) || check_field(L, "work", &work, 0) ||
      check_field(L, "target", &target, 1))
    return 3;
  if (!upper != !work) luaL_error(L, "bad argument #1 to 'mount_overlay' (upper and work go together)");
  if (lua_getfield(L, 1, "lower") != LUA_TTABLE) /* 2 */
    luaL_error(L, "bad argument #1 to 'mount_overlay' ('lower' must be an array of paths)");
  size_t n = (size_t)lua_rawlen(L, 2);
  if (n == 0 || n > 500) luaL_error(L, "bad argument #1 to 'mount_overlay' (1 to 500 lowers)");
  const char **lower = lua_newuserdatauv(L, n * sizeof *lower, 0); /* 3 */
  for (size_t i = 0; i < n; i++) {
    if (lua_rawgeti(L, 2, (lua_Integer)i + 1) != LUA_TSTRING)
      luaL_error(L, "bad argument #1 to 'mount_overlay' (lower %d is not a path)", (int)i + 1);
    lower[i] = lua_tostring(L, -1);
    lua_pop(L, 1);
    const char *why = bad_path(lower[i]);
    if (why) return ct_error(L, EINVAL, "overlay lower %s: %s", lower[i], why);
  }
  push_options(L, lower, n, 0, upper, work); /* 4 */
  size_t len;
  lua_tolstring(L, 4, &len);
  char dir[PATH_MAX] = "";
  if (len + 1 > OVL_OPTS_MAX) {
    size_t c = common_dir(lower, n);
    if (c > 0 && c < sizeof dir) {
      memcpy(dir, lower[0], c);
      dir[c] = '\0';
      lua_pop(L, 1);
      push_options(L, lower, n, c + 1, upper, work);
      lua_tolstring(L, 4, &len);
    }
    if (len + 1 > OVL_OPTS_MAX)
      return ct_error(L, E2BIG, "overlay on %s: %d layers give options of %d bytes, more than %d",
                      target, (int)n, (int)len, OVL_OPTS_MAX - 1);
  }
  int cwd = -1, err = 0;
  if (dir[0]) {
    cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (chdir(dir) != 0) {
      err = errno;
      if (cwd >= 0) close(cwd);
      return ct_error(L, err, "overlay on %s: %s: %s", target, dir, strerror(err));
    }
  }
  unsigned long flags = upper ? 0 : MS_RDONLY;
  if (mount("overlay", target, "overlay", flags, lua_tostring(L, 4)) != 0) err = errno;
  if (dir[0]) {
    if (cwd < 0 || fchdir(cwd) != 0) (void)chdir("/");
    if (cwd >= 0) close(cwd);
  }
  if (err) return ct_error(L, err, "mount overlay on %s: %s", target, strerror(err));
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
    {"mount_overlay", fs_mount_overlay},
    {"umount", fs_umount},
    {"mounted", fs_mounted},
    {NULL, NULL},
};

int luaopen_ct_fs_mount(lua_State *L) {
  luaL_setfuncs(L, mount_funcs, 0);
  return 0;
}
