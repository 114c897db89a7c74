/* ct.fs.opendir: directory handles for the trees an app can write.

   An app may write everything bound into its container (logs/<app>,
   data/<app>, config/<app>): it can plant symlinks, FIFOs, sockets and
   device nodes there, and swap them between two of our system calls. So
   host-side code reaches those trees only through a Dir (a descriptor of
   a directory the operator trusts) and resolves every path beneath it:

   - with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
     RESOLVE_NO_MAGICLINKS) where the kernel has it (5.6);
   - else one component at a time, openat(O_NOFOLLOW), each intermediate
     one O_DIRECTORY. CTCLI_NO_OPENAT2=1 (read once) forces this walk.

   Absolute paths and ".." are refused before any system call, in both
   modes. No symlink is ever followed, not even in the middle of a path.
   A file is first opened O_PATH (which opens nothing: no FIFO hangs, no
   device driver runs), its type checked with fstat, and only a regular
   file is then reopened through /proc/self/fd with the real access mode,
   so the descriptor we read or write is the inode we checked. Mode and
   owner changes go through such O_PATH descriptors too.

   Tree walks (rmtree, du, shift_tree, walk) ride on walk.c's visitor. */
#include "int.h"
#include "layer.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/falloc.h>
#include <linux/openat2.h>
#include <zstd.h>

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452 /* the same number on every architecture */
#endif

#define DIR_MT "ct.fs.Dir"
#define FILE_MT "ct.fs.File"

static const char MSG_LINK[] = "a symlink, refusing to follow it";
static const char MSG_DOTDOT[] = "'..' is not allowed";
static const char MSG_ABS[] = "an absolute path is not allowed";

/* ---- which resolver --------------------------------------------------- */

static int use_openat2 = -1; /* -1: CTCLI_NO_OPENAT2 not read yet */

int ct_beneath_openat2(void) {
  if (use_openat2 < 0) {
    const char *v = getenv("CTCLI_NO_OPENAT2");
    use_openat2 = !(v && strcmp(v, "1") == 0);
  }
  return use_openat2;
}

void ct_beneath_set_openat2(int on) { use_openat2 = on ? 1 : 0; }

/* ---- resolving beneath a directory descriptor ------------------------- */

/* 0, or which rule rel breaks: an absolute path or a ".." component. */
static const char *bad_rel(const char *rel) {
  if (rel[0] == '/') return MSG_ABS;
  for (const char *p = rel; *p;) {
    const char *e = strchr(p, '/');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n == 2 && p[0] == '.' && p[1] == '.') return MSG_DOTDOT;
    p += n;
    while (*p == '/') p++;
  }
  return NULL;
}

/* After a failed open of `name` in dirfd: a symlink there is ELOOP, whatever
   the call said (O_DIRECTORY|O_NOFOLLOW on one says ENOTDIR). */
static int classify(int dirfd, const char *name, int err) {
  struct stat st;
  if ((err == ENOTDIR || err == ELOOP) && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISLNK(st.st_mode))
    return ELOOP;
  return err;
}

/* The fallback: one openat(O_NOFOLLOW) per component; intermediate ones
   O_PATH|O_DIRECTORY. Returns a descriptor, or -1 with errno. */
static int walk_open(int dirfd, const char *rel, int flags, mode_t mode) {
  char *buf = strdup(rel);
  if (!buf) {
    errno = ENOMEM;
    return -1;
  }
  int owned = -1, cur = dirfd, fd = -1, err = 0;
  char *p = buf;
  for (;;) {
    while (*p == '/') p++;
    char *next = strchr(p, '/');
    if (next) {
      *next++ = '\0';
      while (*next == '/') next++;
      if (!*next) next = NULL; /* a trailing slash */
    }
    if (!next) {
      fd = openat(cur, *p ? p : ".", flags, mode);
      if (fd < 0) err = classify(cur, *p ? p : ".", errno);
      break;
    }
    if (strcmp(p, ".") != 0) {
      int nfd = openat(cur, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (nfd < 0) {
        err = classify(cur, p, errno);
        break;
      }
      if (owned >= 0) close(owned);
      owned = cur = nfd;
    }
    p = next;
  }
  if (owned >= 0) close(owned);
  free(buf);
  if (fd < 0) errno = err ? err : EIO;
  return fd;
}

/* Opens rel (checked by bad_rel) beneath dirfd; O_NOFOLLOW|O_CLOEXEC are
   added. Returns a descriptor, or -1 with errno (ELOOP: a symlink). */
static int open_beneath(int dirfd, const char *rel, int flags, mode_t mode) {
  flags |= O_NOFOLLOW | O_CLOEXEC;
  if (!*rel) rel = ".";
  if (ct_beneath_openat2()) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)flags;
    how.mode = (flags & O_CREAT) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    for (int tries = 0;; tries++) {
      long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
      if (fd >= 0) return (int)fd;
      /* EAGAIN: a rename raced the lookup; the kernel asks for a retry */
      if (errno == EINTR || (errno == EAGAIN && tries < 64)) continue;
      if (errno == ENOTDIR && !(flags & O_PATH)) {
        /* O_DIRECTORY on a final symlink says ENOTDIR: call it what it is */
        int pfd = open_beneath(dirfd, rel, O_PATH, 0);
        struct stat st;
        int link = pfd >= 0 && fstat(pfd, &st) == 0 && S_ISLNK(st.st_mode);
        if (pfd >= 0) close(pfd);
        errno = link ? ELOOP : ENOTDIR;
        return -1;
      }
      if (errno != ENOSYS) return -1;
      use_openat2 = 0; /* a kernel before 5.6 */
      break;
    }
  }
  return walk_open(dirfd, rel, flags, mode);
}

/* The last component of rel (no trailing slashes) in a malloc'd copy, and
   its parent opened DIR_FLAGS beneath dirfd. Returns 0 or an errno; a rel
   with no last component ("", ".") is EINVAL. */
