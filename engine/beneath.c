/* ct.fs.opendir: directory handles for the trees an app can write, and the path resolution every ct.fs operation shares.

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

   Every operation is one C function on (a descriptor, a path, a
   resolution) (struct at): called as a Dir method it resolves as above;
   called as ct.fs.<name>, the descriptor is AT_FDCWD and the path resolves
   as the host resolves it (absolute paths, symlinks followed where the
   by-name function follows them). Tree walks ride on walk.c's visitor. */
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
   added. in_root: symlinks are followed instead, each resolved inside
   dirfd as if it were "/" (openat2 only: else ENOSYS). Returns a
   descriptor, or -1 with errno (ELOOP: a symlink). */
static int open_beneath(int dirfd, const char *rel, int flags, mode_t mode, int in_root) {
  flags |= (in_root ? 0 : O_NOFOLLOW) | O_CLOEXEC;
  if (!*rel) rel = ".";
  if (in_root && !ct_beneath_openat2()) {
    errno = ENOSYS; /* no walk can follow a symlink and stay inside */
    return -1;
  }
  if (ct_beneath_openat2()) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)flags;
    how.mode = (flags & O_CREAT) ? mode : 0;
    how.resolve = RESOLVE_NO_MAGICLINKS |
                  (in_root ? RESOLVE_IN_ROOT : RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
    for (int tries = 0;; tries++) {
      long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
      if (fd >= 0) return (int)fd;
      /* EAGAIN: a rename raced the lookup; the kernel asks for a retry */
      if (errno == EINTR || (errno == EAGAIN && tries < 64)) continue;
      if (errno == ENOTDIR && !(flags & O_PATH) && !in_root) {
        /* O_DIRECTORY on a final symlink says ENOTDIR: call it what it is */
        int pfd = open_beneath(dirfd, rel, O_PATH, 0, 0);
        struct stat st;
        int link = pfd >= 0 && fstat(pfd, &st) == 0 && S_ISLNK(st.st_mode);
        if (pfd >= 0) close(pfd);
        errno = link ? ELOOP : ENOTDIR;
        return -1;
      }
      if (errno != ENOSYS) return -1;
      use_openat2 = 0; /* a kernel before 5.6 */
      if (in_root) return -1;
      break;
    }
  }
  return walk_open(dirfd, rel, flags, mode);
}

/* rel opened as a resolves it; O_CLOEXEC is added (and O_NOFOLLOW beneath
   a Dir). A descriptor, or -1 with errno. */
int ct_at_open(const struct at *a, const char *rel, int flags, mode_t mode) {
  if (a->dir) return open_beneath(a->fd, rel, flags, mode, a->in_root);
  return openat(AT_FDCWD, rel, flags | O_CLOEXEC, mode);
}

/* The last component of rel (no trailing slashes) in a malloc'd copy, and
   its parent opened DIR_FLAGS as a resolves it. Returns 0 or an errno; a
   rel with no last component ("", ".", "..", "/") is EINVAL. */
int ct_at_parent(const struct at *a, const char *rel, int *pfd, char **base) {
  *pfd = -1;
  *base = NULL;
  size_t n = strlen(rel);
  while (n > 0 && rel[n - 1] == '/') n--;
  size_t b = n;
  while (b > 0 && rel[b - 1] != '/') b--;
  if (b == n || (rel[b] == '.' && (n - b == 1 || (n - b == 2 && rel[b + 1] == '.')))) return EINVAL;
  char *parent = strndup(rel, b);
  if (!parent || !(*base = strndup(rel + b, n - b))) {
    free(parent);
    return ENOMEM;
  }
  *pfd = ct_at_open(a, *parent ? parent : ".", DIR_FLAGS, 0);
  int err = *pfd < 0 ? last_err() : 0;
  free(parent);
  if (err) {
    free(*base);
    *base = NULL;
  }
  return err;
}

/* mkdir(2) with the exact mode (no umask) of a directory we just made. */
int ct_fix_mode(int fd, mode_t mode) {
  struct stat st;
  if (fstat(fd, &st) != 0) return last_err();
  if ((st.st_mode & 07777) != mode && fchmod(fd, mode) != 0) return last_err();
  return 0;
}

/* mkdir -p of rel as a resolves it, one component at a time; *out (if not
   NULL) gets the last directory, DIR_FLAGS. An existing component that is
   not a directory (beneath a Dir: or is a symlink) is refused. Returns 0
   or an errno. */
