/* ct.fs: files, directories and paths by name (the tree walks are in walk.c and copytree.c).

   The *_beneath functions resolve paths with openat2(RESOLVE_IN_ROOT |
   RESOLVE_NO_MAGICLINKS): `..`, absolute paths and symlinks (absolute or
   relative) all stay inside the given directory, as in a chroot. */
#include "ct.h"
#include "int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/openat2.h>

#define FD_GUARD_MT "ct.fs.fdguard"



/* ---- small helpers ---------------------------------------------------- */

mode_t check_mode(lua_State *L, int arg) {
  lua_Integer m = luaL_checkinteger(L, arg);
  luaL_argcheck(L, m >= 0 && m <= 07777, arg, "mode out of range (0 .. 07777)");
  return (mode_t)m;
}

mode_t opt_mode(lua_State *L, int arg, mode_t def) {
  if (lua_isnoneornil(L, arg)) return def;
  return check_mode(L, arg);
}

/* uid/gid; -1 leaves it unchanged, as chown(2) does. */
unsigned check_id(lua_State *L, int arg) {
  lua_Integer v = luaL_checkinteger(L, arg);
  luaL_argcheck(L, v >= -1 && v < (lua_Integer)UINT32_MAX, arg, "id out of range");
  return (unsigned)v;
}

/* A tree's root path without trailing slashes ("/" stays): "link/" would
   resolve the symlink, and tree functions never follow one. The argument
   is replaced by it. */
const char *check_tree_path(lua_State *L, int arg) {
  size_t len;
  const char *p = luaL_checklstring(L, arg, &len);
  while (len > 1 && p[len - 1] == '/') len--;
  lua_pushlstring(L, p, len);
  lua_replace(L, arg);
  return lua_tostring(L, arg);
}

/* nil, "<a> <sep> <b>: strerror(err)", err */
static int pair_error(lua_State *L, int err, const char *a, const char *sep, const char *b) {
  return ct_error(L, err, "%s %s %s: %s", a, sep, b, strerror(err));
}

/* A descriptor owned by a userdata on the stack, closed by __gc if a Lua
   error (out of memory while building a string) unwinds past us. */
static int *fd_guard(lua_State *L) {
  int *g = lua_newuserdatauv(L, sizeof *g, 0);
  *g = -1;
  luaL_setmetatable(L, FD_GUARD_MT);
  return g;
}

static void fd_guard_close(int *g) {
  if (*g >= 0) close_keep_errno(*g);
  *g = -1;
}

/* Closes the guarded descriptor and returns nil, "<what>: strerror", err. */
static int fd_guard_fail(lua_State *L, int *g, int err, const char *what) {
  fd_guard_close(g);
  return ct_oserror(L, err, what);
}

static int fd_guard_gc(lua_State *L) {
  fd_guard_close(luaL_checkudata(L, 1, FD_GUARD_MT));
  return 0;
}

/* malloc'd "root/rel" (just root when rel is empty), or NULL. */
char *join_path(const char *root, const char *rel) {
  size_t a = strlen(root), b = rel ? strlen(rel) : 0;
  char *p = malloc(a + b + 2);
  if (!p) return NULL;
  memcpy(p, root, a);
  if (b) {
    size_t i = a;
    if (a > 0 && root[a - 1] != '/') p[i++] = '/';
    if (rel[0] == '/' && i > 0 && p[i - 1] == '/') rel++, b--;
    memcpy(p + i, rel, b);
    p[i + b] = '\0';
  } else {
    p[a] = '\0';
  }
  return p;
}


int fserr_set(struct fserr *e, int err, const char *root, const char *rel, const char *msg) {
  if (e->err) return e->err; /* keep the first failure */
  e->err = err ? err : EIO;
  e->path = join_path(root, rel);
  e->fallback = root;
  e->msg = msg;
  return e->err;
}

int fserr_push(lua_State *L, struct fserr *e) {
  const char *path = e->path ? e->path : e->fallback;
  luaL_pushfail(L);
  lua_pushfstring(L, "%s: %s", path, e->msg ? e->msg : strerror(e->err));
  lua_pushinteger(L, e->err);
  free(e->path);
  e->path = NULL;
  return 3;
}