static int open_parent(int dirfd, const char *rel, int *pfd, char **base) {
  *pfd = -1;
  *base = NULL;
  size_t n = strlen(rel);
  while (n > 0 && rel[n - 1] == '/') n--;
  size_t b = n;
  while (b > 0 && rel[b - 1] != '/') b--;
  if (b == n || (n - b == 1 && rel[b] == '.')) return EINVAL;
  char *parent = strndup(rel, b);
  if (!parent || !(*base = strndup(rel + b, n - b))) {
    free(parent);
    return ENOMEM;
  }
  *pfd = open_beneath(dirfd, parent, DIR_FLAGS, 0);
  int err = *pfd < 0 ? last_err() : 0;
  free(parent);
  if (err) {
    free(*base);
    *base = NULL;
  }
  return err;
}

/* mkdir(2) with the exact mode (no umask) of a directory we just made. */
static int fix_mode(int fd, mode_t mode) {
  struct stat st;
  if (fstat(fd, &st) != 0) return last_err();
  if ((st.st_mode & 07777) != mode && fchmod(fd, mode) != 0) return last_err();
  return 0;
}

/* mkdir -p of rel beneath dirfd, one component at a time; *out (if not
   NULL) gets the last directory, DIR_FLAGS. An existing component that is
   not a directory, or is a symlink, is refused. Returns 0 or an errno. */
static int mkdirs(int dirfd, const char *rel, mode_t mode, int *out) {
  if (out) *out = -1;
  char *buf = strdup(rel);
  if (!buf) return ENOMEM;
  int cur = openat(dirfd, ".", DIR_FLAGS);
  int err = cur < 0 ? last_err() : 0;
  for (char *p = buf; !err && *p;) {
    char *next = strchr(p, '/');
    if (next) {
      *next++ = '\0';
      while (*next == '/') next++;
    }
    if (*p && strcmp(p, ".") != 0) {
      int made = 0, fd = openat(cur, p, DIR_FLAGS | O_NOFOLLOW);
      if (fd < 0 && errno == ENOENT) {
        if (mkdirat(cur, p, mode) == 0)
          made = 1;
        else if (errno != EEXIST)
          err = last_err();
        if (!err) fd = openat(cur, p, DIR_FLAGS | O_NOFOLLOW);
      }
      if (!err && fd < 0) err = classify(cur, p, last_err());
      if (!err && made) err = fix_mode(fd, mode);
      close(cur);
      cur = fd;
      if (err && fd >= 0) {
        close(fd);
        cur = -1;
      }
    }
    p = next ? next : p + strlen(p);
  }
  free(buf);
  if (err) {
    if (cur >= 0) close(cur);
    return err;
  }
  if (out)
    *out = cur;
  else
    close(cur);
  return 0;
}

/* "a FIFO", "a socket" ... for messages about a file of the wrong type. */
static const char *type_article(mode_t m) {
  switch (m & S_IFMT) {
  case S_IFIFO: return "not a regular file (a FIFO)";
  case S_IFSOCK: return "not a regular file (a socket)";
  case S_IFCHR:
  case S_IFBLK: return "not a regular file (a device)";
  case S_IFDIR: return "not a regular file (a directory)";
  case S_IFLNK: return MSG_LINK;
  default: return "not a regular file";
  }
}

/* chmod of the object behind an O_PATH descriptor (never a symlink):
   fchmodat2(AT_EMPTY_PATH) where the kernel has it (6.6), else through
   /proc/self/fd, which names exactly that inode. */
static int chmod_fd(int fd, mode_t mode) {
  if (syscall(SYS_fchmodat2, fd, "", mode, AT_EMPTY_PATH) == 0) return 0;
  if (errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP) return last_err();
  char proc[48];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  return chmod(proc, mode) == 0 ? 0 : last_err();
}

/* Opens the regular file rel beneath dirfd; see the header comment. flags:
   the access mode plus O_APPEND/O_TRUNC; create/excl as O_CREAT/O_EXCL.
   Returns 0 with *out, or an errno with *msg set when not strerror's. */
