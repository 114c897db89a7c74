/* ct.fs: files, directories and whole trees.

   Tree walks (rmtree, copytree, du) are iterative: a heap stack of frames,
   one per directory level, each holding the directory's sorted entry names.
   Only the deepest WALK_OPEN_LEVELS levels keep their descriptors open; an
   older level is closed and reopened through ".." of its child when the walk
   comes back to it, and checked by dev/ino, so any depth works with a
   bounded number of descriptors. Every lookup inside a walk is relative to a
   directory descriptor with O_NOFOLLOW / AT_SYMLINK_NOFOLLOW: a walk never
   follows a symlink.

   The *_beneath functions resolve paths with openat2(RESOLVE_IN_ROOT |
   RESOLVE_NO_MAGICLINKS): `..`, absolute paths and symlinks (absolute or
   relative) all stay inside the given directory, as in a chroot. */
#include "ct.h"
#include "fs_int.h"

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

/* Directory levels of a walk whose descriptors stay open. */
#define WALK_OPEN_LEVELS 32



/* ---- small helpers ---------------------------------------------------- */

void close_keep_errno(int fd) {
  int e = errno;
  if (fd >= 0) close(fd);
  errno = e;
}

/* errno after a failed call, never 0 (callers treat 0 as success). */
int last_err(void) { return errno ? errno : EIO; }

int write_all(int fd, const char *p, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return last_err();
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

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
static const char *check_tree_path(lua_State *L, int arg) {
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

/* ---- directory listings ------------------------------------------------ */


void names_free(struct names *ns) {
  for (size_t i = 0; i < ns->n; i++) free(ns->v[i]);
  free(ns->v);
  ns->v = NULL;
  ns->n = 0;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted entry names of the directory open at fd (no "." / ".."); the
   descriptor itself stays open and usable. Returns 0 or an errno. */
int read_names(int fd, struct names *out) {
  out->v = NULL;
  out->n = 0;
  int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dfd < 0) return last_err();
  DIR *d = fdopendir(dfd);
  if (!d) {
    int e = last_err();
    close(dfd);
    return e;
  }
  rewinddir(d);
  size_t cap = 0;
  int err = 0;
  for (;;) {
    errno = 0;
    struct dirent *de = readdir(d);
    if (!de) {
      err = errno; /* 0 at the end */
      break;
    }
    const char *nm = de->d_name;
    if (nm[0] == '.' && (nm[1] == '\0' || (nm[1] == '.' && nm[2] == '\0'))) continue;
    if (out->n == cap) {
      size_t ncap = cap ? cap * 2 : 16;
      char **nv = realloc(out->v, ncap * sizeof *nv);
      if (!nv) {
        err = ENOMEM;
        break;
      }
      out->v = nv;
      cap = ncap;
    }
    if (!(out->v[out->n] = strdup(nm))) {
      err = ENOMEM;
      break;
    }
    out->n++;
  }
  closedir(d);
  if (err) {
    names_free(out);
    return err;
  }
  if (out->n > 1) qsort(out->v, out->n, sizeof *out->v, cmp_names);
  return 0;
}

/* ---- a growing relative path ------------------------------------------ */


/* Truncates to `len` and appends "/name" ("name" at the start). */
static int pb_set(struct pbuf *b, size_t len, const char *name) {
  size_t nl = strlen(name);
  size_t need = len + (len ? 1 : 0) + nl + 1;
  if (need > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) return ENOMEM;
    b->p = np;
    b->cap = cap;
  }
  b->len = len;
  if (len) b->p[b->len++] = '/';
  memcpy(b->p + b->len, name, nl + 1);
  b->len += nl;
  return 0;
}

static void pb_trunc(struct pbuf *b, size_t len) {
  if (b->p) b->p[len] = '\0';
  b->len = len;
}

const char *pb_str(const struct pbuf *b) { return b->p ? b->p : ""; }

/* ---- the iterative walker ---------------------------------------------- */




static void frame_close(struct frame *fr) {
  if (fr->fd >= 0) close(fr->fd);
  if (fr->dfd >= 0) close(fr->dfd);
  fr->fd = fr->dfd = -1;
}

void walk_free(struct walk *w) {
  for (size_t i = 0; i < w->depth; i++) {
    frame_close(&w->f[i]);
    names_free(&w->f[i].names);
  }
  free(w->f);
  free(w->rel.p);
  memset(w, 0, sizeof *w);
}

struct frame *walk_top(struct walk *w) { return &w->f[w->depth - 1]; }

/* Enters a directory: takes ownership of fd (and dfd, or -1), whose source
   stat is *st. Returns 0 or an errno (the descriptors are then closed). */
int walk_push(struct walk *w, int fd, int dfd, const struct stat *st) {
  if (w->depth == w->cap) {
    size_t ncap = w->cap ? w->cap * 2 : 16;
    struct frame *nf = realloc(w->f, ncap * sizeof *nf);
    if (!nf) {
      close(fd);
      if (dfd >= 0) close(dfd);
      return ENOMEM;
    }
    w->f = nf;
    w->cap = ncap;
  }
  struct frame *fr = &w->f[w->depth];
  memset(fr, 0, sizeof *fr);
  fr->fd = fd;
  fr->dfd = dfd;
  fr->st = *st;
  fr->dual = dfd >= 0;
  fr->plen = w->rel.len;
  if (dfd >= 0) {
    struct stat dst;
    if (fstat(dfd, &dst) != 0) {
      int e = errno;
      frame_close(fr);
      return e;
    }
    fr->ddev = dst.st_dev;
    fr->dino = dst.st_ino;
  }
  int err = read_names(fd, &fr->names);
  if (err) {
    frame_close(fr);
    return err;
  }
  w->depth++;
  if (w->depth > WALK_OPEN_LEVELS) frame_close(&w->f[w->depth - 1 - WALK_OPEN_LEVELS]);
  return 0;
}

/* The next event: EV_ENTRY with *name (w->rel is its relative path), or
   EV_LEAVE when the top directory has no more entries (w->rel is the
   directory's path); a negative errno on failure. */
int walk_next(struct walk *w, const char **name) {
  struct frame *t = walk_top(w);
  if (t->next < t->names.n) {
    *name = t->names.v[t->next++];
    int err = pb_set(&w->rel, t->plen, *name);
    return err ? -err : EV_ENTRY;
  }
  pb_trunc(&w->rel, t->plen);
  return EV_LEAVE;
}

/* Reopens a parked directory through "..", checking it is the same one. */
static int reopen_parent(int childfd, dev_t dev, ino_t ino, int *out) {
  int fd = openat(childfd, "..", DIR_FLAGS | O_NOFOLLOW);
  if (fd < 0) return last_err();
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = last_err();
    close(fd);
    return e;
  }
  if (st.st_dev != dev || st.st_ino != ino) {
    close(fd);
    return ESTALE; /* moved while we were inside it */
  }
  *out = fd;
  return 0;
}