/* readlinkat into a malloc'd string of any length. */
char *readlink_alloc(int dirfd, const char *name) {
  size_t cap = 256;
  for (;;) {
    char *buf = malloc(cap);
    if (!buf) return NULL;
    ssize_t n = readlinkat(dirfd, name, buf, cap);
    if (n < 0) {
      free(buf);
      return NULL;
    }
    if ((size_t)n < cap) {
      buf[n] = '\0';
      return buf;
    }
    free(buf);
    if (cap > SIZE_MAX / 2) {
      errno = ENAMETOOLONG;
      return NULL;
    }
    cap *= 2;
  }
}

const char *type_name(mode_t m) {
  switch (m & S_IFMT) {
  case S_IFREG: return "file";
  case S_IFDIR: return "dir";
  case S_IFLNK: return "link";
  case S_IFIFO: return "fifo";
  case S_IFSOCK: return "socket";
  case S_IFCHR: return "char";
  case S_IFBLK: return "block";
  default: return "unknown";
  }
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

void push_stat(lua_State *L, const struct stat *st) {
  lua_createtable(L, 0, 9);
  lua_pushstring(L, type_name(st->st_mode));
  lua_setfield(L, -2, "type");
  set_int(L, "mode", st->st_mode & 07777);
  set_int(L, "size", (lua_Integer)st->st_size);
  set_int(L, "uid", st->st_uid);
  set_int(L, "gid", st->st_gid);
  set_int(L, "mtime", (lua_Integer)st->st_mtim.tv_sec);
  set_int(L, "ino", (lua_Integer)st->st_ino);
  set_int(L, "dev", (lua_Integer)st->st_dev);
  set_int(L, "nlink", (lua_Integer)st->st_nlink);
}

/* Opens the directory of a host path for writing `base` in it (base points
   into path). Returns 0 or an errno. */
static int open_parent(const char *path, int *dirfd, const char **base) {
  *dirfd = -1;
  const char *slash = strrchr(path, '/');
  *base = slash ? slash + 1 : path;
  if (!**base) return path[0] ? EISDIR : ENOENT;
  if ((*base)[0] == '.' && ((*base)[1] == '\0' || ((*base)[1] == '.' && (*base)[2] == '\0')))
    return EISDIR;
  if (!slash) {
    *dirfd = open(".", DIR_FLAGS);
  } else if (slash == path) {
    *dirfd = open("/", DIR_FLAGS);
  } else {
    char *dir = strndup(path, (size_t)(slash - path));
    if (!dir) return ENOMEM;
    *dirfd = open(dir, DIR_FLAGS);
    free(dir);
  }
  return *dirfd < 0 ? last_err() : 0;
}

/* ---- openat2 beneath a directory --------------------------------------- */

static int openat2_in_root(int rootfd, const char *rel, int flags) {
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = (uint64_t)(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  long fd;
  int tries = 0;
  do {
    fd = syscall(SYS_openat2, rootfd, rel, &how, sizeof how);
  } while (fd < 0 && (errno == EINTR || (errno == EAGAIN && ++tries < 64)));
  return (int)fd;
}

/* "dir/rel" on the stack, for messages. */
static const char *push_beneath_name(lua_State *L, const char *dir, const char *rel) {
  size_t dl = strlen(dir);
  if (rel[0] == '/' || (dl && dir[dl - 1] == '/')) return lua_pushfstring(L, "%s%s", dir, rel);
  return lua_pushfstring(L, "%s/%s", dir, rel);
}

static const char MSG_NOT_REG[] = "not a regular file";

/* Opens the regular file at rel inside dir for reading, never opening
   anything else (a fifo, a device): the path is resolved with O_PATH and
   reopened through /proc only once it is known to be a regular file.
   Returns 0, or an errno with *msg set when it is not strerror's. */
static int open_reg_beneath(const char *dir, const char *rel, int *out, struct stat *st,
                            const char **msg) {
  *msg = NULL;
  *out = -1;
  memset(st, 0, sizeof *st);
  int root = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) return last_err();
  int pfd = openat2_in_root(root, rel, O_PATH);
  if (pfd < 0) {
    close_keep_errno(root);
    return last_err();
  }
  int err = 0;
  if (fstat(pfd, st) != 0) {
    err = last_err();
  } else if (S_ISDIR(st->st_mode)) {
    err = EISDIR;
  } else if (!S_ISREG(st->st_mode)) {
    err = EINVAL;
    *msg = MSG_NOT_REG;
  } else {
    char proc[48];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", pfd);
    int fd = open(proc, O_RDONLY | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
      /* no /proc: resolve again and check it is still the same file */
      struct stat again;
      fd = openat2_in_root(root, rel, O_RDONLY | O_NOCTTY | O_NONBLOCK);
      if (fd >= 0 && (fstat(fd, &again) != 0 || again.st_ino != st->st_ino ||
                      again.st_dev != st->st_dev)) {
        close(fd);
        fd = -1;
        errno = ESTALE;
      }
    }
    if (fd < 0) err = last_err();
    else *out = fd;
  }
  close(pfd);
  close(root);
  return err;
}

/* ---- reading into Lua -------------------------------------------------- */

/* Reads up to limit bytes (to EOF) and pushes them. Returns 0, or an errno
   with nothing pushed. */
int push_read(lua_State *L, int fd, size_t limit) { return push_read_sized(L, fd, limit, 0); }

/* With a size, the first read asks for size + 1 bytes (a small file then
   fits the buffer on the C stack, a larger one needs one allocation instead
   of a 64 KiB chunk) and a short read is followed by a one-byte read into
   the room left, to see the end; a file that grew goes on in chunks. */
int push_read_sized(lua_State *L, int fd, size_t limit, size_t size) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t total = 0;
  size_t chunk = size > 0 && size < READ_CHUNK ? size + 1 : READ_CHUNK;
  while (total < limit) {
    size_t want = limit - total < chunk ? limit - total : chunk;
    char *p = luaL_prepbuffsize(&b, want);
    ssize_t n = read(fd, p, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      luaL_pushresult(&b);
      lua_pop(L, 1);
      return e;
    }
    if (n == 0) break;
    luaL_addsize(&b, (size_t)n);
    total += (size_t)n;
    chunk = size > 0 && (size_t)n < want ? 1 : READ_CHUNK;
  }
  luaL_pushresult(&b);
  return 0;
}