static int open_file(int dirfd, const char *rel, int flags, int create, int excl, mode_t mode,
                     int *out, const char **msg) {
  *out = -1;
  *msg = NULL;
  int pfd;
  char *base;
  int err = open_parent(dirfd, rel, &pfd, &base);
  if (err) return err;
  const int common = O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
  int fd = -1;
  struct stat want;
  int check_same = 0;
  for (int tries = 0; tries < 16 && fd < 0 && !err; tries++) {
    if (create && excl) {
      /* O_EXCL never opens an existing entry, a symlink included */
      fd = openat(pfd, base, flags | O_CREAT | O_EXCL | common, mode);
      if (fd < 0) err = last_err();
      break;
    }
    int path = openat(pfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (path < 0) {
      if (errno != ENOENT || !create) {
        err = last_err();
        break;
      }
      fd = openat(pfd, base, flags | O_CREAT | O_EXCL | common, mode);
      if (fd < 0 && errno != EEXIST) err = last_err(); /* EEXIST: raced, look again */
      continue;
    }
    if (fstat(path, &want) != 0) {
      err = last_err();
    } else if (!S_ISREG(want.st_mode)) {
      err = S_ISLNK(want.st_mode) ? ELOOP : EINVAL;
      *msg = type_article(want.st_mode);
    } else {
      char proc[48];
      snprintf(proc, sizeof proc, "/proc/self/fd/%d", path);
      fd = open(proc, flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
      if (fd < 0 && errno == ENOENT) /* no /proc: by name, then compare */
        fd = openat(pfd, base, flags | common);
      if (fd < 0) err = last_err();
      check_same = 1;
    }
    close(path);
  }
  if (!err && fd < 0) err = EAGAIN;
  struct stat st;
  if (!err && fstat(fd, &st) != 0) err = last_err();
  if (!err && !S_ISREG(st.st_mode)) {
    err = EINVAL;
    *msg = type_article(st.st_mode);
  }
  if (!err && check_same && (st.st_dev != want.st_dev || st.st_ino != want.st_ino)) err = ESTALE;
  /* O_NONBLOCK only guarded the open; a regular file does not need it */
  if (!err && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) err = last_err();
  if (err && fd >= 0) close(fd);
  if (err == ELOOP) *msg = MSG_LINK;
  close(pfd);
  free(base);
  if (!err) *out = fd;
  return err;
}

/* ---- userdata --------------------------------------------------------- */

struct handle {
  int fd; /* -1 once closed */
};

/* A new closed Dir or File (metatable mt) whose display path is the string
   at path_idx; it is on top of the stack. */
static struct handle *new_handle(lua_State *L, const char *mt, int path_idx) {
  path_idx = lua_absindex(L, path_idx);
  struct handle *h = lua_newuserdatauv(L, sizeof *h, 1);
  h->fd = -1;
  luaL_setmetatable(L, mt);
  lua_pushvalue(L, path_idx);
  lua_setiuservalue(L, -2, 1);
  return h;
}

static struct handle *check_open(lua_State *L, int idx, const char *mt) {
  struct handle *h = luaL_checkudata(L, idx, mt);
  if (h->fd < 0) luaL_error(L, "attempt to use a closed %s", mt);
  return h;
}

static struct handle *check_dir(lua_State *L, int idx) { return check_open(L, idx, DIR_MT); }
static struct handle *check_file(lua_State *L, int idx) { return check_open(L, idx, FILE_MT); }

/* The display path of the handle at idx (anchored in its uservalue). */
static const char *handle_path(lua_State *L, int idx) {
  lua_getiuservalue(L, idx, 1);
  const char *s = lua_tostring(L, -1);
  lua_pop(L, 1);
  return s;
}

int ct_testfile(lua_State *L, int idx) {
  struct handle *h = luaL_testudata(L, idx, FILE_MT);
  if (!h) return -1;
  if (h->fd < 0) luaL_error(L, "attempt to use a closed %s", FILE_MT);
  return h->fd;
}

int ct_testdir(lua_State *L, int idx) {
  struct handle *h = luaL_testudata(L, idx, DIR_MT);
  if (!h) return -1;
  if (h->fd < 0) luaL_error(L, "attempt to use a closed %s", DIR_MT);
  return h->fd;
}

static int handle_close(lua_State *L, const char *mt) {
  struct handle *h = luaL_checkudata(L, 1, mt);
  if (h->fd >= 0) close(h->fd);
  h->fd = -1;
  return 0;
}

static int dir_close(lua_State *L) { return handle_close(L, DIR_MT); }
static int file_close(lua_State *L) { return handle_close(L, FILE_MT); }

/* Pushes the display path of rel in the Dir at 1: "dir/rel", or "dir" for
   "" and ".". */
static const char *push_display(lua_State *L, const char *rel) {
  const char *dir = handle_path(L, 1);
  if (!*rel || strcmp(rel, ".") == 0) return lua_pushstring(L, dir);
  size_t dl = strlen(dir);
  return lua_pushfstring(L, dl && dir[dl - 1] == '/' ? "%s%s" : "%s/%s", dir, rel);
}

/* The Dir at 1 and a checked relative path at arg; the display path is
   pushed. On a refused path, pushes nil, msg, EINVAL and returns NULL. */
static const char *check_rel(lua_State *L, int arg, const char **display) {
  const char *rel = luaL_checkstring(L, arg);
  const char *why = bad_rel(rel);
  if (why == MSG_ABS) {
    ct_error(L, EINVAL, "%s: %s: %s", handle_path(L, 1), rel, why);
    return NULL;
  }
  *display = push_display(L, rel);
  if (why) {
    ct_error(L, EINVAL, "%s: %s", *display, why);
    return NULL;
  }
  return rel;
}

/* nil, "<display>: <msg or strerror>", err */
static int fail(lua_State *L, int err, const char *display, const char *msg) {
  if (!msg && err == ELOOP) msg = MSG_LINK;
  return ct_error(L, err, "%s: %s", display, msg ? msg : strerror(err));
}

static int push_true(lua_State *L) {
  lua_pushboolean(L, 1);
  return 1;
}

#define CHECK_REL(L, arg, rel, display)                                                          \
  const char *display;                                                                         \
  const char *rel = check_rel(L, arg, &display);                                               \
  if (!rel) return 3

/* ---- Dir -------------------------------------------------------------- */

/* ct.fs.opendir(path) -> Dir; path is the operator's (trusted), only its
   last component must not be a symlink */
static int fs_opendir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct handle *h = new_handle(L, DIR_MT, 1);
  h->fd = open(path, DIR_FLAGS | O_NOFOLLOW);
  if (h->fd < 0) return fail(L, errno, path, NULL);
  return 1;
}

/* Dir:opendir(rel [, mode]) -> Dir; with mode, missing directories are made */
static int d_opendir(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  int create = !lua_isnoneornil(L, 3);
  mode_t mode = opt_mode(L, 3, 0);
  CHECK_REL(L, 2, rel, display);
  struct handle *h = new_handle(L, DIR_MT, -1);
  int err = 0;
  if (create) {
    err = mkdirs(d->fd, rel, mode, &h->fd);
  } else {
    h->fd = open_beneath(d->fd, rel, DIR_FLAGS, 0);
    if (h->fd < 0) err = last_err();
  }
  if (err) return fail(L, err, display, NULL);
  return 1;
}

/* Dir:copytree(rel, dst) -> true: the directory rel (resolved beneath, no
   symlink on the way) copied to dst, a new path outside every app's tree.
   The walk reads through the descriptor it checked, so a symlink swapped in
   afterwards is copied as a symlink, never followed. */
static int d_copytree(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  const char *dst = luaL_checkstring(L, 3);
  lua_settop(L, 3);
  CHECK_REL(L, 2, rel, display);
  int fd = open_beneath(d->fd, rel, DIR_FLAGS, 0);
  if (fd < 0) return fail(L, last_err(), display, NULL);
  struct fserr e = {0, NULL, NULL, NULL};
  if (copytree_fd(fd, display, dst, &e)) return fserr_push(L, &e);
  return push_true(L);
}

/* Dir:path([rel]) -> display path */
static int d_path(lua_State *L) {
  luaL_checkudata(L, 1, DIR_MT);
  push_display(L, luaL_optstring(L, 2, ""));
  return 1;
}

/* An O_PATH descriptor of rel itself (a symlink is not followed but
   opened), or -1 with errno. */
static int open_path(int dirfd, const char *rel) { return open_beneath(dirfd, rel, O_PATH, 0); }

/* Dir:stat(rel) -> table; never follows */
static int d_stat(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  CHECK_REL(L, 2, rel, display);
  struct stat st;
  int fd = open_path(d->fd, rel);
  if (fd < 0) return fail(L, errno, display, NULL);
  int r = fstat(fd, &st);
  close_keep_errno(fd);
  if (r != 0) return fail(L, errno, display, NULL);
  push_stat(L, &st);
  return 1;
}

/* Dir:exists(rel) -> boolean (lstat semantics) */
static int d_exists(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  CHECK_REL(L, 2, rel, display);
  int fd = open_path(d->fd, rel);
  if (fd >= 0) {
    close(fd);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (errno == ENOENT || errno == ENOTDIR) {
    lua_pushboolean(L, 0);
    return 1;
  }
  return fail(L, errno, display, NULL);
}

/* Dir:mkdir(rel, mode [, parents]) -> true */
static int d_mkdir(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  mode_t mode = check_mode(L, 3);
  if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TBOOLEAN);
  int parents = lua_toboolean(L, 4);
  CHECK_REL(L, 2, rel, display);
  if (parents) {
    int err = mkdirs(d->fd, rel, mode, NULL);
    return err ? fail(L, err, display, NULL) : push_true(L);
  }
  int pfd;
  char *base;
  int err = open_parent(d->fd, rel, &pfd, &base);
  if (!err && mkdirat(pfd, base, mode) != 0) err = classify(pfd, base, last_err());
  if (!err) {
    int fd = openat(pfd, base, DIR_FLAGS | O_NOFOLLOW);
    err = fd < 0 ? classify(pfd, base, last_err()) : fix_mode(fd, mode);
    if (fd >= 0) close(fd);
  }
  if (pfd >= 0) close(pfd);
  free(base);
  if (err == EEXIST) {
    struct stat st;
    int fd = open_path(d->fd, rel);
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) err = ELOOP;
    if (fd >= 0) close(fd);
  }
  return err ? fail(L, err, display, NULL) : push_true(L);
}