/* Leaves the top directory: its parent becomes the top, with open
   descriptors. w->rel keeps the left directory's path. Returns 0 or an errno. */
int walk_pop(struct walk *w) {
  struct frame *t = walk_top(w);
  if (w->depth > 1) {
    struct frame *p = t - 1;
    int err;
    if (p->fd < 0 && (err = reopen_parent(t->fd, p->st.st_dev, p->st.st_ino, &p->fd))) return err;
    if (p->dual && p->dfd < 0 && (err = reopen_parent(t->dfd, p->ddev, p->dino, &p->dfd)))
      return err;
  }
  frame_close(t);
  names_free(&t->names);
  w->depth--;
  return 0;
}

/* The name in the (new) top directory of the directory just popped. */
const char *walk_popped_name(struct walk *w) {
  struct frame *t = walk_top(w);
  return t->names.v[t->next - 1];
}

/* ---- rmtree ------------------------------------------------------------ */

/* Owner rwx on a directory we are about to empty (a no-op for root, which
   needs none; a non-root owner cannot empty a read-only directory). */
static void ensure_rwx(int fd, const struct stat *st) {
  if ((st->st_mode & 0700) != 0700) (void)fchmod(fd, (st->st_mode & 07777) | 0700);
}

/* Is the directory open at fd the root of a mount? With no kernel support
   for STATX_ATTR_MOUNT_ROOT, a different st_dev than its parent's. */
static int is_mount_root(int fd, const struct stat *parent, const struct stat *st) {
  struct statx sx;
  if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_TYPE, &sx) == 0 &&
      (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT))
    return (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
  return parent && parent->st_dev != st->st_dev;
}

/* Opens a directory entry to empty it; one without read/search permission
   gets u+rwx first. */
static int rm_open_dir(int dirfd, const char *name, int *out) {
  *out = -1;
  int fd = openat(dirfd, name, DIR_FLAGS | O_NOFOLLOW);
  if (fd < 0 && errno == EACCES) {
    if (fchmodat(dirfd, name, 0700, AT_SYMLINK_NOFOLLOW) == 0)
      fd = openat(dirfd, name, DIR_FLAGS | O_NOFOLLOW);
    else
      errno = EACCES;
  }
  if (fd < 0) return last_err();
  *out = fd;
  return 0;
}

static const char MSG_MOUNT[] = "is a mount point (not removing across it)";

/* Empties the directory open at fd; see fs_int.h. */
int empty_dir_fd(int fd, const struct stat *parent, const char *display, struct fserr *e) {
  struct stat st;
  int err;
  if (fstat(fd, &st) != 0) {
    err = errno;
    close(fd);
    return fserr_set(e, err, display, "", NULL);
  }
  if (is_mount_root(fd, parent, &st)) {
    close(fd);
    return fserr_set(e, EBUSY, display, "", MSG_MOUNT);
  }
  ensure_rwx(fd, &st);

  struct walk w;
  memset(&w, 0, sizeof w);
  if ((err = walk_push(&w, fd, -1, &st))) {
    fserr_set(e, err, display, "", NULL);
    walk_free(&w);
    return err;
  }
  for (;;) {
    const char *name;
    int ev = walk_next(&w, &name);
    if (ev < 0) {
      err = fserr_set(e, -ev, display, pb_str(&w.rel), NULL);
      break;
    }
    struct frame *t = walk_top(&w);
    if (ev == EV_ENTRY) {
      if (unlinkat(t->fd, name, 0) == 0 || errno == ENOENT) continue;
      if (errno != EISDIR) {
        err = fserr_set(e, errno, display, pb_str(&w.rel), NULL);
        break;
      }
      int cfd;
      err = rm_open_dir(t->fd, name, &cfd);
      if (err == ENOENT) {
        err = 0;
        continue;
      }
      if (err) {
        fserr_set(e, err, display, pb_str(&w.rel), NULL);
        break;
      }
      struct stat cst;
      if (fstat(cfd, &cst) != 0) {
        err = fserr_set(e, errno, display, pb_str(&w.rel), NULL);
        close(cfd);
        break;
      }
      if (is_mount_root(cfd, &t->st, &cst)) {
        close(cfd);
        err = fserr_set(e, EBUSY, display, pb_str(&w.rel), MSG_MOUNT);
        break;
      }
      ensure_rwx(cfd, &cst);
      if ((err = walk_push(&w, cfd, -1, &cst))) {
        fserr_set(e, err, display, pb_str(&w.rel), NULL);
        break;
      }
    } else {
      if (w.depth == 1) break;
      if ((err = walk_pop(&w))) {
        fserr_set(e, err, display, pb_str(&w.rel), NULL);
        break;
      }
      t = walk_top(&w);
      if (unlinkat(t->fd, walk_popped_name(&w), AT_REMOVEDIR) != 0 && errno != ENOENT) {
        err = fserr_set(e, errno, display, pb_str(&w.rel), NULL);
        break;
      }
    }
  }
  walk_free(&w);
  return err;
}