/* ---- the Lua functions ------------------------------------------------- */

/* stat(path), lstat(path) -> table | nil, msg, errno */
static int stat_common(lua_State *L, int follow) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if ((follow ? stat(path, &st) : lstat(path, &st)) != 0) return ct_oserror(L, errno, path);
  push_stat(L, &st);
  return 1;
}

static int fs_stat(lua_State *L) { return stat_common(L, 1); }
static int fs_lstat(lua_State *L) { return stat_common(L, 0); }

/* exists(path) -> boolean (lstat; a dangling symlink exists). A failure
   other than "no such entry" (EACCES, ELOOP ...) is nil, msg, errno. */
static int fs_exists(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (lstat(path, &st) == 0) {
    return ct_true(L);
  }
  if (errno == ENOENT || errno == ENOTDIR) {
    lua_pushboolean(L, 0);
    return 1;
  }
  return ct_oserror(L, errno, path);
}

/* mkdir(2), then the exact mode (the umask does not apply). */
static int mkdir_exact(const char *path, mode_t mode) {
  if (mkdir(path, mode) != 0) return last_err();
  int fd = open(path, DIR_FLAGS | O_NOFOLLOW);
  if (fd < 0) return last_err();
  struct stat st;
  int err = 0;
  if (fstat(fd, &st) != 0 || ((st.st_mode & 07777) != mode && fchmod(fd, mode) != 0)) err = last_err();
  close(fd);
  return err;
}

/* mkdir(path [, mode=0755 [, parents=false]]) -> true */
static int fs_mkdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  mode_t mode = opt_mode(L, 2, 0755);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TBOOLEAN);
  int parents = lua_toboolean(L, 3);
  if (!parents) {
    int err = mkdir_exact(path, mode);
    if (err) return ct_oserror(L, err, path);
    return ct_true(L);
  }
  char *buf = strdup(path);
  if (!buf) return ct_oserror(L, ENOMEM, path);
  size_t n = strlen(buf);
  int err = 0;
  for (size_t i = 1; i <= n && !err; i++) {
    if (i < n && (buf[i] != '/' || buf[i - 1] == '/')) continue;
    char saved = buf[i];
    buf[i] = '\0';
    err = mkdir_exact(buf, mode);
    if (err == EEXIST) {
      struct stat st;
      err = stat(buf, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? 0 : (i < n ? ENOTDIR : EEXIST);
    }
    if (!err) buf[i] = saved;
  }
  if (err) {
    ct_oserror(L, err, buf);
    free(buf);
    return 3;
  }
  free(buf);
  return ct_true(L);
}