/* Reads a boolean field of the table at idx. */
static int opt_flag(lua_State *L, int idx, const char *k) {
  int t = lua_getfield(L, idx, k);
  if (t != LUA_TNIL && t != LUA_TBOOLEAN) luaL_error(L, "bad option '%s' (a boolean expected)", k);
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Dir:open(rel [, opts]) -> File. opts: write (read and write), create,
   append, trunc, excl, mode (0640). Only a regular file is opened. */
static int d_open(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  int write = 0, create = 0, append = 0, trunc = 0, excl = 0;
  mode_t mode = 0640;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    write = opt_flag(L, 3, "write");
    create = opt_flag(L, 3, "create");
    append = opt_flag(L, 3, "append");
    trunc = opt_flag(L, 3, "trunc");
    excl = opt_flag(L, 3, "excl");
    if (lua_getfield(L, 3, "mode") != LUA_TNIL) mode = check_mode(L, -1);
    lua_pop(L, 1);
    luaL_argcheck(L, write || !(append || trunc), 3, "append and trunc need write=true");
    luaL_argcheck(L, create || !excl, 3, "excl needs create=true");
  }
  lua_settop(L, 2);
  CHECK_REL(L, 2, rel, display);
  struct handle *h = new_handle(L, FILE_MT, -1);
  int flags = (write ? O_RDWR : O_RDONLY) | (append ? O_APPEND : 0) | (trunc ? O_TRUNC : 0);
  const char *msg;
  int err = open_file(d->fd, rel, flags, create, excl, mode, &h->fd, &msg);
  if (err) return fail(L, err, display, msg);
  return 1;
}

/* Reads the rest of fd into Lua; more than max (>= 0) bytes is EFBIG. */
static int read_rest(lua_State *L, int fd, lua_Integer max, const char *display) {
  size_t limit = max >= 0 ? (size_t)max + 1 : SIZE_MAX;
  int err = push_read(L, fd, limit);
  if (err) return fail(L, err, display, NULL);
  if (max >= 0 && lua_rawlen(L, -1) > (size_t)max)
    return ct_error(L, EFBIG, "%s: larger than %I bytes", display, max);
  return 1;
}

static lua_Integer opt_max(lua_State *L, int arg) {
  if (lua_isnoneornil(L, arg)) return -1;
  lua_Integer max = luaL_checkinteger(L, arg);
  luaL_argcheck(L, max >= 0, arg, "negative size");
  return max;
}

/* Dir:read(rel [, max]) -> string */
static int d_read(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  lua_Integer max = opt_max(L, 3);
  lua_settop(L, 2);
  CHECK_REL(L, 2, rel, display);
  struct handle *h = new_handle(L, FILE_MT, -1); /* closes the fd on a Lua error */
  const char *msg;
  int err = open_file(d->fd, rel, O_RDONLY, 0, 0, 0, &h->fd, &msg);
  if (err) return fail(L, err, display, msg);
  struct stat st;
  if (max >= 0 && fstat(h->fd, &st) == 0 && st.st_size > max) {
    close(h->fd);
    h->fd = -1;
    return ct_error(L, EFBIG, "%s: larger than %I bytes", display, max);
  }
  int n = read_rest(L, h->fd, max, display);
  close(h->fd);
  h->fd = -1;
  return n;
}

/* Dir:write_atomic(rel, data [, mode=0644]) -> true; the parent must exist */
static int d_write_atomic(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 3, &len);
  mode_t mode = opt_mode(L, 4, 0644);
  CHECK_REL(L, 2, rel, display);
  int pfd;
  char *base;
  int err = open_parent(d->fd, rel, &pfd, &base);
  if (!err) {
    err = atomic_write_at(pfd, base, data, len, -1, mode);
    close(pfd);
    free(base);
  }
  return err ? fail(L, err, display, NULL) : push_true(L);
}