/* Removes path and everything under it. Returns 0 or an errno (with *e). */
static int do_rmtree(const char *path, struct fserr *e) {
  const char *last = strrchr(path, '/');
  last = last ? last + 1 : path;
  if (last[0] == '.' && (last[1] == '\0' || (last[1] == '.' && last[2] == '\0')))
    return fserr_set(e, EINVAL, path, "", "refusing to remove '.' or '..'");
  struct stat st;
  if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : fserr_set(e, errno, path, "", NULL);
  if (!S_ISDIR(st.st_mode)) {
    if (unlink(path) != 0 && errno != ENOENT) return fserr_set(e, errno, path, "", NULL);
    return 0;
  }
  int fd, err = rm_open_dir(AT_FDCWD, path, &fd);
  if (err == ENOENT) return 0;
  if (err) return fserr_set(e, err, path, "", NULL);
  if ((err = empty_dir_fd(fd, NULL, path, e))) return err;
  if (rmdir(path) != 0 && errno != ENOENT) err = fserr_set(e, errno, path, "", NULL);
  return err;
}

/* ---- hard link table: (dev, ino) → first copy's relative path --------- */

static size_t hl_hash(dev_t dev, ino_t ino) {
  uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull;
  h ^= (uint64_t)dev + 0x7F4A7C159E3779B9ull + (h << 6) + (h >> 2);
  return (size_t)h;
}

static struct hl_entry *hl_slot(struct hl_entry *v, size_t cap, dev_t dev, ino_t ino) {
  size_t i = hl_hash(dev, ino) & (cap - 1);
  while (v[i].used && !(v[i].dev == dev && v[i].ino == ino)) i = (i + 1) & (cap - 1);
  return &v[i];
}

struct hl_entry *hl_find(struct hlset *h, dev_t dev, ino_t ino) {
  if (!h->cap) return NULL;
  struct hl_entry *s = hl_slot(h->v, h->cap, dev, ino);
  return s->used ? s : NULL;
}

/* Adds (dev, ino) with a copy of rel (or NULL). Returns 0 or ENOMEM. */
int hl_add(struct hlset *h, dev_t dev, ino_t ino, const char *rel) {
  if ((h->n + 1) * 2 > h->cap) {
    size_t ncap = h->cap ? h->cap * 2 : 64;
    struct hl_entry *nv = calloc(ncap, sizeof *nv);
    if (!nv) return ENOMEM;
    for (size_t i = 0; i < h->cap; i++)
      if (h->v[i].used) *hl_slot(nv, ncap, h->v[i].dev, h->v[i].ino) = h->v[i];
    free(h->v);
    h->v = nv;
    h->cap = ncap;
  }
  char *copy = NULL;
  if (rel && !(copy = strdup(rel))) return ENOMEM;
  struct hl_entry *s = hl_slot(h->v, h->cap, dev, ino);
  s->dev = dev;
  s->ino = ino;
  s->rel = copy;
  s->used = 1;
  h->n++;
  return 0;
}

void hl_free(struct hlset *h) {
  for (size_t i = 0; i < h->cap; i++)
    if (h->v[i].used) free(h->v[i].rel);
  free(h->v);
  memset(h, 0, sizeof *h);
}

/* ---- copying data ------------------------------------------------------ */

/* Copies up to limit bytes from in's offset to out. Returns 0 or an errno;
   *wside says the writing side failed. */
int copy_fds(int in, int out, uint64_t limit, uint64_t *done, int *wside) {
  *done = 0;
  *wside = 0;
  while (*done < limit) {
    uint64_t want = limit - *done;
    ssize_t n = copy_file_range(in, NULL, out, NULL, want > (1u << 30) ? (1u << 30) : (size_t)want, 0);
    if (n > 0) {
      *done += (uint64_t)n;
      continue;
    }
    if (n == 0) {
      if (*done > 0) return 0; /* EOF */
      break; /* nothing copied: maybe a file whose size is not known (procfs) */
    }
    if (errno == EINTR) continue;
    /* no copy_file_range between these two (O_APPEND is EBADF): read/write */
    if (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP ||
        errno == EBADF || errno == EPERM || errno == ETXTBSY) {
      break;
    }
    *wside = errno == ENOSPC || errno == EDQUOT || errno == EFBIG;
    return errno;
  }
  if (*done >= limit) return 0;
  char *buf = malloc(COPY_BUFSIZE);
  if (!buf) return ENOMEM;
  int err = 0;
  while (*done < limit) {
    uint64_t want = limit - *done;
    ssize_t n = read(in, buf, want > COPY_BUFSIZE ? COPY_BUFSIZE : (size_t)want);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    if (n == 0) break;
    if ((err = write_all(out, buf, (size_t)n))) {
      *wside = 1;
      break;
    }
    *done += (uint64_t)n;
  }
  free(buf);
  return err;
}

/* Copies from in's offset to EOF into out. A reflink (FICLONE) when the
   filesystem can, else copy_file_range, else read/write. Returns 0 or an
   errno; *wside says whether it came from the writing side. */