/* Copies the open regular file `in` to host path dst via temp + rename. */
static int copy_to_path(lua_State *L, int in, const char *dst, mode_t mode) {
  int dirfd;
  const char *base;
  int err = open_parent(dst, &dirfd, &base);
  if (err) return ct_oserror(L, err, dst);
  err = atomic_write_at(dirfd, base, NULL, 0, in, mode);
  close(dirfd);
  if (err) return ct_oserror(L, err, dst);
  return ct_true(L);
}

/* copyfile(src, dst [, mode]) -> true; mode defaults to src's rwx bits */
static int fs_copyfile(lua_State *L) {
  const char *src = luaL_checkstring(L, 1);
  const char *dst = luaL_checkstring(L, 2);
  int has_mode = !lua_isnoneornil(L, 3);
  mode_t mode = opt_mode(L, 3, 0);
  int *g = fd_guard(L);
  *g = open(src, O_RDONLY | O_NOCTTY | O_CLOEXEC);
  if (*g < 0) return fd_guard_fail(L, g, errno, src);
  struct stat st;
  if (fstat(*g, &st) != 0) return fd_guard_fail(L, g, errno, src);
  if (!S_ISREG(st.st_mode)) {
    fd_guard_close(g);
    return S_ISDIR(st.st_mode) ? ct_oserror(L, EISDIR, src)
                               : ct_error(L, EINVAL, "%s: %s", src, MSG_NOT_REG);
  }
  int n = copy_to_path(L, *g, dst, has_mode ? mode : (st.st_mode & 0777));
  fd_guard_close(g);
  return n;
}

/* rename(a, b) -> true */
static int fs_rename(lua_State *L) {
  const char *a = luaL_checkstring(L, 1);
  const char *b = luaL_checkstring(L, 2);
  if (rename(a, b) != 0) return pair_error(L, errno, a, "->", b);
  return ct_true(L);
}

/* exchange(a, b) -> true: both swap atomically (both must exist) */
static int fs_exchange(lua_State *L) {
  const char *a = luaL_checkstring(L, 1);
  const char *b = luaL_checkstring(L, 2);
  if (renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0)
    return pair_error(L, errno, a, "<->", b);
  return ct_true(L);
}

/* symlink(target, path) -> true */
static int fs_symlink(lua_State *L) {
  const char *target = luaL_checkstring(L, 1);
  const char *path = luaL_checkstring(L, 2);
  if (symlink(target, path) != 0) return ct_oserror(L, errno, path);
  return ct_true(L);
}

/* readlink(path) -> target */
static int fs_readlink(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char *t = readlink_alloc(AT_FDCWD, path);
  if (!t) return ct_oserror(L, errno, path);
  lua_pushstring(L, t);
  free(t);
  return 1;
}

/* realpath(path) -> absolute path without symlinks, ".", ".." */
static int fs_realpath(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char *r = realpath(path, NULL);
  if (!r) return ct_oserror(L, errno, path);
  lua_pushstring(L, r);
  free(r);
  return 1;
}

/* link(existing, new) -> true */
static int fs_link(lua_State *L) {
  const char *existing = luaL_checkstring(L, 1);
  const char *path = luaL_checkstring(L, 2);
  if (link(existing, path) != 0) return pair_error(L, errno, path, "->", existing);
  return ct_true(L);
}

/* unlink(path) -> true */
static int fs_unlink(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (unlink(path) != 0) return ct_oserror(L, errno, path);
  return ct_true(L);
}

/* rmdir(path) -> true */
static int fs_rmdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (rmdir(path) != 0) return ct_oserror(L, errno, path);
  return ct_true(L);
}