/* Dir:list(rel) -> sorted array of names */
static int d_list(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  CHECK_REL(L, 2, rel, display);
  int fd = open_beneath(d->fd, rel, DIR_FLAGS, 0);
  if (fd < 0) return fail(L, errno, display, NULL);
  struct names ns;
  int err = read_names(fd, &ns);
  close(fd);
  if (err) return fail(L, err, display, NULL);
  lua_createtable(L, ns.n > INT_MAX ? INT_MAX : (int)ns.n, 0);
  for (size_t i = 0; i < ns.n; i++) {
    lua_pushstring(L, ns.v[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  names_free(&ns);
  return 1;
}

static int remove_common(lua_State *L, int flags) {
  struct handle *d = check_dir(L, 1);
  CHECK_REL(L, 2, rel, display);
  int pfd;
  char *base;
  int err = open_parent(d->fd, rel, &pfd, &base);
  if (!err) {
    if (unlinkat(pfd, base, flags) != 0) err = last_err();
    close(pfd);
    free(base);
  }
  return err ? fail(L, err, display, NULL) : push_true(L);
}

/* Dir:unlink(rel), Dir:rmdir(rel) -> true; a symlink is removed itself */
static int d_unlink(lua_State *L) { return remove_common(L, 0); }
static int d_rmdir(lua_State *L) { return remove_common(L, AT_REMOVEDIR); }

/* Dir:rmtree(rel) -> true; "" empties the Dir itself; missing is fine */
static int d_rmtree(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  CHECK_REL(L, 2, rel, display);
  struct fserr e = {0, NULL, NULL, NULL};
  const char *r = rel;
  while (*r == '/' || (r[0] == '.' && (r[1] == '/' || !r[1]))) r++;
  if (!*r) {
    int fd = openat(d->fd, ".", DIR_FLAGS);
    if (fd < 0) return fail(L, errno, display, NULL);
    if (empty_dir_fd(fd, NULL, display, &e)) return fserr_push(L, &e);
    return push_true(L);
  }
  int pfd;
  char *base;
  int err = open_parent(d->fd, rel, &pfd, &base);
  if (err) return err == ENOENT ? push_true(L) : fail(L, err, display, NULL);
  struct stat st, pst;
  if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    err = errno == ENOENT ? 0 : fserr_set(&e, errno, display, "", NULL);
  } else if (!S_ISDIR(st.st_mode)) {
    if (unlinkat(pfd, base, 0) != 0 && errno != ENOENT) err = fserr_set(&e, errno, display, "", NULL);
  } else {
    int fd = openat(pfd, base, DIR_FLAGS | O_NOFOLLOW);
    if (fd < 0) {
      if (errno != ENOENT) err = fserr_set(&e, classify(pfd, base, errno), display, "", NULL);
    } else if (fstat(pfd, &pst) != 0) {
      err = fserr_set(&e, errno, display, "", NULL);
      close(fd);
    } else if (!(err = empty_dir_fd(fd, &pst, display, &e)) && unlinkat(pfd, base, AT_REMOVEDIR) != 0 &&
               errno != ENOENT) {
      err = fserr_set(&e, errno, display, "", NULL);
    }
  }
  close(pfd);
  free(base);
  return err ? fserr_push(L, &e) : push_true(L);
}

/* Dir:rename(from, to [, todir]) -> true; renameat beneath both */
static int d_rename(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  int to_idx = 1;
  if (!lua_isnoneornil(L, 4)) {
    check_dir(L, 4);
    to_idx = 4;
  }
  lua_settop(L, 4);
  lua_pushvalue(L, 1); /* keeps this Dir alive while slot 1 holds todir */
  CHECK_REL(L, 2, from, from_display);
  /* the destination's display path comes from its own Dir */
  lua_pushvalue(L, to_idx);
  lua_replace(L, 1);
  struct handle *td = check_dir(L, 1);
  CHECK_REL(L, 3, to, to_display);
  int fpfd = -1, tpfd = -1;
  char *fbase = NULL, *tbase = NULL;
  int err = open_parent(d->fd, from, &fpfd, &fbase);
  const char *which = from_display;
  if (!err) {
    which = to_display;
    err = open_parent(td->fd, to, &tpfd, &tbase);
  }
  if (!err && renameat(fpfd, fbase, tpfd, tbase) != 0) {
    err = last_err();
    which = NULL;
  }
  if (fpfd >= 0) close(fpfd);
  if (tpfd >= 0) close(tpfd);
  free(fbase);
  free(tbase);
  if (!err) return push_true(L);
  if (which) return fail(L, err, which, NULL);
  return ct_error(L, err, "%s -> %s: %s", from_display, to_display, strerror(err));
}

/* Dir:chmod(rel, mode) -> true; a symlink is refused */
static int d_chmod(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  mode_t mode = check_mode(L, 3);
  CHECK_REL(L, 2, rel, display);
  int fd = open_path(d->fd, rel);
  if (fd < 0) return fail(L, errno, display, NULL);
  struct stat st;
  int err = fstat(fd, &st) != 0 ? last_err() : S_ISLNK(st.st_mode) ? ELOOP : chmod_fd(fd, mode);
  close(fd);
  return err ? fail(L, err, display, NULL) : push_true(L);
}

/* Dir:chown(rel, uid, gid) -> true; a symlink is re-owned itself */
static int d_chown(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  uid_t uid = (uid_t)check_id(L, 3);
  gid_t gid = (gid_t)check_id(L, 4);
  CHECK_REL(L, 2, rel, display);
  int fd = open_path(d->fd, rel);
  if (fd < 0) return fail(L, errno, display, NULL);
  int err = fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0 ? last_err() : 0;
  close(fd);
  return err ? fail(L, err, display, NULL) : push_true(L);
}

/* ---- shift_tree ------------------------------------------------------- */

struct idmap {
  uint32_t from_uid, from_gid, to_uid, to_gid, size;
  int keep_setid; /* put back the setuid/setgid bits chown clears */
};

static uint32_t map_one(uint32_t id, uint32_t from, uint32_t to, uint32_t size, int *hit) {
  if (id >= from && id - from < size) {
    *hit = 1;
    return to + (id - from);
  }
  return id;
}

/* Re-owns name in dirfd ("" with AT_EMPTY_PATH: dirfd itself) whose lstat is
   *st. chown clears setuid/setgid on a regular file: they are put back
   when m->keep_setid (an image's rootfs needs them; an app's own trees do
   not, and a setuid file an app made must not become host root's).
   Returns 0 or an errno; *changed is incremented when it was re-owned. */
static int shift_entry(int dirfd, const char *name, const struct stat *st, const struct idmap *m,
                       lua_Integer *changed) {
  int hit = 0;
  uid_t uid = map_one(st->st_uid, m->from_uid, m->to_uid, m->size, &hit);
  gid_t gid = map_one(st->st_gid, m->from_gid, m->to_gid, m->size, &hit);
  if (!hit) return 0;
  int flags = AT_SYMLINK_NOFOLLOW | (*name ? 0 : AT_EMPTY_PATH);
  if (fchownat(dirfd, name, uid, gid, flags) != 0) return errno == ENOENT ? 0 : last_err();
  (*changed)++;
  if (m->keep_setid && S_ISREG(st->st_mode) && (st->st_mode & (S_ISUID | S_ISGID))) {
    int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : last_err();
    struct stat now;
    int err = fstat(fd, &now) != 0 ? last_err() : 0;
    /* only the file we re-owned, and only if it is still a regular file */
    if (!err && S_ISREG(now.st_mode) && now.st_ino == st->st_ino && now.st_dev == st->st_dev)
      err = chmod_fd(fd, st->st_mode & 07777);
    close(fd);
    return err;
  }
  return 0;
}

struct shift {
  const struct idmap *m;
  lua_Integer changed;
};

/* Re-owns each entry; a directory of another filesystem (a mount) is
   re-owned, not entered. */
static int shift_visit(struct tw *v, struct frame *t, const char *name, const struct stat *st) {
  struct shift *sh = v->ctx;
  int err = shift_entry(t->fd, name, st, sh->m, &sh->changed);
  if (err) return tw_fail(v, err, NULL);
  if (!S_ISDIR(st->st_mode) || st->st_dev != t->st.st_dev) return 0;
  struct stat cst = *st;
  int cfd = tw_opendir(t, name, &cst, 0);
  if (cfd < 0) return errno == ENOENT ? 0 : tw_fail(v, classify(t->fd, name, errno), NULL);
  return tw_enter(v, cfd, -1, &cst);
}

static uint32_t get_id(lua_State *L, int arg, const char *k) {
  lua_getfield(L, arg, k);
  lua_Integer v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : -1;
  lua_pop(L, 1);
  if (v < 0 || v > (lua_Integer)UINT32_MAX)
    luaL_error(L, "bad argument #%d (field '%s' must be an id, 0 .. 2^32-1)", arg - 1, k);
  return (uint32_t)v;
}

/* Dir:shift_tree(rel, from, to [, {keep_setid = true}]) -> entries changed */
static int d_shift_tree(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TTABLE);
  struct idmap m;
  m.keep_setid = 1;
  if (!lua_isnoneornil(L, 5)) {
    luaL_checktype(L, 5, LUA_TTABLE);
    if (lua_getfield(L, 5, "keep_setid") != LUA_TNIL) m.keep_setid = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  m.from_uid = get_id(L, 3, "uid");
  m.from_gid = get_id(L, 3, "gid");
  m.size = get_id(L, 3, "size");
  m.to_uid = get_id(L, 4, "uid");
  m.to_gid = get_id(L, 4, "gid");
  lua_getfield(L, 4, "size");
  if (!lua_isnil(L, -1))
    luaL_argcheck(L, lua_isinteger(L, -1) && (uint64_t)lua_tointeger(L, -1) == m.size, 4,
                  "to.size must equal from.size");
  lua_pop(L, 1);
  luaL_argcheck(L, (uint64_t)m.from_uid + m.size <= UINT32_MAX + 1ull &&
                       (uint64_t)m.from_gid + m.size <= UINT32_MAX + 1ull,
                3, "range out of bounds");
  luaL_argcheck(L, (uint64_t)m.to_uid + m.size <= UINT32_MAX + 1ull &&
                       (uint64_t)m.to_gid + m.size <= UINT32_MAX + 1ull,
                4, "range out of bounds");
  lua_settop(L, 2);
  CHECK_REL(L, 2, rel, display);
  struct shift sh = {&m, 0};
  struct fserr e = {0, NULL, NULL, NULL};
  int fd = open_path(d->fd, rel);
  if (fd < 0) return fail(L, errno, display, NULL);
  struct stat st;
  int err = fstat(fd, &st) != 0 ? fserr_set(&e, errno, display, "", NULL) : 0;
  if (!err && (err = shift_entry(fd, "", &st, &m, &sh.changed))) fserr_set(&e, err, display, "", NULL);
  if (err || !S_ISDIR(st.st_mode)) {
    close(fd);
    if (err) return fserr_push(L, &e);
    lua_pushinteger(L, sh.changed);
    return 1;
  }
  int dfd = openat(fd, ".", DIR_FLAGS);
  close(fd);
  if (dfd < 0) return fail(L, errno, display, NULL);
  struct tw v = {.e = &e, .display = display, .entry = shift_visit, .ctx = &sh};
  if (tw_run(&v, dfd, -1, &st)) return fserr_push(L, &e);
  lua_pushinteger(L, sh.changed);
  return 1;
}

/* Dir:du(rel) -> bytes, files */
static int d_du(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  CHECK_REL(L, 2, rel, display);
  int fd = open_path(d->fd, rel);
  if (fd < 0) return fail(L, errno, display, NULL);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close_keep_errno(fd);
    return fail(L, errno, display, NULL);
  }
  lua_Integer bytes = st.st_size, files = 1;
  if (S_ISDIR(st.st_mode)) {
    int dfd = openat(fd, ".", DIR_FLAGS);
    close_keep_errno(fd);
    if (dfd < 0) return fail(L, errno, display, NULL);
    struct fserr e = {0, NULL, NULL, NULL};
    if (du_fd(dfd, display, &bytes, &files, &e)) return fserr_push(L, &e);
  } else {
    close(fd);
  }
  lua_pushinteger(L, bytes);
  lua_pushinteger(L, files);
  return 2;
}

/* One Dir:walk record, appended to the table on top. */
static void push_walked(lua_State *L, lua_Integer i, const char *path, const struct stat *st, int opaque) {
  lua_createtable(L, 0, 10);
  lua_pushstring(L, path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, type_name(st->st_mode));
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, st->st_mode & 07777);
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, st->st_uid);
  lua_setfield(L, -2, "uid");
  lua_pushinteger(L, st->st_gid);
  lua_setfield(L, -2, "gid");
  lua_pushinteger(L, (lua_Integer)st->st_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)st->st_rdev);
  lua_setfield(L, -2, "rdev");
  /* diff of an own copy against its layers tells a rewritten file by it,
     as the extraction keeps each entry's time */
  lua_pushinteger(L, (lua_Integer)st->st_mtim.tv_sec);
  lua_setfield(L, -2, "mtime");
  lua_pushinteger(L, (lua_Integer)st->st_mtim.tv_nsec);
  lua_setfield(L, -2, "mtime_nsec");
  lua_pushboolean(L, opaque);
  lua_setfield(L, -2, "opaque");
  lua_rawseti(L, -2, i);
}