int ct_mkdirs(const struct at *a, const char *rel, mode_t mode, int *out) {
  const int nofollow = a->dir ? O_NOFOLLOW : 0;
  if (out) *out = -1;
  char *buf = strdup(rel);
  if (!buf) return ENOMEM;
  int cur = ct_at_open(a, *rel == '/' ? "/" : ".", DIR_FLAGS, 0);
  int err = cur < 0 ? last_err() : 0;
  for (char *p = buf; !err && *p;) {
    char *next = strchr(p, '/');
    if (next) {
      *next++ = '\0';
      while (*next == '/') next++;
    }
    if (*p && strcmp(p, ".") != 0) {
      int made = 0, fd = openat(cur, p, DIR_FLAGS | nofollow);
      if (fd < 0 && errno == ENOENT) {
        if (mkdirat(cur, p, mode) == 0)
          made = 1;
        else if (errno != EEXIST)
          err = last_err();
        if (!err) fd = openat(cur, p, DIR_FLAGS | nofollow);
      }
      if (!err && fd < 0) err = ct_classify(cur, p, last_err());
      if (err == ENOTDIR && !a->dir && (!next || !*next)) err = EEXIST; /* by name: the last one is there */
      if (!err && made) err = ct_fix_mode(fd, mode);
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

/* Opens the file rel as a resolves it: by name plainly (any type), beneath
   a Dir only a regular file, as the header comment says (an in_root Dir
   follows a final symlink unless creating). flags: the access
   mode plus O_APPEND/O_TRUNC; create/excl as O_CREAT/O_EXCL. Returns 0
   with *out, or an errno with *msg set when not strerror's. */
int ct_open_file(const struct at *a, const char *rel, int flags, int create, int excl, mode_t mode,
                 int *out, const char **msg) {
  *out = -1;
  *msg = NULL;
  if (!a->dir) {
    flags |= O_NOCTTY | (create ? O_CREAT : 0) | (excl ? O_EXCL : 0);
    *out = openat(AT_FDCWD, rel, flags | O_CLOEXEC, mode);
    return *out < 0 ? last_err() : 0;
  }
  struct stat st;
  memset(&st, 0, sizeof st);
  if (a->in_root && !create) {
    /* the last component is followed too, inside the root like the rest */
    int p = open_beneath(a->fd, rel, O_PATH, 0, 1);
    *out = p < 0 ? -1 : ct_open_regular(p, NULL, flags, NULL, &st);
    int err = *out < 0 ? last_err() : 0;
    if (p >= 0) close(p);
    if (err == EINVAL) *msg = type_article(st.st_mode);
    return err;
  }
  int pfd;
  char *base;
  int err = ct_at_parent(a, rel, &pfd, &base);
  if (err) return err;
  int fd = -1;
  for (int tries = 0; tries < 16 && fd < 0 && !err; tries++) {
    if (!(create && excl)) {
      fd = ct_open_regular(pfd, base, flags, NULL, &st);
      if (fd >= 0 || errno != ENOENT || !create) {
        err = fd < 0 ? last_err() : 0;
        break;
      }
    }
    /* O_EXCL never opens an existing entry, a symlink included */
    fd = openat(pfd, base, flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, mode);
    if (fd < 0 && (excl || errno != EEXIST)) err = last_err(); /* EEXIST: raced, look again */
  }
  if (!err && fd < 0) err = EAGAIN;
  if (err == EINVAL || err == ELOOP) *msg = type_article(st.st_mode);
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
  h->in_root = 0;
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

int ct_testhandle(lua_State *L, int idx, const char *mt) {
  return luaL_testudata(L, idx, mt) ? ct_handle_check(L, idx, mt)->fd : -1;
}

int ct_handle_close(lua_State *L, const char *mt) {
  struct handle *h = luaL_checkudata(L, 1, mt);
  if (h->fd >= 0) close(h->fd);
  h->fd = -1;
  return 0;
}

static int dir_close(lua_State *L) { return ct_handle_close(L, DIR_MT); }

/* Pushes the display path of rel in the Dir at dir: "dir/rel", or "dir"
   for "" and "."; rel itself by name (dir 0). */
static const char *push_display(lua_State *L, int dir, const char *rel) {
  if (!dir) return lua_pushstring(L, rel);
  const char *d = ct_handle_path(L, dir);
  if (!*rel || strcmp(rel, ".") == 0) return lua_pushstring(L, d);
  size_t dl = strlen(d);
  return lua_pushfstring(L, dl && d[dl - 1] == '/' ? "%s%s" : "%s/%s", d, rel);
}

/* The resolution of a call: a Dir at 1 (checked open), or by name. Returns
   the index of the first argument after it. */
int ct_at(lua_State *L, struct at *a) {
  struct handle *h = luaL_testudata(L, 1, DIR_MT) ? check_dir(L, 1) : NULL;
  a->dir = h ? 1 : 0;
  a->fd = h ? h->fd : AT_FDCWD;
  a->in_root = h ? h->in_root : 0;
  return a->dir + 1;
}

/* The path at arg as a resolves it, its display path pushed. Beneath a Dir
   an absolute path or ".." pushes nil, msg, EINVAL and returns NULL. */
const char *ct_at_rel(lua_State *L, const struct at *a, int arg, const char **display) {
  const char *rel = luaL_checkstring(L, arg);
  const char *why = a->dir ? bad_rel(rel) : NULL;
  if (why == MSG_ABS) {
    ct_error(L, EINVAL, "%s: %s: %s", ct_handle_path(L, a->dir), rel, why);
    return NULL;
  }
  *display = push_display(L, a->dir, rel);
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

/* ct.fs.opendir(path [, opts]) -> Dir; path is the operator's (trusted),
   only its last component must not be a symlink. opts.in_root: paths
   beneath it follow symlinks, resolved inside it (an image's tree). */
static int fs_opendir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  int in_root = opt_bool(L, 2, "in_root");
  struct handle *h = ct_new_handle(L, DIR_MT, 1);
  h->fd = open(path, DIR_FLAGS | O_NOFOLLOW);
  if (h->fd < 0) return ct_fail_at(L, errno, path, NULL);
  h->in_root = in_root;
  return 1;
}

/* Dir:opendir(rel [, mode]) -> Dir (in_root as this one); with mode,
   missing directories are made */
static int d_opendir(lua_State *L) {
  struct at a;
  ct_at(L, &a);
  int create = !lua_isnoneornil(L, 3);
  mode_t mode = opt_mode(L, 3, 0);
  AT_REL(L, &a, 2, rel, display);
  struct handle *h = ct_new_handle(L, DIR_MT, -1);
  h->in_root = a.in_root;
  int err = 0;
  if (create) {
    err = ct_mkdirs(&a, rel, mode, &h->fd);
  } else {
    h->fd = ct_at_open(&a, rel, DIR_FLAGS, 0);
    if (h->fd < 0) err = last_err();
  }
  if (err) return ct_fail_at(L, err, display, NULL);
  return 1;
}

/* Dir:path([rel]) -> display path */
static int d_path(lua_State *L) {
  luaL_checkudata(L, 1, DIR_MT);
  push_display(L, 1, luaL_optstring(L, 2, ""));
  return 1;
}

/* An O_PATH descriptor of rel itself (a symlink is not followed but
   opened), or -1 with errno. */
int ct_open_path(int dirfd, const char *rel) { return open_beneath(dirfd, rel, O_PATH, 0, 0); }

/* open(path [, opts]), Dir:open(rel [, opts]) -> File. opts: write (read
   and write), create, append, trunc, excl, mode (0640). Beneath a Dir only
   a regular file is opened (see ct_open_file). */
static int d_open(lua_State *L) {
  struct at a;
  int arg = ct_at(L, &a);
  int o = arg + 1;
  if (!lua_isnoneornil(L, o)) luaL_checktype(L, o, LUA_TTABLE);
  int write = opt_bool(L, o, "write");
  int create = opt_bool(L, o, "create");
  int append = opt_bool(L, o, "append");
  int trunc = opt_bool(L, o, "trunc");
  int excl = opt_bool(L, o, "excl");
  mode_t mode = opt_field(L, o, "mode") != LUA_TNIL ? check_mode(L, -1) : 0640;
  lua_pop(L, 1);
  luaL_argcheck(L, write || !(append || trunc), o, "append and trunc need write=true");
  luaL_argcheck(L, create || !excl, o, "excl needs create=true");
  lua_settop(L, arg);
  AT_REL(L, &a, arg, rel, display);
  struct handle *h = ct_new_handle(L, FILE_MT, -1);
  int flags = (write ? O_RDWR : O_RDONLY) | (append ? O_APPEND : 0) | (trunc ? O_TRUNC : 0);
  const char *msg;
  int err = ct_open_file(&a, rel, flags, create, excl, mode, &h->fd, &msg);
  if (err) return ct_fail_at(L, err, display, msg);
  return 1;
}

/* Reads the rest of fd (of size bytes, or 0: not known) into Lua; more
   than max (>= 0) bytes is EFBIG. */
int ct_read_rest(lua_State *L, int fd, lua_Integer max, size_t size, const char *display) {
  size_t limit = max >= 0 ? (size_t)max + 1 : SIZE_MAX;
  int err = push_read(L, fd, limit, size);
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
  return open_beneath(dirfd, rel, flags, mode, 0);
}

int ct_mkdirs_beneath(int dirfd, const char *rel, mode_t mode, int *out) {
  const struct at a = {dirfd, 1, 0};
  return bad_rel(rel) ? EPERM : ct_mkdirs(&a, rel, mode, out);
}

/* ---- registration ----------------------------------------------------- */

static const luaL_Reg dir_methods[] = {
    {"opendir", d_opendir},       {"path", d_path},   {"open", d_open},
    {"shift_tree", d_shift_tree}, {"walk", d_walk},   {"close", dir_close},
    {NULL, NULL},
};

/* Adds methods to Dir (the operations fs.c shares with ct.fs). */
void ct_dir_methods(lua_State *L, const luaL_Reg *methods) {
  luaL_getmetatable(L, DIR_MT);
  lua_getfield(L, -1, "__index");
  luaL_setfuncs(L, methods, 0);
  lua_pop(L, 2);
}

int luaopen_ct_fs_beneath(lua_State *L) {
  ct_class(L, DIR_MT, dir_methods, dir_close, d_tostring);
  ct_file_class(L);
  lua_pushcfunction(L, fs_opendir);
  lua_setfield(L, -2, "opendir");
  lua_pushcfunction(L, d_open);
  lua_setfield(L, -2, "open");
  return 0;
}