/* dir(path) -> sorted array of names (no "." / "..") */
static int fs_dir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int fd = open(path, DIR_FLAGS);
  if (fd < 0) return ct_oserror(L, errno, path);
  struct names ns;
  int err = read_names(fd, &ns);
  close(fd);
  if (err) return ct_oserror(L, err, path);
  lua_createtable(L, ns.n > INT_MAX ? INT_MAX : (int)ns.n, 0);
  for (size_t i = 0; i < ns.n; i++) {
    lua_pushstring(L, ns.v[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  names_free(&ns);
  return 1;
}

/* read(path [, offset [, length]]) -> string; a negative offset counts
   from the end (clamped at 0) */
static int fs_read(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_Integer off = luaL_optinteger(L, 2, 0);
  int has_len = !lua_isnoneornil(L, 3);
  lua_Integer len = luaL_optinteger(L, 3, 0);
  luaL_argcheck(L, len >= 0, 3, "negative length");
  size_t limit = has_len ? (size_t)len : SIZE_MAX;
  int *g = fd_guard(L);
  *g = open(path, O_RDONLY | O_NOCTTY | O_CLOEXEC);
  if (*g < 0) return fd_guard_fail(L, g, errno, path);
  struct stat st;
  if (fstat(*g, &st) != 0) return fd_guard_fail(L, g, errno, path);
  int err = 0;
  if (off < 0 && (!S_ISREG(st.st_mode) || st.st_size == 0)) {
    /* unknown size (a pipe; procfs says 0): read it all, keep the tail */
    if ((err = push_read(L, *g, SIZE_MAX))) return fd_guard_fail(L, g, err, path);
    size_t total;
    const char *s = lua_tolstring(L, -1, &total);
    lua_Unsigned back = (lua_Unsigned)0 - (lua_Unsigned)off;
    size_t start = back >= total ? 0 : total - (size_t)back;
    size_t n = total - start < limit ? total - start : limit;
    lua_pushlstring(L, s + start, n);
    fd_guard_close(g);
    return 1;
  }
  if (off < 0) off = st.st_size + off < 0 ? 0 : st.st_size + off;
  if (off > 0 && lseek(*g, (off_t)off, SEEK_SET) < 0) {
    if (errno != ESPIPE) return fd_guard_fail(L, g, errno, path);
    if ((err = push_read(L, *g, (size_t)off))) return fd_guard_fail(L, g, err, path);
    lua_pop(L, 1);
  }
  size_t size = S_ISREG(st.st_mode) && st.st_size > off ? (size_t)(st.st_size - off) : 0;
  if ((err = push_read_sized(L, *g, limit, size))) return fd_guard_fail(L, g, err, path);
  fd_guard_close(g);
  return 1;
}

/* write_atomic(path, data [, mode=0644]) -> true */
static int fs_write_atomic(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  mode_t mode = opt_mode(L, 3, 0644);
  int dirfd;
  const char *base;
  int err = open_parent(path, &dirfd, &base);
  if (err) return ct_oserror(L, err, path);
  err = atomic_write_at(dirfd, base, data, len, -1, mode);
  close(dirfd);
  if (err) return ct_oserror(L, err, path);
  return ct_true(L);
}

/* append(path, data [, mode=0644]) -> true; O_APPEND|O_CREAT, one write */
static int fs_append(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  mode_t mode = opt_mode(L, 3, 0644);
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOCTTY | O_CLOEXEC, mode);
  if (fd < 0) return ct_oserror(L, errno, path);
  int err = write_all(fd, data, len);
  if (close(fd) != 0 && !err) err = errno;
  if (err) return ct_oserror(L, err, path);
  return ct_true(L);
}

/* read_beneath(dir, rel [, max]) -> string; a file longer than max is
   nil, msg, EFBIG */
static int fs_read_beneath(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  const char *rel = luaL_checkstring(L, 2);
  int has_max = !lua_isnoneornil(L, 3);
  lua_Integer max = luaL_optinteger(L, 3, 0);
  luaL_argcheck(L, max >= 0, 3, "negative size");
  const char *name = push_beneath_name(L, dir, rel);
  int *g = fd_guard(L);
  struct stat st;
  const char *msg;
  int err = open_reg_beneath(dir, rel, g, &st, &msg);
  if (err) return msg ? ct_error(L, err, "%s: %s", name, msg) : ct_oserror(L, err, name);
  if (has_max && st.st_size > max) {
    fd_guard_close(g);
    return ct_error(L, EFBIG, "%s: larger than %I bytes", name, max);
  }
  size_t limit = has_max ? (size_t)max + 1 : SIZE_MAX;
  size_t size = st.st_size > 0 ? (size_t)st.st_size : 0;
  if ((err = push_read_sized(L, *g, limit, size))) return fd_guard_fail(L, g, err, name);
  fd_guard_close(g);
  if (has_max && lua_rawlen(L, -1) > (size_t)max)
    return ct_error(L, EFBIG, "%s: larger than %I bytes", name, max);
  return 1;
}

/* copy_beneath(dir, rel, dst) -> true; the regular file at rel (resolved
   inside dir) to the host path dst, with its rwx bits */
static int fs_copy_beneath(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  const char *rel = luaL_checkstring(L, 2);
  const char *dst = luaL_checkstring(L, 3);
  const char *name = push_beneath_name(L, dir, rel);
  int *g = fd_guard(L);
  struct stat st;
  const char *msg;
  int err = open_reg_beneath(dir, rel, g, &st, &msg);
  if (err) return msg ? ct_error(L, err, "%s: %s", name, msg) : ct_oserror(L, err, name);
  int n = copy_to_path(L, *g, dst, st.st_mode & 0777);
  fd_guard_close(g);
  return n;
}

/* chmod(path, mode) -> true */
static int fs_chmod(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  mode_t mode = check_mode(L, 2);
  if (chmod(path, mode) != 0) return ct_oserror(L, errno, path);
  return ct_true(L);
}

static int chown_common(lua_State *L, int follow) {
  const char *path = luaL_checkstring(L, 1);
  uid_t uid = (uid_t)check_id(L, 2);
  gid_t gid = (gid_t)check_id(L, 3);
  if ((follow ? chown(path, uid, gid) : lchown(path, uid, gid)) != 0)
    return ct_oserror(L, errno, path);
  return ct_true(L);
}

/* chown(path, uid, gid), lchown(path, uid, gid) -> true; -1 keeps one */
static int fs_chown(lua_State *L) { return chown_common(L, 1); }
static int fs_lchown(lua_State *L) { return chown_common(L, 0); }

/* mkdtemp(template) -> the created path (template ends in XXXXXX) */
static int fs_mkdtemp(lua_State *L) {
  const char *tmpl = luaL_checkstring(L, 1);
  char *buf = strdup(tmpl);
  if (!buf) return ct_oserror(L, ENOMEM, tmpl);
  if (!mkdtemp(buf)) {
    int e = errno;
    free(buf);
    return ct_oserror(L, e, tmpl);
  }
  lua_pushstring(L, buf);
  free(buf);
  return 1;
}

/* statvfs(path) -> {size=, free=, avail=} in bytes, {files=, ffree=} inodes */
static int fs_statvfs(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct statvfs sv;
  if (statvfs(path, &sv) != 0) return ct_oserror(L, errno, path);
  lua_createtable(L, 0, 5);
  set_int(L, "size", (lua_Integer)(sv.f_blocks * sv.f_frsize));
  set_int(L, "free", (lua_Integer)(sv.f_bfree * sv.f_frsize));
  set_int(L, "avail", (lua_Integer)(sv.f_bavail * sv.f_frsize));
  set_int(L, "files", (lua_Integer)sv.f_files);
  set_int(L, "ffree", (lua_Integer)sv.f_ffree);
  return 1;
}

static int open_for_sync(const char *path) {
  int fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 && errno == EACCES) fd = open(path, O_WRONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  return fd;
}

/* fsync(path) -> true; a file or a directory */
static int fs_fsync(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int fd = open_for_sync(path);
  if (fd < 0) return ct_oserror(L, errno, path);
  int err = fsync(fd) != 0 ? errno : 0;
  close(fd);
  if (err) return ct_oserror(L, err, path);
  return ct_true(L);
}

/* syncfs(path) -> true; the whole filesystem holding path */
static int fs_syncfs(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int fd = open_for_sync(path);
  if (fd < 0) return ct_oserror(L, errno, path);
  int err = syncfs(fd) != 0 ? errno : 0;
  close(fd);
  if (err) return ct_oserror(L, err, path);
  return ct_true(L);
}

/* size(path) -> bytes (follows symlinks) */
static int fs_size(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) != 0) return ct_oserror(L, errno, path);
  lua_pushinteger(L, (lua_Integer)st.st_size);
  return 1;
}