struct dwalk {
  lua_State *L;
  lua_Integer n;
};

static int walk_visit(struct tw *v, struct frame *t, const char *name, const struct stat *st) {
  struct dwalk *dw = v->ctx;
  if (!S_ISDIR(st->st_mode)) {
    push_walked(dw->L, ++dw->n, pb_str(&v->w.rel), st, 0);
    return 0;
  }
  struct stat now = *st;
  int cfd = tw_opendir(t, name, &now, 1);
  if (cfd < 0) return 0; /* swapped for a symlink or removed meanwhile: not entered */
  push_walked(dw->L, ++dw->n, pb_str(&v->w.rel), &now, ct_fd_opaque(cfd));
  if (now.st_dev == t->st.st_dev) return tw_enter(v, cfd, -1, &now);
  close(cfd);
  return 0;
}

/* Dir:walk(rel) -> {{path=, type=, mode=, uid=, gid=, size=, rdev=, mtime=, mtime_nsec=, opaque=}, ...}:
   what is beneath rel, a directory before its contents, names in byte
   order, paths relative to rel; no symlink followed, no mount entered (a
   mount point is listed). opaque: trusted.overlay.opaque = "y" (a
   directory of an overlay upper). */
static int d_walk(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  lua_settop(L, 2);
  CHECK_REL(L, 2, rel, display);
  int fd = open_beneath(d->fd, rel, DIR_FLAGS, 0);
  if (fd < 0) return fail(L, errno, display, NULL);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close_keep_errno(fd);
    return fail(L, errno, display, NULL);
  }
  lua_newtable(L);
  struct fserr e = {0, NULL, NULL, NULL};
  struct dwalk dw = {L, 0};
  struct tw v = {.e = &e, .display = display, .entry = walk_visit, .ctx = &dw};
  if (tw_run(&v, fd, -1, &st)) return fserr_push(L, &e);
  return 1;
}

