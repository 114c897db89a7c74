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

#include <linux/openat2.h>

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452 /* the same number on every architecture */
#endif


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
int ct_classify(int dirfd, const char *name, int err) {
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
      if (fd < 0) err = ct_classify(cur, *p ? p : ".", errno);
      break;
    }
    if (strcmp(p, ".") != 0) {
      int nfd = openat(cur, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (nfd < 0) {
        err = ct_classify(cur, p, errno);
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
int ct_parent_beneath(int dirfd, const char *rel, int *pfd, char **base) {
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
      if (!err && fd < 0) err = ct_classify(cur, p, last_err());
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
int ct_chmod_fd(int fd, mode_t mode) {
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
  int err = ct_parent_beneath(dirfd, rel, &pfd, &base);
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

/* A new closed Dir or File (metatable mt) whose display path is the string
   at path_idx; it is on top of the stack. */
struct handle *ct_new_handle(lua_State *L, const char *mt, int path_idx) {
  path_idx = lua_absindex(L, path_idx);
  struct handle *h = lua_newuserdatauv(L, sizeof *h, 1);
  h->fd = -1;
  luaL_setmetatable(L, mt);
  lua_pushvalue(L, path_idx);
  lua_setiuservalue(L, -2, 1);
  return h;
}

struct handle *ct_handle_check(lua_State *L, int idx, const char *mt) {
  struct handle *h = luaL_checkudata(L, idx, mt);
  if (h->fd < 0) luaL_error(L, "attempt to use a closed %s", mt);
  return h;
}


/* The display path of the handle at idx (anchored in its uservalue). */
const char *ct_handle_path(lua_State *L, int idx) {
  lua_getiuservalue(L, idx, 1);
  const char *s = lua_tostring(L, -1);
  lua_pop(L, 1);
  return s;
}

int ct_testdir(lua_State *L, int idx) {
  struct handle *h = luaL_testudata(L, idx, DIR_MT);
  if (!h) return -1;
  if (h->fd < 0) luaL_error(L, "attempt to use a closed %s", DIR_MT);
  return h->fd;
}

int ct_handle_close(lua_State *L, const char *mt) {
  struct handle *h = luaL_checkudata(L, 1, mt);
  if (h->fd >= 0) close(h->fd);
  h->fd = -1;
  return 0;
}

static int dir_close(lua_State *L) { return ct_handle_close(L, DIR_MT); }

/* Pushes the display path of rel in the Dir at 1: "dir/rel", or "dir" for
   "" and ".". */
static const char *push_display(lua_State *L, const char *rel) {
  const char *dir = ct_handle_path(L, 1);
  if (!*rel || strcmp(rel, ".") == 0) return lua_pushstring(L, dir);
  size_t dl = strlen(dir);
  return lua_pushfstring(L, dl && dir[dl - 1] == '/' ? "%s%s" : "%s/%s", dir, rel);
}

/* The Dir at 1 and a checked relative path at arg; the display path is
   pushed. On a refused path, pushes nil, msg, EINVAL and returns NULL. */
const char *ct_check_rel(lua_State *L, int arg, const char **display) {
  const char *rel = luaL_checkstring(L, arg);
  const char *why = bad_rel(rel);
  if (why == MSG_ABS) {
    ct_error(L, EINVAL, "%s: %s: %s", ct_handle_path(L, 1), rel, why);
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
int ct_fail_at(lua_State *L, int err, const char *display, const char *msg) {
  if (!msg && err == ELOOP) msg = MSG_LINK;
  return ct_error(L, err, "%s: %s", display, msg ? msg : strerror(err));
}


/* ---- Dir -------------------------------------------------------------- */

/* ct.fs.opendir(path) -> Dir; path is the operator's (trusted), only its
   last component must not be a symlink */
static int fs_opendir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct handle *h = ct_new_handle(L, DIR_MT, 1);
  h->fd = open(path, DIR_FLAGS | O_NOFOLLOW);
  if (h->fd < 0) return ct_fail_at(L, errno, path, NULL);
  return 1;
}

/* Dir:opendir(rel [, mode]) -> Dir; with mode, missing directories are made */
static int d_opendir(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  int create = !lua_isnoneornil(L, 3);
  mode_t mode = opt_mode(L, 3, 0);
  CHECK_REL(L, 2, rel, display);
  struct handle *h = ct_new_handle(L, DIR_MT, -1);
  int err = 0;
  if (create) {
    err = mkdirs(d->fd, rel, mode, &h->fd);
  } else {
    h->fd = open_beneath(d->fd, rel, DIR_FLAGS, 0);
    if (h->fd < 0) err = last_err();
  }
  if (err) return ct_fail_at(L, err, display, NULL);
  return 1;
}

/* Dir:path([rel]) -> display path */
static int d_path(lua_State *L) {
  luaL_checkudata(L, 1, DIR_MT);
  push_display(L, luaL_optstring(L, 2, ""));
  return 1;
}

/* An O_PATH descriptor of rel itself (a symlink is not followed but
   opened), or -1 with errno. */
int ct_open_path(int dirfd, const char *rel) { return open_beneath(dirfd, rel, O_PATH, 0); }

/* Dir:stat(rel) -> table; never follows */
static int d_stat(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  CHECK_REL(L, 2, rel, display);
  struct stat st;
  int fd = ct_open_path(d->fd, rel);
  if (fd < 0) return ct_fail_at(L, errno, display, NULL);
  int r = fstat(fd, &st);
  close_keep_errno(fd);
  if (r != 0) return ct_fail_at(L, errno, display, NULL);
  push_stat(L, &st);
  return 1;
}

/* Dir:exists(rel) -> boolean (lstat semantics) */
static int d_exists(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  CHECK_REL(L, 2, rel, display);
  int fd = ct_open_path(d->fd, rel);
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

/* Dir:mkdir(rel, mode [, parents]) -> true */
static int d_mkdir(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  mode_t mode = check_mode(L, 3);
  if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TBOOLEAN);
  int parents = lua_toboolean(L, 4);
  CHECK_REL(L, 2, rel, display);
  if (parents) {
    int err = mkdirs(d->fd, rel, mode, NULL);
    return err ? ct_fail_at(L, err, display, NULL) : ct_true(L);
  }
  int pfd;
  char *base;
  int err = ct_parent_beneath(d->fd, rel, &pfd, &base);
  if (!err && mkdirat(pfd, base, mode) != 0) err = ct_classify(pfd, base, last_err());
  if (!err) {
    int fd = openat(pfd, base, DIR_FLAGS | O_NOFOLLOW);
    err = fd < 0 ? ct_classify(pfd, base, last_err()) : fix_mode(fd, mode);
    if (fd >= 0) close(fd);
  }
  if (pfd >= 0) close(pfd);
  free(base);
  if (err == EEXIST) {
    struct stat st;
    int fd = ct_open_path(d->fd, rel);
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) err = ELOOP;
    if (fd >= 0) close(fd);
  }
  return err ? ct_fail_at(L, err, display, NULL) : ct_true(L);
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
  struct handle *h = ct_new_handle(L, FILE_MT, -1);
  int flags = (write ? O_RDWR : O_RDONLY) | (append ? O_APPEND : 0) | (trunc ? O_TRUNC : 0);
  const char *msg;
  int err = open_file(d->fd, rel, flags, create, excl, mode, &h->fd, &msg);
  if (err) return ct_fail_at(L, err, display, msg);
  return 1;
}

/* Reads the rest of fd into Lua; more than max (>= 0) bytes is EFBIG. */
int ct_read_rest(lua_State *L, int fd, lua_Integer max, const char *display) {
  size_t limit = max >= 0 ? (size_t)max + 1 : SIZE_MAX;
  int err = push_read(L, fd, limit);
  if (err) return ct_fail_at(L, err, display, NULL);
  if (max >= 0 && lua_rawlen(L, -1) > (size_t)max)
    return ct_error(L, EFBIG, "%s: larger than %I bytes", display, max);
  return 1;
}

lua_Integer ct_opt_max(lua_State *L, int arg) {
  if (lua_isnoneornil(L, arg)) return -1;
  lua_Integer max = luaL_checkinteger(L, arg);
  luaL_argcheck(L, max >= 0, arg, "negative size");
  return max;
}

/* Dir:read(rel [, max]) -> string */
static int d_read(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  lua_Integer max = ct_opt_max(L, 3);
  lua_settop(L, 2);
  CHECK_REL(L, 2, rel, display);
  struct handle *h = ct_new_handle(L, FILE_MT, -1); /* closes the fd on a Lua error */
  const char *msg;
  int err = open_file(d->fd, rel, O_RDONLY, 0, 0, 0, &h->fd, &msg);
  if (err) return ct_fail_at(L, err, display, msg);
  struct stat st;
  if (max >= 0 && fstat(h->fd, &st) == 0 && st.st_size > max) {
    close(h->fd);
    h->fd = -1;
    return ct_error(L, EFBIG, "%s: larger than %I bytes", display, max);
  }
  int n = ct_read_rest(L, h->fd, max, display);
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
  int err = ct_parent_beneath(d->fd, rel, &pfd, &base);
  if (!err) {
    err = atomic_write_at(pfd, base, data, len, -1, mode);
    close(pfd);
    free(base);
  }
  return err ? ct_fail_at(L, err, display, NULL) : ct_true(L);
}

/* Dir:list(rel) -> sorted array of names */
static int d_list(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  CHECK_REL(L, 2, rel, display);
  int fd = open_beneath(d->fd, rel, DIR_FLAGS, 0);
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

static int remove_common(lua_State *L, int flags) {
  struct handle *d = check_dir(L, 1);
  CHECK_REL(L, 2, rel, display);
  int pfd;
  char *base;
  int err = ct_parent_beneath(d->fd, rel, &pfd, &base);
  if (!err) {
    if (unlinkat(pfd, base, flags) != 0) err = last_err();
    close(pfd);
    free(base);
  }
  return err ? ct_fail_at(L, err, display, NULL) : ct_true(L);
}

/* Dir:unlink(rel), Dir:rmdir(rel) -> true; a symlink is removed itself */
static int d_unlink(lua_State *L) { return remove_common(L, 0); }
static int d_rmdir(lua_State *L) { return remove_common(L, AT_REMOVEDIR); }

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
  int err = ct_parent_beneath(d->fd, from, &fpfd, &fbase);
  const char *which = from_display;
  if (!err) {
    which = to_display;
    err = ct_parent_beneath(td->fd, to, &tpfd, &tbase);
  }
  if (!err && renameat(fpfd, fbase, tpfd, tbase) != 0) {
    err = last_err();
    which = NULL;
  }
  if (fpfd >= 0) close(fpfd);
  if (tpfd >= 0) close(tpfd);
  free(fbase);
  free(tbase);
  if (!err) return ct_true(L);
  if (which) return ct_fail_at(L, err, which, NULL);
  return ct_error(L, err, "%s -> %s: %s", from_display, to_display, strerror(err));
}

/* Dir:chmod(rel, mode) -> true; a symlink is refused */
static int d_chmod(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  mode_t mode = check_mode(L, 3);
  CHECK_REL(L, 2, rel, display);
  int fd = ct_open_path(d->fd, rel);
  if (fd < 0) return ct_fail_at(L, errno, display, NULL);
  struct stat st;
  int err = fstat(fd, &st) != 0 ? last_err() : S_ISLNK(st.st_mode) ? ELOOP : ct_chmod_fd(fd, mode);
  close(fd);
  return err ? ct_fail_at(L, err, display, NULL) : ct_true(L);
}

/* Dir:chown(rel, uid, gid) -> true; a symlink is re-owned itself */
static int d_chown(lua_State *L) {
  struct handle *d = check_dir(L, 1);
  uid_t uid = (uid_t)check_id(L, 3);
  gid_t gid = (gid_t)check_id(L, 4);
  CHECK_REL(L, 2, rel, display);
  int fd = ct_open_path(d->fd, rel);
  if (fd < 0) return ct_fail_at(L, errno, display, NULL);
  int err = fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0 ? last_err() : 0;
  close(fd);
  return err ? ct_fail_at(L, err, display, NULL) : ct_true(L);
}

static int d_tostring(lua_State *L) {
  struct handle *h = luaL_checkudata(L, 1, DIR_MT);
  lua_pushfstring(L, "ct.fs.Dir (%s%s)", ct_handle_path(L, 1), h->fd < 0 ? ", closed" : "");
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

int luaopen_ct_fs_beneath(lua_State *L) {
  ct_class(L, DIR_MT, dir_methods, dir_close, d_tostring);
  ct_file_class(L);
  lua_pushcfunction(L, fs_opendir);
  lua_setfield(L, -2, "opendir");
  return 0;
}