off_t collapse_len(const struct stat *st, off_t length) {
  off_t blk = st->st_blksize > 0 ? st->st_blksize : 4096;
  off_t n = length;
  if (n > st->st_size) n = st->st_size;
  n -= n % blk;
  /* The collapse may not reach the end of the file. */
  if (n >= st->st_size) n = st->st_size - 1 - (st->st_size - 1) % blk;
  return n > 0 ? n : 0;
}

/* collapse(path, length [, copy_to]) -> bytes removed. Removes the first
   `length` bytes of the file, rounded down to the filesystem's block size,
   with fallocate(FALLOC_FL_COLLAPSE_RANGE): a writer appending with O_APPEND
   loses nothing, its next write lands at the new end. With `copy_to`, those
   bytes are first copied into that new file (created 0640, fsynced), so
   nothing is removed before it is kept. 0 when less than a block would go.
   A filesystem without the collapse (tmpfs, btrfs...) gives EOPNOTSUPP;
   `copy_to` is then removed again. */
static int fs_collapse(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_Integer length = luaL_checkinteger(L, 2);
  const char *copy_to = luaL_optstring(L, 3, NULL);
  luaL_argcheck(L, length >= 0, 2, "negative length");
  int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return ct_oserror(L, errno, path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return ct_oserror(L, err, path);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return ct_oserror(L, EINVAL, path);
  }
  off_t n = collapse_len(&st, (off_t)length);
  if (n <= 0) {
    close(fd);
    lua_pushinteger(L, 0);
    return 1;
  }
  if (copy_to) {
    int out = open(copy_to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (out < 0) {
      int err = errno;
      close(fd);
      return ct_oserror(L, err, copy_to);
    }
    uint64_t done;
    int wside, err = copy_fds(fd, out, (uint64_t)n, &done, &wside);
    if (!err && done < (uint64_t)n) err = EIO;
    if (!err && fsync(out) != 0) err = errno;
    close(out);
    if (err) {
      unlink(copy_to);
      close(fd);
      return ct_oserror(L, err, copy_to);
    }
  }
  if (fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, n) != 0) {
    int err = errno;
    if (copy_to) unlink(copy_to);
    close(fd);
    return ct_oserror(L, err, path);
  }
  close(fd);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

static const luaL_Reg fs_funcs[] = {
    {"stat", fs_stat},
    {"lstat", fs_lstat},
    {"exists", fs_exists},
    {"mkdir", fs_mkdir},
    {"copyfile", fs_copyfile},
    {"rename", fs_rename},
    {"exchange", fs_exchange},
    {"symlink", fs_symlink},
    {"readlink", fs_readlink},
    {"realpath", fs_realpath},
    {"link", fs_link},
    {"unlink", fs_unlink},
    {"rmdir", fs_rmdir},
    {"dir", fs_dir},
    {"read", fs_read},
    {"write_atomic", fs_write_atomic},
    {"append", fs_append},
    {"read_beneath", fs_read_beneath},
    {"copy_beneath", fs_copy_beneath},
    {"chmod", fs_chmod},
    {"chown", fs_chown},
    {"lchown", fs_lchown},
    {"mkdtemp", fs_mkdtemp},
    {"statvfs", fs_statvfs},
    {"fsync", fs_fsync},
    {"syncfs", fs_syncfs},
    {"size", fs_size},
    {"collapse", fs_collapse},
    {NULL, NULL},
};

int luaopen_ct_fs(lua_State *L) {
  ct_class(L, FD_GUARD_MT, NULL, fd_guard_gc, NULL);
  luaL_newlib(L, fs_funcs);
  luaopen_ct_fs_beneath(L);
  luaopen_ct_fs_mount(L);
  luaopen_ct_fs_tree(L);
  luaopen_ct_fs_trees(L);
  /* The errnos Lua decides on, by name: no magic numbers in Lua. */
  static const struct {
    const char *name;
    int value;
  } errnos[] = {{"ENOENT", ENOENT}, {"EEXIST", EEXIST},   {"ENOTDIR", ENOTDIR}, {"EISDIR", EISDIR},
                {"EINVAL", EINVAL}, {"ELOOP", ELOOP},     {"ENOSPC", ENOSPC},   {"EXDEV", EXDEV},
                {"EBUSY", EBUSY},   {"EOPNOTSUPP", EOPNOTSUPP}};
  lua_createtable(L, 0, (int)(sizeof errnos / sizeof errnos[0]));
  for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++) {
    lua_pushinteger(L, errnos[i].value);
    lua_setfield(L, -2, errnos[i].name);
  }
  lua_setfield(L, -2, "errno");
  return 1;
}