static int d_tostring(lua_State *L) {
  struct handle *h = luaL_checkudata(L, 1, DIR_MT);
  lua_pushfstring(L, "ct.fs.Dir (%s%s)", handle_path(L, 1), h->fd < 0 ? ", closed" : "");
  return 1;
}

/* ---- File ------------------------------------------------------------- */

static int file_fail(lua_State *L, int err) { return fail(L, err, handle_path(L, 1), NULL); }

/* File:read(n) -> up to n bytes; "" at EOF */
static int f_read(lua_State *L) {
  struct handle *f = check_file(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0, 2, "negative size");
  int err = push_read(L, f->fd, (size_t)n);
  return err ? file_fail(L, err) : 1;
}

/* File:read_all([max]) -> the rest of the file; more than max is EFBIG */
static int f_read_all(lua_State *L) {
  struct handle *f = check_file(L, 1);
  lua_Integer max = opt_max(L, 2);
  return read_rest(L, f->fd, max, handle_path(L, 1));
}

/* File:write(s) -> true */
static int f_write(lua_State *L) {
  struct handle *f = check_file(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  int err = write_all(f->fd, s, len);
  return err ? file_fail(L, err) : push_true(L);
}

/* File:seek([whence="cur" [, offset=0]]) -> position */
static int f_seek(lua_State *L) {
  static const char *const names[] = {"set", "cur", "end", NULL};
  static const int modes[] = {SEEK_SET, SEEK_CUR, SEEK_END};
  struct handle *f = check_file(L, 1);
  int op = luaL_checkoption(L, 2, "cur", names);
  lua_Integer off = luaL_optinteger(L, 3, 0);
  off_t pos = lseek(f->fd, (off_t)off, modes[op]);
  if (pos < 0) return file_fail(L, errno);
  lua_pushinteger(L, (lua_Integer)pos);
  return 1;
}

/* File:stat() -> table */
static int f_stat(lua_State *L) {
  struct handle *f = check_file(L, 1);
  struct stat st;
  if (fstat(f->fd, &st) != 0) return file_fail(L, errno);
  push_stat(L, &st);
  return 1;
}

/* File:truncate(n) -> true */
static int f_truncate(lua_State *L) {
  struct handle *f = check_file(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0, 2, "negative size");
  return ftruncate(f->fd, (off_t)n) != 0 ? file_fail(L, errno) : push_true(L);
}

/* File:fsync() -> true */
static int f_fsync(lua_State *L) {
  struct handle *f = check_file(L, 1);
  return fsync(f->fd) != 0 ? file_fail(L, errno) : push_true(L);
}

/* File:collapse(len) -> bytes removed from the start (see ct.fs.collapse);
   EOPNOTSUPP/EINVAL where the filesystem cannot, for the caller to copy */
static int f_collapse(lua_State *L) {
  struct handle *f = check_file(L, 1);
  lua_Integer len = luaL_checkinteger(L, 2);
  luaL_argcheck(L, len >= 0, 2, "negative length");
  struct stat st;
  if (fstat(f->fd, &st) != 0) return file_fail(L, errno);
  off_t n = collapse_len(&st, (off_t)len);
  if (n > 0 && fallocate(f->fd, FALLOC_FL_COLLAPSE_RANGE, 0, n) != 0) return file_fail(L, errno);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}


/* File:copy_to(other [, len]) -> bytes copied from this file's offset */
static int f_copy_to(lua_State *L) {
  struct handle *f = check_file(L, 1);
  struct handle *o = check_file(L, 2);
  uint64_t limit = UINT64_MAX;
  if (!lua_isnoneornil(L, 3)) {
    lua_Integer n = luaL_checkinteger(L, 3);
    luaL_argcheck(L, n >= 0, 3, "negative length");
    limit = (uint64_t)n;
  }
  uint64_t done;
  int wside;
  int err = copy_fds(f->fd, o->fd, limit, &done, &wside);
  if (err) return fail(L, err, handle_path(L, wside ? 2 : 1), NULL);
  lua_pushinteger(L, (lua_Integer)done);
  return 1;
}

/* Compresses from in's offset to EOF into out. Returns 0, an errno, or -1
   with *zerr set (a zstd failure). */
static int zstd_fds(int in, int out, int level, uint64_t *bin, uint64_t *bout, int *wside,
                    const char **zerr) {
  *bin = *bout = 0;
  *wside = 0;
  size_t icap = ZSTD_CStreamInSize(), ocap = ZSTD_CStreamOutSize();
  ZSTD_CCtx *cc = ZSTD_createCCtx();
  char *ibuf = malloc(icap), *obuf = malloc(ocap);
  int err = 0;
  if (!cc || !ibuf || !obuf) err = ENOMEM;
  size_t r;
  if (!err && (ZSTD_isError(r = ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, level)) ||
               ZSTD_isError(r = ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1)))) {
    *zerr = ZSTD_getErrorName(r);
    err = -1;
  }
  while (!err) {
    ssize_t n = read(in, ibuf, icap);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    int last = n == 0;
    ZSTD_inBuffer ib = {ibuf, (size_t)n, 0};
    for (;;) {
      ZSTD_outBuffer ob = {obuf, ocap, 0};
      size_t rem = ZSTD_compressStream2(cc, &ob, &ib, last ? ZSTD_e_end : ZSTD_e_continue);
      if (ZSTD_isError(rem)) {
        *zerr = ZSTD_getErrorName(rem);
        err = -1;
        break;
      }
      if ((err = write_all(out, obuf, ob.pos))) {
        *wside = 1;
        break;
      }
      *bout += ob.pos;
      if (last ? rem == 0 : ib.pos == ib.size) break;
    }
    *bin += (uint64_t)n;
    if (last) break;
  }
  ZSTD_freeCCtx(cc);
  free(ibuf);
  free(obuf);
  return err;
}

