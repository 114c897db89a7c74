/* ct.fs: files, directories and paths, each operation one function for ct.fs.<name> and Dir:<name> (see beneath.c).

   A function shared with Dir resolves its path through struct at: by name
   as the host does, beneath a Dir confined. "follow" (stat, chown) applies
   by name only: beneath a Dir no symlink is ever followed. */
#include "ct.h"
#include "int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

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
static unsigned check_id(lua_State *L, int arg) {
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

int fserr_set(struct fserr *e, int err, const char *root, const char *rel, const char *msg) {
  if (e->err) return e->err; /* keep the first failure */
  e->err = err ? err : EIO;
  size_t n = strlen(root); /* e->path: "root/rel", just root for "" */
  const char *r = n && *rel == '/' ? rel + 1 : rel;
  if (asprintf(&e->path, "%s%s%s", root, *r && n && root[n - 1] != '/' ? "/" : "", r) < 0) e->path = NULL;
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

/* readlinkat into a malloc'd string; Linux keeps a target under PATH_MAX. */
char *readlink_alloc(int dirfd, const char *name) {
  char *buf = malloc(PATH_MAX);
  ssize_t n = buf ? readlinkat(dirfd, name, buf, PATH_MAX) : -1;
  if (n >= PATH_MAX) errno = ENAMETOOLONG;
  if (n < 0 || n >= PATH_MAX) {
    free(buf);
    return NULL;
  }
  buf[n] = '\0';
  return buf;
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

void ct_set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

void push_stat(lua_State *L, const struct stat *st) {
  lua_createtable(L, 0, 13); /* Dir:walk adds 4 */
  lua_pushstring(L, type_name(st->st_mode));
  lua_setfield(L, -2, "type");
  ct_set_int(L, "mode", st->st_mode & 07777);
  ct_set_int(L, "size", (lua_Integer)st->st_size);
  ct_set_int(L, "uid", st->st_uid);
  ct_set_int(L, "gid", st->st_gid);
  ct_set_int(L, "mtime", (lua_Integer)st->st_mtim.tv_sec);
  ct_set_int(L, "ino", (lua_Integer)st->st_ino);
  ct_set_int(L, "dev", (lua_Integer)st->st_dev);
  ct_set_int(L, "nlink", (lua_Integer)st->st_nlink);
}

/* ---- reading into Lua -------------------------------------------------- */

/* Reads up to limit bytes (to EOF) and pushes them. Returns 0, or an errno
   with nothing pushed. With a size, the first read asks for size + 1 bytes (a small file then
   fits the buffer on the C stack, a larger one needs one allocation instead
   of a 64 KiB chunk) and a short read is followed by a one-byte read into
   the room left, to see the end; a file that grew goes on in chunks. */
int push_read(lua_State *L, int fd, size_t limit, size_t size) {
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

/* ---- shared with Dir ----------------------------------------------------- */

/* stat(path), lstat(path), Dir:stat(rel) -> table | nil, msg, errno; a
   Dir's ""/"." is the Dir itself */
static int stat_common(lua_State *L, int follow) {
  struct at a;
  AT_REL(L, &a, ct_at(L, &a), rel, display);
  int fd = ct_at_open(&a, rel, O_PATH | (follow ? 0 : O_NOFOLLOW), 0);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    if (fd >= 0) close_keep_errno(fd);
    return ct_fail_at(L, errno, display, NULL);
  }
  close(fd);
  push_stat(L, &st);
  return 1;
}

static int fs_stat(lua_State *L) { return stat_common(L, 1); }
static int fs_lstat(lua_State *L) { return stat_common(L, 0); }

/* exists(path) -> boolean (lstat; a dangling symlink exists). A failure
   other than "no such entry" (EACCES, ELOOP ...) is nil, msg, errno. */
static int fs_exists(lua_State *L) {
  struct at a;
  AT_REL(L, &a, ct_at(L, &a), rel, display);
  int fd = ct_at_open(&a, rel, O_PATH | O_NOFOLLOW, 0);
  if (fd >= 0) {
    close(fd);
    return ct_true(L);
  }
  if (errno == ENOENT || errno == ENOTDIR) {
    lua_pushboolean(L, 0);
    return 1;
  }
  return ct_fail_at(L, errno, display, NULL);
}

/* mkdir(path [, mode=0755 [, parents=false]]) -> true; the exact mode (no
   umask). Beneath a Dir an existing symlink at rel is ELOOP. */
static int fs_mkdir(lua_State *L) {
  struct at a;
  int arg = ct_at(L, &a);
  mode_t mode = opt_mode(L, arg + 1, 0755);
  if (!lua_isnoneornil(L, arg + 2)) luaL_checktype(L, arg + 2, LUA_TBOOLEAN);
  int parents = lua_toboolean(L, arg + 2);
  AT_REL(L, &a, arg, rel, display);
  if (parents) {
    int err = ct_mkdirs(&a, rel, mode, NULL);
    return err ? ct_fail_at(L, err, display, NULL) : ct_true(L);
  }
  int pfd;
  char *base;
  int err = ct_at_parent(&a, rel, &pfd, &base);
  if (!err && mkdirat(pfd, base, mode) != 0) err = ct_classify(pfd, base, last_err());
  if (!err) {
    int fd = openat(pfd, base, DIR_FLAGS | O_NOFOLLOW);
    err = fd < 0 ? ct_classify(pfd, base, last_err()) : ct_fix_mode(fd, mode);
    if (fd >= 0) close(fd);
  }
  if (pfd >= 0) close(pfd);
  free(base);
  if (err == EEXIST && a.dir) {
    struct stat st;
    int fd = ct_open_path(a.fd, rel);
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) err = ELOOP;
    if (fd >= 0) close(fd);
  }
  return err ? ct_fail_at(L, err, display, NULL) : ct_true(L);
}

/* Writes base in dirfd atomically (atomic_write_at) from data or the open
   file in; the parent of the host path or rel must exist. */
static int write_at(lua_State *L, const struct at *a, const char *rel, const char *display,
                    const char *data, size_t len, int in, mode_t mode) {
  int pfd;
  char *base;
  size_t n = strlen(rel);
  int err = n && rel[n - 1] == '/' ? EISDIR : ct_at_parent(a, rel, &pfd, &base); /* "f/" names a dir */
  if (!err) {
    err = atomic_write_at(pfd, base, data, len, in, mode);
    close(pfd);
    free(base);
  }
  return err ? ct_fail_at(L, err, display, NULL) : ct_true(L);
}

/* write_atomic(path, data [, mode=0644]) -> true: temp file in the same
   parent, fsync, rename, fsync the parent; a symlink at the name is
   replaced, never written through */
static int fs_write_atomic(lua_State *L) {
  struct at a;
  int arg = ct_at(L, &a);
  size_t len;
  const char *data = luaL_checklstring(L, arg + 1, &len);
  mode_t mode = opt_mode(L, arg + 2, 0644);
  AT_REL(L, &a, arg, rel, display);
  return write_at(L, &a, rel, display, data, len, -1, mode);
}

/* The file rel opened for reading into a File handle on top of the stack,
   closed when the calling function returns or raises; *fd and *st are its.
   0, or the failure pushed (3). */
static int open_read(lua_State *L, const struct at *a, const char *rel, const char *display, int *fd,
                     struct stat *st) {
  struct handle *h = ct_new_handle(L, FILE_MT, -1);
  lua_toclose(L, -1);
  const char *msg;
  int err = ct_open_file(a, rel, O_RDONLY, 0, 0, 0, &h->fd, &msg);
  if (err) return ct_fail_at(L, err, display, msg);
  *fd = h->fd;
  if (fstat(h->fd, st) != 0) return ct_fail_at(L, errno, display, NULL);
  return 0;
}

/* copyfile(src, dst [, mode]) -> true, Dir:copyfile(rel, dst [, mode]):
   the regular file src to the host path dst (atomically, as write_atomic);
   mode defaults to src's rwx bits */
static int fs_copyfile(lua_State *L) {
  struct at a, host = {AT_FDCWD, 0, 0};
  int arg = ct_at(L, &a);
  const char *dst = luaL_checkstring(L, arg + 1);
  int has_mode = !lua_isnoneornil(L, arg + 2);
  mode_t mode = opt_mode(L, arg + 2, 0);
  AT_REL(L, &a, arg, rel, display);
  int fd;
  struct stat st;
  int n = open_read(L, &a, rel, display, &fd, &st);
  if (n) return n;
  if (!S_ISREG(st.st_mode))
    return ct_fail_at(L, S_ISDIR(st.st_mode) ? EISDIR : EINVAL, display,
                      S_ISDIR(st.st_mode) ? NULL : "not a regular file");
  return write_at(L, &host, dst, dst, NULL, 0, fd, has_mode ? mode : (st.st_mode & 0777));
}

/* rename(a, b), exchange(a, b), Dir:rename(from, to [, todir]) -> true;
   exchange swaps both atomically (both must exist) */
static int rename_common(lua_State *L, unsigned flags) {
  struct at a, t;
  int arg = ct_at(L, &a);
  t = a;
  if (a.dir && !lua_isnoneornil(L, 4)) {
    struct handle *h = check_dir(L, 4);
    t.fd = h->fd;
    t.dir = 4;
    t.in_root = h->in_root; /* resolved as that Dir resolves, not as ours */
  }
  lua_settop(L, a.dir ? 4 : 2); /* the display paths go above the arguments */
  AT_REL(L, &a, arg, from, from_display);
  AT_REL(L, &t, arg + 1, to, to_display);
  int fpfd = -1, tpfd = -1;
  char *fbase = NULL, *tbase = NULL;
  int err = ct_at_parent(&a, from, &fpfd, &fbase);
  const char *which = from_display;
  if (!err) {
    which = to_display;
    err = ct_at_parent(&t, to, &tpfd, &tbase);
  }
  if (!err && renameat2(fpfd, fbase, tpfd, tbase, flags) != 0) {
    err = last_err();
    which = NULL;
  }
  if (fpfd >= 0) close(fpfd);
  if (tpfd >= 0) close(tpfd);
  free(fbase);
  free(tbase);
  if (!err) return ct_true(L);
  if (which) return ct_fail_at(L, err, which, NULL);
  return ct_error(L, err, "%s %s %s: %s", from_display, flags ? "<->" : "->", to_display,
                  strerror(err));
}

static int fs_rename(lua_State *L) { return rename_common(L, 0); }
static int fs_exchange(lua_State *L) { return rename_common(L, RENAME_EXCHANGE); }

/* unlink(path), rmdir(path) -> true; a symlink is removed itself */
static int remove_common(lua_State *L, int flags) {
  struct at a;
  AT_REL(L, &a, ct_at(L, &a), rel, display);
  int pfd;
  char *base;
  int err = ct_at_parent(&a, rel, &pfd, &base);
  if (!err) {
    if (unlinkat(pfd, base, flags) != 0) err = last_err();
    close(pfd);
    free(base);
  }
  return err ? ct_fail_at(L, err, display, NULL) : ct_true(L);
}

static int fs_unlink(lua_State *L) { return remove_common(L, 0); }
static int fs_rmdir(lua_State *L) { return remove_common(L, AT_REMOVEDIR); }

/* dir(path), Dir:list(rel) -> sorted array of names (no "." / "..") */
static int fs_dir(lua_State *L) {
  struct at a;
  AT_REL(L, &a, ct_at(L, &a), rel, display);
  int fd = ct_at_open(&a, rel, DIR_FLAGS, 0);
  if (fd < 0) return ct_fail_at(L, errno, display, NULL);
  struct names ns;
  int err = read_names(fd, &ns);
  close(fd);
  if (err) return ct_fail_at(L, err, display, NULL);
  lua_createtable(L, ns.n > INT_MAX ? INT_MAX : (int)ns.n, 0);
  for (size_t i = 0; i < ns.n; i++) {
    lua_pushstring(L, ns.v[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  names_free(&ns);
  return 1;
}

/* chmod(path, mode) -> true; follows by name, a symlink beneath a Dir is refused */
static int fs_chmod(lua_State *L) {
  struct at a;
  int arg = ct_at(L, &a);
  mode_t mode = check_mode(L, arg + 1);
  AT_REL(L, &a, arg, rel, display);
  int fd = ct_at_open(&a, rel, O_PATH, 0);
  if (fd < 0) return ct_fail_at(L, errno, display, NULL);
  struct stat st;
  int err = fstat(fd, &st) != 0 ? last_err() : S_ISLNK(st.st_mode) ? ELOOP : ct_chmod_fd(fd, mode);
  close(fd);
  return err ? ct_fail_at(L, err, display, NULL) : ct_true(L);
}

/* chown(path, uid, gid), lchown(path, uid, gid) -> true; -1 keeps one.
   Dir:chown re-owns a symlink itself. */
static int chown_common(lua_State *L, int follow) {
  struct at a;
  int arg = ct_at(L, &a);
  uid_t uid = (uid_t)check_id(L, arg + 1);
  gid_t gid = (gid_t)check_id(L, arg + 2);
  AT_REL(L, &a, arg, rel, display);
  int fd = ct_at_open(&a, rel, O_PATH | (follow ? 0 : O_NOFOLLOW), 0);
  if (fd < 0) return ct_fail_at(L, errno, display, NULL);
  int err = fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0 ? last_err() : 0;
  close(fd);
  return err ? ct_fail_at(L, err, display, NULL) : ct_true(L);
}

static int fs_chown(lua_State *L) { return chown_common(L, 1); }
static int fs_lchown(lua_State *L) { return chown_common(L, 0); }

/* read(path [, max]), Dir:read(rel [, max]) -> string; a file longer than
   max is EFBIG. By name any file (procfs, a pipe), beneath a Dir only a
   regular one. */
static int fs_read(lua_State *L) {
  struct at a;
  int arg = ct_at(L, &a);
  lua_Integer max = ct_opt_max(L, arg + 1);
  lua_settop(L, arg);
  AT_REL(L, &a, arg, rel, display);
  int fd;
  struct stat st;
  int n = open_read(L, &a, rel, display, &fd, &st);
  if (n) return n;
  if (max >= 0 && st.st_size > max) return ct_error(L, EFBIG, "%s: larger than %I bytes", display, max);
  size_t size = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size : 0;
  return ct_read_rest(L, fd, max, size, display);
}

/* ---- by name only ------------------------------------------------------ */

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
  if (link(existing, path) != 0)
    return ct_error(L, errno, "%s -> %s: %s", path, existing, strerror(errno));
  return ct_true(L);
}

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
  ct_set_int(L, "size", (lua_Integer)(sv.f_blocks * sv.f_frsize));
  ct_set_int(L, "free", (lua_Integer)(sv.f_bfree * sv.f_frsize));
  ct_set_int(L, "avail", (lua_Integer)(sv.f_bavail * sv.f_frsize));
  ct_set_int(L, "files", (lua_Integer)sv.f_files);
  ct_set_int(L, "ffree", (lua_Integer)sv.f_ffree);
  return 1;
}

/* fsync(path), syncfs(path) -> true; a file or a directory, or the whole
   filesystem holding path */
static int sync_common(lua_State *L, int (*sync)(int)) {
  const char *path = luaL_checkstring(L, 1);
  int fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 && errno == EACCES) fd = open(path, O_WRONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return ct_oserror(L, errno, path);
  int err = sync(fd) != 0 ? errno : 0;
  close(fd);
  if (err) return ct_oserror(L, err, path);
  return ct_true(L);
}

static int fs_fsync(lua_State *L) { return sync_common(L, fsync); }
static int fs_syncfs(lua_State *L) { return sync_common(L, syncfs); }

/* By name and as Dir methods of the same name. */
static const luaL_Reg shared_funcs[] = {
    {"stat", fs_stat},       {"exists", fs_exists},     {"mkdir", fs_mkdir},
    {"copyfile", fs_copyfile}, {"rename", fs_rename},   {"unlink", fs_unlink},
    {"rmdir", fs_rmdir},     {"write_atomic", fs_write_atomic}, {"chmod", fs_chmod},
    {"chown", fs_chown},     {"read", fs_read},         {NULL, NULL},
};

static const luaL_Reg fs_funcs[] = {
    {"lstat", fs_lstat},     {"exchange", fs_exchange}, {"symlink", fs_symlink},
    {"readlink", fs_readlink}, {"realpath", fs_realpath}, {"link", fs_link},
    {"dir", fs_dir},
    {"lchown", fs_lchown},   {"mkdtemp", fs_mkdtemp},   {"statvfs", fs_statvfs},
    {"fsync", fs_fsync},     {"syncfs", fs_syncfs},
    {NULL, NULL},
};

static const luaL_Reg dir_only[] = {{"list", fs_dir}, {NULL, NULL}};

int luaopen_ct_fs(lua_State *L) {
  luaL_newlib(L, fs_funcs);
  luaL_setfuncs(L, shared_funcs, 0);
  luaopen_ct_fs_beneath(L);
  ct_dir_methods(L, shared_funcs);
  ct_dir_methods(L, dir_only);
  luaopen_ct_fs_mount(L);
  luaopen_ct_fs_tree(L);
  luaopen_ct_fs_trees(L);
  /* The errnos Lua decides on, by name: no magic numbers in Lua. */
  static const struct {
    const char *name;
    int value;
  } errnos[] = {{"ENOENT", ENOENT}, {"EEXIST", EEXIST},   {"ENOTDIR", ENOTDIR}, {"EISDIR", EISDIR},
                {"EINVAL", EINVAL}, {"ELOOP", ELOOP},     {"ENOSPC", ENOSPC},   {"EXDEV", EXDEV},
                {"EBUSY", EBUSY},   {"EOPNOTSUPP", EOPNOTSUPP}, {"E2BIG", E2BIG}};
  lua_createtable(L, 0, (int)(sizeof errnos / sizeof errnos[0]));
  for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++) {
    lua_pushinteger(L, errnos[i].value);
    lua_setfield(L, -2, errnos[i].name);
  }
  lua_setfield(L, -2, "errno");
  return 1;
}