static int copy_data(int in, int out, int *wside) {
  *wside = 0;
  /* a reflink clones the whole file: only when we are at its start */
  struct stat st;
  if (fstat(in, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 && lseek(in, 0, SEEK_CUR) == 0 &&
      lseek(out, 0, SEEK_END) == 0 && ioctl(out, FICLONE, in) == 0)
    return 0;
  uint64_t done;
  return copy_fds(in, out, UINT64_MAX, &done, wside);
}

/* ---- extended attributes ---------------------------------------------- */

/* An entry's xattrs: through its descriptor, or (symlinks, special files)
   through /proc/self/fd/<dir>/<name> with the l* calls, which do not
   follow the last component. */
struct xat {
  int fd;
  char *path;
};

static int xat_path(struct xat *x, int dirfd, const char *name) {
  x->fd = -1;
  size_t n = strlen(name) + 48;
  if (!(x->path = malloc(n))) return ENOMEM;
  snprintf(x->path, n, "/proc/self/fd/%d/%s", dirfd, name);
  return 0;
}

static ssize_t xat_list(const struct xat *x, char *buf, size_t n) {
  return x->fd >= 0 ? flistxattr(x->fd, buf, n) : llistxattr(x->path, buf, n);
}

static ssize_t xat_get(const struct xat *x, const char *k, void *buf, size_t n) {
  return x->fd >= 0 ? fgetxattr(x->fd, k, buf, n) : lgetxattr(x->path, k, buf, n);
}

static int xat_set(const struct xat *x, const char *k, const void *v, size_t n) {
  return x->fd >= 0 ? fsetxattr(x->fd, k, v, n, 0) : lsetxattr(x->path, k, v, n, 0);
}

/* What "where possible" skips: no support on either filesystem, a
   namespace we may not write, an attribute gone meanwhile, no /proc. */
static int xattr_skippable(int err) {
  return err == ENOTSUP || err == EOPNOTSUPP || err == EPERM || err == EACCES || err == ENODATA ||
         err == ENOENT;
}

/* Copies every xattr it can. Returns 0 or an errno; *wside as copy_data. */
static int copy_xattrs(const struct xat *s, const struct xat *d, int *wside) {
  *wside = 0;
  char *list = NULL, *val = NULL;
  size_t vcap = 0;
  ssize_t n;
  int err = 0;
  for (;;) {
    n = xat_list(s, NULL, 0);
    if (n <= 0) break;
    char *nl = realloc(list, (size_t)n);
    if (!nl) {
      err = ENOMEM;
      break;
    }
    list = nl;
    ssize_t m = xat_list(s, list, (size_t)n);
    if (m < 0 && errno == ERANGE) continue;
    n = m;
    break;
  }
  if (n < 0 && !xattr_skippable(errno)) err = errno;
  for (ssize_t i = 0; !err && n > 0 && i < n; i += (ssize_t)strlen(list + i) + 1) {
    const char *k = list + i;
    ssize_t vn;
    for (;;) {
      vn = xat_get(s, k, NULL, 0);
      if (vn < 0) break;
      if ((size_t)vn > vcap || !val) {
        char *nv = realloc(val, vn ? (size_t)vn : 1);
        if (!nv) {
          err = ENOMEM;
          break;
        }
        val = nv;
        vcap = vn ? (size_t)vn : 1;
      }
      ssize_t got = xat_get(s, k, val, vcap);
      if (got < 0 && errno == ERANGE) continue;
      vn = got;
      break;
    }
    if (err) break;
    if (vn < 0) {
      if (!xattr_skippable(errno)) err = errno;
      continue;
    }
    if (xat_set(d, k, val, (size_t)vn) != 0 && !xattr_skippable(errno)) {
      err = errno;
      *wside = 1;
    }
  }
  free(list);
  free(val);
  return err;
}

/* ---- copytree ---------------------------------------------------------- */

struct cp {
  const char *src, *dst;
  int droot;           /* the destination root, for linkat of hard links */
  dev_t ddev;          /* the destination root, never copied into itself */
  ino_t dino;
  int root;            /* euid 0: owners must be kept */
  struct hlset hl;
  struct walk w;
  struct fserr *e;
};

static int cp_fail(struct cp *c, int err, int dst_side, const char *msg) {
  return fserr_set(c->e, err, dst_side ? c->dst : c->src, pb_str(&c->w.rel), msg);
}

static int owner_ok(struct cp *c, int r) { return r == 0 || (!c->root && errno == EPERM); }

static void times_of(const struct stat *st, struct timespec ts[2]) {
  ts[0] = st->st_atim;
  ts[1] = st->st_mtim;
}

/* Owner, mode, xattrs and times of a directory or regular file, through
   its descriptors (owner before mode: chown clears setuid bits; xattrs
   after chown: it clears security.capability). */
static int cp_meta_fd(struct cp *c, int sfd, int dfd, const struct stat *st) {
  if (!owner_ok(c, fchown(dfd, st->st_uid, st->st_gid))) return cp_fail(c, errno, 1, NULL);
  if (fchmod(dfd, st->st_mode & 07777) != 0) return cp_fail(c, errno, 1, NULL);
  struct xat xs = {sfd, NULL}, xd = {dfd, NULL};
  int wside, err = copy_xattrs(&xs, &xd, &wside);
  if (err) return cp_fail(c, err, wside, NULL);
  struct timespec ts[2];
  times_of(st, ts);
  if (futimens(dfd, ts) != 0) return cp_fail(c, errno, 1, NULL);
  return 0;
}

/* The same for a symlink or special file, by name in its directories. */
static int cp_meta_name(struct cp *c, int sdir, int ddir, const char *name, const struct stat *st) {
  if (!owner_ok(c, fchownat(ddir, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW)))
    return cp_fail(c, errno, 1, NULL);
  if (!S_ISLNK(st->st_mode) && fchmodat(ddir, name, st->st_mode & 07777, 0) != 0)
    return cp_fail(c, errno, 1, NULL);
  struct xat xs, xd;
  int err = xat_path(&xs, sdir, name);
  if (!err && (err = xat_path(&xd, ddir, name))) free(xs.path);
  if (err) return cp_fail(c, err, 0, NULL);
  int wside;
  err = copy_xattrs(&xs, &xd, &wside);
  free(xs.path);
  free(xd.path);
  if (err) return cp_fail(c, err, wside, NULL);
  struct timespec ts[2];
  times_of(st, ts);
  if (utimensat(ddir, name, ts, AT_SYMLINK_NOFOLLOW) != 0) return cp_fail(c, errno, 1, NULL);
  return 0;
}

static int cp_file(struct cp *c, struct frame *t, const char *name, const struct stat *st) {
  int in = openat(t->fd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
  if (in < 0) return cp_fail(c, errno, 0, NULL);
  struct stat ist;
  int err = fstat(in, &ist) != 0 ? errno : 0;
  if (!err && (ist.st_ino != st->st_ino || ist.st_dev != st->st_dev)) err = ESTALE; /* replaced */
  if (err) {
    close(in);
    return cp_fail(c, err, 0, NULL);
  }
  int out = openat(t->dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (out < 0) {
    close_keep_errno(in);
    return cp_fail(c, errno, 1, NULL);
  }
  int wside;
  err = copy_data(in, out, &wside);
  if (err) cp_fail(c, err, wside, NULL);
  else err = cp_meta_fd(c, in, out, &ist);
  close(in);
  if (close(out) != 0 && !err) err = cp_fail(c, errno, 1, NULL);
  return err;
}

static int cp_symlink(struct cp *c, struct frame *t, const char *name, const struct stat *st) {
  char *target = readlink_alloc(t->fd, name);
  if (!target) return cp_fail(c, errno, 0, NULL);
  int r = symlinkat(target, t->dfd, name);
  free(target);
  if (r != 0) return cp_fail(c, errno, 1, NULL);
  return cp_meta_name(c, t->fd, t->dfd, name, st);
}

static int cp_node(struct cp *c, struct frame *t, const char *name, const struct stat *st) {
  int r = S_ISFIFO(st->st_mode) ? mkfifoat(t->dfd, name, 0600)
                                 : mknodat(t->dfd, name, (st->st_mode & S_IFMT) | 0600, st->st_rdev);
  if (r != 0) return cp_fail(c, errno, 1, NULL);
  return cp_meta_name(c, t->fd, t->dfd, name, st);
}

static int cp_dir(struct cp *c, struct frame *t, const char *name, const struct stat *st) {
  if (st->st_dev == c->ddev && st->st_ino == c->dino)
    return cp_fail(c, EINVAL, 0, "the destination is inside the source tree");
  if (mkdirat(t->dfd, name, 0700) != 0) return cp_fail(c, errno, 1, NULL);
  int sfd = openat(t->fd, name, DIR_FLAGS | O_NOFOLLOW);
  if (sfd < 0) return cp_fail(c, errno, 0, NULL);
  struct stat sst;
  int err = fstat(sfd, &sst) != 0 ? errno : 0;
  if (!err && (sst.st_ino != st->st_ino || sst.st_dev != st->st_dev)) err = ESTALE; /* replaced */
  if (err) {
    close(sfd);
    return cp_fail(c, err, 0, NULL);
  }
  int dfd = openat(t->dfd, name, DIR_FLAGS | O_NOFOLLOW);
  if (dfd < 0) {
    close_keep_errno(sfd);
    return cp_fail(c, errno, 1, NULL);
  }
  err = walk_push(&c->w, sfd, dfd, &sst);
  return err ? cp_fail(c, err, 0, NULL) : 0;
}

static int cp_entry(struct cp *c, struct frame *t, const char *name) {
  struct stat st;
  if (fstatat(t->fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT ? 0 : cp_fail(c, errno, 0, NULL);
  if (S_ISDIR(st.st_mode)) return cp_dir(c, t, name, &st);
  int linked = st.st_nlink > 1;
  if (linked) {
    struct hl_entry *h = hl_find(&c->hl, st.st_dev, st.st_ino);
    if (h) {
      if (linkat(c->droot, h->rel, t->dfd, name, 0) == 0) return 0;
      if (errno != ENAMETOOLONG) return cp_fail(c, errno, 1, NULL);
      linked = 0; /* too deep to name: an independent copy */
    }
  }
  int err;
  if (S_ISREG(st.st_mode))
    err = cp_file(c, t, name, &st);
  else if (S_ISLNK(st.st_mode))
    err = cp_symlink(c, t, name, &st);
  else
    err = cp_node(c, t, name, &st);
  if (!err && linked && (err = hl_add(&c->hl, st.st_dev, st.st_ino, pb_str(&c->w.rel))))
    cp_fail(c, err, 0, NULL);
  return err;
}

static int do_copytree(const char *src, const char *dst, struct fserr *e) {
  struct stat st;
  if (lstat(src, &st) != 0) return fserr_set(e, errno, src, "", NULL);
  if (!S_ISDIR(st.st_mode)) return fserr_set(e, ENOTDIR, src, "", NULL);
  int sfd = open(src, DIR_FLAGS | O_NOFOLLOW);
  if (sfd < 0) return fserr_set(e, errno, src, "", NULL);
  return copytree_fd(sfd, src, dst, e);
}

/* Copies the directory open at sfd (taken over and closed) to dst; src
   names it in messages. */
int copytree_fd(int sfd, const char *src, const char *dst, struct fserr *e) {
  struct cp c;
  memset(&c, 0, sizeof c);
  c.src = src;
  c.dst = dst;
  c.e = e;
  c.droot = -1;
  c.root = geteuid() == 0;
  struct stat st;
  if (fstat(sfd, &st) != 0) {
    close_keep_errno(sfd);
    return fserr_set(e, errno, src, "", NULL);
  }
  if (!S_ISDIR(st.st_mode)) {
    close(sfd);
    return fserr_set(e, ENOTDIR, src, "", NULL);
  }
  if (mkdir(dst, 0700) != 0) {
    close_keep_errno(sfd);
    return fserr_set(e, errno, dst, "", NULL);
  }
  int err = 0, dfd = open(dst, DIR_FLAGS | O_NOFOLLOW);
  struct stat dst_st;
  if (dfd < 0 || fstat(dfd, &dst_st) != 0 || (c.droot = fcntl(dfd, F_DUPFD_CLOEXEC, 0)) < 0) {
    err = fserr_set(e, errno, dst, "", NULL);
    close(sfd);
    if (dfd >= 0) close(dfd);
  } else {
    c.ddev = dst_st.st_dev;
    c.dino = dst_st.st_ino;
    if ((err = walk_push(&c.w, sfd, dfd, &st))) fserr_set(e, err, src, "", NULL);
  }
  while (!err) {
    const char *name;
    int ev = walk_next(&c.w, &name);
    if (ev < 0) {
      err = cp_fail(&c, -ev, 0, NULL);
      break;
    }
    struct frame *t = walk_top(&c.w);
    if (ev == EV_ENTRY) {
      err = cp_entry(&c, t, name);
    } else {
      if ((err = cp_meta_fd(&c, t->fd, t->dfd, &t->st))) break;
      if (c.w.depth == 1) break;
      if ((err = walk_pop(&c.w))) cp_fail(&c, err, 0, NULL);
    }
  }
  walk_free(&c.w);
  hl_free(&c.hl);
  if (c.droot >= 0) close(c.droot);
  if (err) {
    struct fserr ignored = {0, NULL, NULL, NULL};
    do_rmtree(dst, &ignored); /* no half copy is left behind */
    free(ignored.path);
  }
  return err;
}

/* ---- du ---------------------------------------------------------------- */

static int do_du(const char *path, lua_Integer *bytes, lua_Integer *files, struct fserr *e) {
  *bytes = *files = 0;
  struct stat st;
  if (lstat(path, &st) != 0) return fserr_set(e, errno, path, "", NULL);
  if (!S_ISDIR(st.st_mode)) {
    *bytes = st.st_size;
    *files = 1;
    return 0;
  }
  int fd = open(path, DIR_FLAGS | O_NOFOLLOW);
  if (fd < 0) return fserr_set(e, errno, path, "", NULL);
  return du_fd(fd, path, bytes, files, e);
}

/* Sizes under the directory open at fd; see fs_int.h. */
int du_fd(int fd, const char *path, lua_Integer *bytes, lua_Integer *files, struct fserr *e) {
  *bytes = *files = 0;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = fserr_set(e, errno, path, "", NULL);
    close(fd);
    return err;
  }
  struct walk w;
  struct hlset seen;
  memset(&w, 0, sizeof w);
  memset(&seen, 0, sizeof seen);
  int err = walk_push(&w, fd, -1, &st);
  if (err) fserr_set(e, err, path, "", NULL);
  while (!err) {
    const char *name;
    int ev = walk_next(&w, &name);
    if (ev < 0) {
      err = fserr_set(e, -ev, path, pb_str(&w.rel), NULL);
      break;
    }
    struct frame *t = walk_top(&w);
    if (ev == EV_LEAVE) {
      if (w.depth == 1) break;
      if ((err = walk_pop(&w))) fserr_set(e, err, path, pb_str(&w.rel), NULL);
      continue;
    }
    struct stat cst;
    if (fstatat(t->fd, name, &cst, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      err = fserr_set(e, errno, path, pb_str(&w.rel), NULL);
      break;
    }
    if (S_ISDIR(cst.st_mode)) {
      int cfd = openat(t->fd, name, DIR_FLAGS | O_NOFOLLOW);
      if (cfd < 0) {
        if (errno == ENOENT) continue;
        err = fserr_set(e, errno, path, pb_str(&w.rel), NULL);
        break;
      }
      if ((err = walk_push(&w, cfd, -1, &cst))) fserr_set(e, err, path, pb_str(&w.rel), NULL);
      continue;
    }
    if (cst.st_nlink > 1) {
      if (hl_find(&seen, cst.st_dev, cst.st_ino)) continue;
      if ((err = hl_add(&seen, cst.st_dev, cst.st_ino, NULL))) {
        fserr_set(e, err, path, pb_str(&w.rel), NULL);
        break;
      }
    }
    *bytes += cst.st_size;
    *files += 1;
  }
  walk_free(&w);
  hl_free(&seen);
  return err;
}

/* ---- remove_devices ------------------------------------------------------ */

/* The relative paths removed, in walk order (sorted per directory). */
struct pathlist {
  char **v;
  size_t n, cap;
};

static void pathlist_free(struct pathlist *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  memset(l, 0, sizeof *l);
}

static int pathlist_add(struct pathlist *l, const char *rel) {
  if (l->n == l->cap) {
    size_t ncap = l->cap ? l->cap * 2 : 8;
    char **nv = realloc(l->v, ncap * sizeof *nv);
    if (!nv) return ENOMEM;
    l->v = nv;
    l->cap = ncap;
  }
  if (!(l->v[l->n] = strdup(rel))) return ENOMEM;
  l->n++;
  return 0;
}

/* Unlinks every character and block device node under path (an image's
   rootfs: runc gives each container its own /dev, so a node there only
   serves someone who reaches the tree from the host). Symlinks are never
   followed and mount points never crossed. Returns 0 or an errno (with *e);
   what was removed before a failure stays listed in *out. */
static int do_remove_devices(const char *path, struct pathlist *out, struct fserr *e) {
  int fd = open(path, DIR_FLAGS | O_NOFOLLOW);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    int err = fserr_set(e, errno, path, "", NULL);
    if (fd >= 0) close(fd);
    return err;
  }
  struct walk w;
  memset(&w, 0, sizeof w);
  int err = walk_push(&w, fd, -1, &st);
  if (err) fserr_set(e, err, path, "", NULL);
  while (!err) {
    const char *name;
    int ev = walk_next(&w, &name);
    if (ev < 0) {
      err = fserr_set(e, -ev, path, pb_str(&w.rel), NULL);
      break;
    }
    struct frame *t = walk_top(&w);
    if (ev == EV_LEAVE) {
      if (w.depth == 1) break;
      if ((err = walk_pop(&w))) fserr_set(e, err, path, pb_str(&w.rel), NULL);
      continue;
    }
    struct stat cst;
    if (fstatat(t->fd, name, &cst, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      err = fserr_set(e, errno, path, pb_str(&w.rel), NULL);
      break;
    }
    if (S_ISCHR(cst.st_mode) || S_ISBLK(cst.st_mode)) {
      if (unlinkat(t->fd, name, 0) != 0 && errno != ENOENT) {
        err = fserr_set(e, errno, path, pb_str(&w.rel), NULL);
        break;
      }
      if ((err = pathlist_add(out, pb_str(&w.rel)))) {
        fserr_set(e, err, path, pb_str(&w.rel), NULL);
        break;
      }
      continue;
    }
    if (!S_ISDIR(cst.st_mode)) continue;
    int cfd = openat(t->fd, name, DIR_FLAGS | O_NOFOLLOW);
    if (cfd < 0) {
      if (errno == ENOENT) continue;
      err = fserr_set(e, errno, path, pb_str(&w.rel), NULL);
      break;
    }
    if (fstat(cfd, &cst) != 0) {
      err = fserr_set(e, errno, path, pb_str(&w.rel), NULL);
      close(cfd);
      break;
    }
    if (is_mount_root(cfd, &t->st, &cst)) {
      err = fserr_set(e, EBUSY, path, pb_str(&w.rel), "is a mount point (not walking across it)");
      close(cfd);
      break;
    }
    if ((err = walk_push(&w, cfd, -1, &cst))) fserr_set(e, err, path, pb_str(&w.rel), NULL);
  }
  walk_free(&w);
  return err;
}

/* ---- atomic replacement: temp file + fsync + rename + fsync dir -------- */

struct atomic {
  int dirfd; /* borrowed */
  int fd;
  char tmp[NAME_MAX + 1];
};

/* Creates a temp file next to `base` in dirfd. Returns 0 or an errno. */
static int atomic_begin(struct atomic *a, int dirfd, const char *base) {
  a->dirfd = dirfd;
  a->fd = -1;
  a->tmp[0] = '\0';
  for (int tries = 0; tries < 100; tries++) {
    unsigned char rnd[6];
    if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd) {
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^ (uint64_t)tries;
      memcpy(rnd, &x, sizeof rnd);
    }
    /* the base is cut so the name fits NAME_MAX */
    snprintf(a->tmp, sizeof a->tmp, ".%.200s.%02x%02x%02x%02x%02x%02x.tmp", base, rnd[0], rnd[1],
             rnd[2], rnd[3], rnd[4], rnd[5]);
    a->fd = openat(dirfd, a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (a->fd >= 0) return 0;
    if (errno != EEXIST) return last_err();
  }
  return EEXIST;
}

static void atomic_abort(struct atomic *a) {
  int e = errno;
  if (a->fd >= 0) {
    close(a->fd);
    a->fd = -1;
  }
  if (a->tmp[0]) unlinkat(a->dirfd, a->tmp, 0);
  a->tmp[0] = '\0';
  errno = e;
}

/* mode, fsync, rename over `base`, fsync the directory. Returns 0 or an
   errno; the temp file is gone either way. */
static int atomic_commit(struct atomic *a, const char *base, mode_t mode) {
  int err = 0;
  if (fchmod(a->fd, mode) != 0 || fsync(a->fd) != 0) err = errno;
  if (!err) {
    int r = close(a->fd);
    a->fd = -1;
    if (r != 0) err = errno;
  }
  if (!err && renameat(a->dirfd, a->tmp, a->dirfd, base) != 0) err = errno;
  if (err) {
    atomic_abort(a);
    return err;
  }
  a->tmp[0] = '\0';
  if (fsync(a->dirfd) != 0 && errno != EINVAL) return errno;
  return 0;
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

/* Writes data (or the rest of fd `from` when data is NULL) to base in
   dirfd atomically. Returns 0 or an errno. */
int atomic_write_at(int dirfd, const char *base, const char *data, size_t len, int from,
                           mode_t mode) {
  struct atomic a;
  int err = atomic_begin(&a, dirfd, base);
  if (err) return err;
  if (data) {
    err = write_all(a.fd, data, len);
  } else {
    int wside;
    err = copy_data(from, a.fd, &wside);
  }
  if (err) {
    atomic_abort(&a);
    return err;
  }
  return atomic_commit(&a, base, mode);
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
int push_read(lua_State *L, int fd, size_t limit) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t total = 0;
  while (total < limit) {
    size_t want = limit - total < READ_CHUNK ? limit - total : READ_CHUNK;
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
    lua_pushboolean(L, 1);
    return 1;
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
    lua_pushboolean(L, 1);
    return 1;
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
  lua_pushboolean(L, 1);
  return 1;
}

/* rmtree(path) -> true; a missing path is fine */
static int fs_rmtree(lua_State *L) {
  const char *path = check_tree_path(L, 1);
  struct fserr e = {0, NULL, NULL, NULL};
  if (do_rmtree(path, &e)) return fserr_push(L, &e);
  lua_pushboolean(L, 1);
  return 1;
}

/* copytree(src, dst) -> true; dst must not exist */
static int fs_copytree(lua_State *L) {
  const char *src = check_tree_path(L, 1);
  const char *dst = check_tree_path(L, 2);
  struct fserr e = {0, NULL, NULL, NULL};
  if (do_copytree(src, dst, &e)) return fserr_push(L, &e);
  lua_pushboolean(L, 1);
  return 1;
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
  lua_pushboolean(L, 1);
  return 1;
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
  lua_pushboolean(L, 1);
  return 1;
}

/* exchange(a, b) -> true: both swap atomically (both must exist) */
static int fs_exchange(lua_State *L) {
  const char *a = luaL_checkstring(L, 1);
  const char *b = luaL_checkstring(L, 2);
  if (renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0)
    return pair_error(L, errno, a, "<->", b);
  lua_pushboolean(L, 1);
  return 1;
}

/* symlink(target, path) -> true */
static int fs_symlink(lua_State *L) {
  const char *target = luaL_checkstring(L, 1);
  const char *path = luaL_checkstring(L, 2);
  if (symlink(target, path) != 0) return ct_oserror(L, errno, path);
  lua_pushboolean(L, 1);
  return 1;
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
  lua_pushboolean(L, 1);
  return 1;
}

/* unlink(path) -> true */
static int fs_unlink(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (unlink(path) != 0) return ct_oserror(L, errno, path);
  lua_pushboolean(L, 1);
  return 1;
}

/* rmdir(path) -> true */
static int fs_rmdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (rmdir(path) != 0) return ct_oserror(L, errno, path);
  lua_pushboolean(L, 1);
  return 1;
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
  if ((err = push_read(L, *g, limit))) return fd_guard_fail(L, g, err, path);
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
  lua_pushboolean(L, 1);
  return 1;
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
  lua_pushboolean(L, 1);
  return 1;
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
  if ((err = push_read(L, *g, limit))) return fd_guard_fail(L, g, err, name);
  fd_guard_close(g);
  if (has_max && lua_rawlen(L, -1) > (size_t)max)
    return ct_error(L, EFBIG, "%s: larger than %I bytes", name, max);
  return 1;
}

/* Splits rel into its parent (resolved in dir) and last component. */
static int open_parent_beneath(const char *dir, const char *rel, int *dirfd, const char **base) {
  *dirfd = -1;
  const char *slash = strrchr(rel, '/');
  *base = slash ? slash + 1 : rel;
  if (!**base) return rel[0] ? EISDIR : ENOENT;
  if ((*base)[0] == '.' && ((*base)[1] == '\0' || ((*base)[1] == '.' && (*base)[2] == '\0')))
    return EISDIR;
  int root = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) return last_err();
  char *parent = slash ? strndup(rel, (size_t)(slash - rel) + (slash == rel)) : strdup(".");
  if (!parent) {
    close(root);
    return ENOMEM;
  }
  *dirfd = openat2_in_root(root, parent, O_RDONLY | O_DIRECTORY);
  int err = *dirfd < 0 ? last_err() : 0;
  free(parent);
  close(root);
  return err;
}

/* write_beneath(dir, rel, data [, mode=0644]) -> true; the parent is
   resolved inside dir and must exist; the file is replaced atomically */
static int fs_write_beneath(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  const char *rel = luaL_checkstring(L, 2);
  size_t len;
  const char *data = luaL_checklstring(L, 3, &len);
  mode_t mode = opt_mode(L, 4, 0644);
  const char *name = push_beneath_name(L, dir, rel);
  int dirfd;
  const char *base;
  int err = open_parent_beneath(dir, rel, &dirfd, &base);
  if (err) return ct_oserror(L, err, name);
  err = atomic_write_at(dirfd, base, data, len, -1, mode);
  close(dirfd);
  if (err) return ct_oserror(L, err, name);
  lua_pushboolean(L, 1);
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
  lua_pushboolean(L, 1);
  return 1;
}

static int chown_common(lua_State *L, int follow) {
  const char *path = luaL_checkstring(L, 1);
  uid_t uid = (uid_t)check_id(L, 2);
  gid_t gid = (gid_t)check_id(L, 3);
  if ((follow ? chown(path, uid, gid) : lchown(path, uid, gid)) != 0)
    return ct_oserror(L, errno, path);
  lua_pushboolean(L, 1);
  return 1;
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

/* du(path) -> bytes, files: apparent sizes of everything but directories,
   symlinks not followed, each hard-linked inode once */
static int fs_du(lua_State *L) {
  const char *path = check_tree_path(L, 1);
  struct fserr e = {0, NULL, NULL, NULL};
  lua_Integer bytes, files;
  if (do_du(path, &bytes, &files, &e)) return fserr_push(L, &e);
  lua_pushinteger(L, bytes);
  lua_pushinteger(L, files);
  return 2;
}

/* remove_devices(dir) -> list of the relative paths of the device nodes
   removed under dir | nil, msg, errno */
static int fs_remove_devices(lua_State *L) {
  const char *path = check_tree_path(L, 1);
  struct fserr e = {0, NULL, NULL, NULL};
  struct pathlist removed = {NULL, 0, 0};
  if (do_remove_devices(path, &removed, &e)) {
    pathlist_free(&removed);
    return fserr_push(L, &e);
  }
  lua_createtable(L, removed.n > INT_MAX ? INT_MAX : (int)removed.n, 0);
  for (size_t i = 0; i < removed.n; i++) {
    lua_pushstring(L, removed.v[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  pathlist_free(&removed);
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
  lua_pushboolean(L, 1);
  return 1;
}

/* syncfs(path) -> true; the whole filesystem holding path */
static int fs_syncfs(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int fd = open_for_sync(path);
  if (fd < 0) return ct_oserror(L, errno, path);
  int err = syncfs(fd) != 0 ? errno : 0;
  close(fd);
  if (err) return ct_oserror(L, err, path);
  lua_pushboolean(L, 1);
  return 1;
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
  int out = -1;
  if (copy_to) {
    out = open(copy_to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (out < 0) {
      int err = errno;
      close(fd);
      return ct_oserror(L, err, copy_to);
    }
    off_t in_off = 0;
    char *buf = NULL;
    while (in_off < n) {
      ssize_t w = copy_file_range(fd, &in_off, out, NULL, (size_t)(n - in_off), 0);
      if (w > 0) continue;
      if (w < 0 && errno != EXDEV && errno != ENOSYS && errno != EOPNOTSUPP && errno != EINVAL) goto copy_failed;
      /* no copy_file_range here (or 0 bytes): a plain read/write loop */
      if (!buf && !(buf = malloc(1 << 20))) { errno = ENOMEM; goto copy_failed; }
      size_t want = (size_t)(n - in_off) < (1u << 20) ? (size_t)(n - in_off) : (1u << 20);
      ssize_t r = pread(fd, buf, want, in_off);
      if (r <= 0) { if (r == 0) errno = EIO; goto copy_failed; }
      for (ssize_t done = 0; done < r;) {
        ssize_t k = write(out, buf + done, (size_t)(r - done));
        if (k < 0) { if (errno == EINTR) continue; goto copy_failed; }
        done += k;
      }
      in_off += r;
    }
    free(buf);
    if (fsync(out) != 0) goto copy_failed_nobuf;
    close(out);
    out = -1;
    goto collapse;
  copy_failed:
    free(buf);
  copy_failed_nobuf: {
      int err = errno;
      close(out);
      unlink(copy_to);
      close(fd);
      return ct_oserror(L, err, copy_to);
    }
  }
collapse:
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
    {"rmtree", fs_rmtree},
    {"copytree", fs_copytree},
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
    {"write_beneath", fs_write_beneath},
    {"copy_beneath", fs_copy_beneath},
    {"chmod", fs_chmod},
    {"chown", fs_chown},
    {"lchown", fs_lchown},
    {"mkdtemp", fs_mkdtemp},
    {"du", fs_du},
    {"remove_devices", fs_remove_devices},
    {"statvfs", fs_statvfs},
    {"fsync", fs_fsync},
    {"syncfs", fs_syncfs},
    {"size", fs_size},
    {"collapse", fs_collapse},
    {NULL, NULL},
};

int luaopen_ct_fs(lua_State *L) {
  if (luaL_newmetatable(L, FD_GUARD_MT)) {
    lua_pushcfunction(L, fd_guard_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_newlib(L, fs_funcs);
  luaopen_ct_fs_beneath(L);
  luaopen_ct_fs_mount(L);
  luaopen_ct_fs_tree(L);
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