/* File:zstd_to(other [, level=3]) -> bytes_in, bytes_out; in process, one
   zstd frame with a checksum, from this file's offset to its end */
static int f_zstd_to(lua_State *L) {
  struct handle *f = check_file(L, 1);
  struct handle *o = check_file(L, 2);
  lua_Integer level = luaL_optinteger(L, 3, 3);
  luaL_argcheck(L, level >= 1 && level <= ZSTD_maxCLevel(), 3, "level out of range");
  uint64_t bin, bout;
  int wside;
  const char *zerr = NULL;
  int err = zstd_fds(f->fd, o->fd, (int)level, &bin, &bout, &wside, &zerr);
  if (err < 0) return ct_error(L, EIO, "%s: zstd: %s", handle_path(L, 1), zerr);
  if (err) return fail(L, err, handle_path(L, wside ? 2 : 1), NULL);
  lua_pushinteger(L, (lua_Integer)bin);
  lua_pushinteger(L, (lua_Integer)bout);
  return 2;
}

/* File:path() -> display path */
static int f_path(lua_State *L) {
  luaL_checkudata(L, 1, FILE_MT);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

static int f_tostring(lua_State *L) {
  struct handle *h = luaL_checkudata(L, 1, FILE_MT);
  lua_pushfstring(L, "ct.fs.File (%s%s)", handle_path(L, 1), h->fd < 0 ? ", closed" : "");
  return 1;
}

/* ---- for layer.c: the same resolution by descriptor -------------------- */

int ct_open_beneath(int dirfd, const char *rel, int flags, mode_t mode) {
  const char *why = bad_rel(rel);
  if (why) {
    errno = why == MSG_ABS ? EINVAL : EPERM;
    return -1;
  }
  return open_beneath(dirfd, rel, flags, mode);
}

int ct_mkdirs_beneath(int dirfd, const char *rel, mode_t mode, int *out) {
  return bad_rel(rel) ? EPERM : mkdirs(dirfd, rel, mode, out);
}

/* ---- registration ----------------------------------------------------- */

static const luaL_Reg dir_methods[] = {
    {"opendir", d_opendir},   {"path", d_path},       {"stat", d_stat},
    {"exists", d_exists},     {"mkdir", d_mkdir},     {"open", d_open},
    {"read", d_read},         {"write_atomic", d_write_atomic},
    {"list", d_list},         {"unlink", d_unlink},   {"rmdir", d_rmdir},
    {"rmtree", d_rmtree},     {"rename", d_rename},   {"chmod", d_chmod},
    {"chown", d_chown},       {"shift_tree", d_shift_tree},
    {"du", d_du},             {"copytree", d_copytree}, {"walk", d_walk}, {"close", dir_close},   {NULL, NULL},
};

static const luaL_Reg file_methods[] = {
    {"read", f_read},         {"read_all", f_read_all}, {"write", f_write},
    {"seek", f_seek},         {"stat", f_stat},         {"truncate", f_truncate},
    {"fsync", f_fsync},       {"collapse", f_collapse}, {"copy_to", f_copy_to},
    {"zstd_to", f_zstd_to},   {"path", f_path},         {"close", file_close},
    {NULL, NULL},
};

static void new_class(lua_State *L, const char *mt, const luaL_Reg *methods, lua_CFunction gc,
                      lua_CFunction tostr) {
  if (luaL_newmetatable(L, mt)) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, tostr);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
}

int luaopen_ct_fs_beneath(lua_State *L) {
  new_class(L, DIR_MT, dir_methods, dir_close, d_tostring);
  new_class(L, FILE_MT, file_methods, file_close, f_tostring);
  lua_pushcfunction(L, fs_opendir);
  lua_setfield(L, -2, "opendir");
  return 0;
}
