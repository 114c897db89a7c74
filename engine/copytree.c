/* Whole-tree operations on the walker (walk.c), by name and beneath a Dir: copytree with owners, modes, times and xattrs, rmtree, du. */
#include "int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <search.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <linux/fs.h>

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
int copy_data(int in, int out, int *wside) {
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

/* Copies every xattr it can. Returns 0 or an errno; *wside as copy_data.
   The kernel caps a name list and a value at 64 KiB (XATTR_LIST_MAX,
   XATTR_SIZE_MAX), so one buffer of each holds any. */
static int copy_xattrs(const struct xat *s, const struct xat *d, int *wside) {
  *wside = 0;
  ssize_t n = xat_list(s, NULL, 0);
  if (n <= 0) return n < 0 && !xattr_skippable(errno) ? errno : 0;
  char *list = malloc(XATTR_LIST_MAX), *val = malloc(XATTR_SIZE_MAX);
  n = list && val ? xat_list(s, list, XATTR_LIST_MAX) : 0;
  int err = !list || !val ? ENOMEM : n < 0 && !xattr_skippable(errno) ? errno : 0;
  for (ssize_t i = 0; !err && i < n; i += (ssize_t)strlen(list + i) + 1) {
    ssize_t vn = xat_get(s, list + i, val, XATTR_SIZE_MAX);
    if (vn < 0) {
      if (!xattr_skippable(errno)) err = errno;
    } else if (xat_set(d, list + i, val, (size_t)vn) != 0 && !xattr_skippable(errno)) {
      err = errno;
      *wside = 1;
    }
  }
  free(list);
  free(val);
  return err;
}

/* ---- hard links: (dev, ino) -> the first copy's relative path --------- */

struct hl_entry {
  dev_t dev;
  ino_t ino;
  char *rel; /* NULL in du, which only counts */
};

struct hlset {
  void *root; /* a tsearch tree of struct hl_entry */
};

static int hl_cmp(const void *a, const void *b) {
  const struct hl_entry *x = a, *y = b;
  if (x->dev != y->dev) return x->dev < y->dev ? -1 : 1;
  return x->ino < y->ino ? -1 : x->ino > y->ino;
}

static struct hl_entry *hl_find(struct hlset *h, dev_t dev, ino_t ino) {
  struct hl_entry key = {dev, ino, NULL};
  struct hl_entry **p = tfind(&key, &h->root, hl_cmp);
  return p ? *p : NULL;
}

/* Adds (dev, ino) with a copy of rel (or NULL). Returns 0 or ENOMEM. */
static int hl_add(struct hlset *h, dev_t dev, ino_t ino, const char *rel) {
  struct hl_entry *e = malloc(sizeof *e);
  if (!e) return ENOMEM;
  *e = (struct hl_entry){dev, ino, rel ? strdup(rel) : NULL};
  if ((rel && !e->rel) || !tsearch(e, &h->root, hl_cmp)) {
    free(e->rel);
    free(e);
    return ENOMEM;
  }
  return 0;
}

static void hl_free_entry(void *p) {
  free(((struct hl_entry *)p)->rel);
  free(p);
}

static void hl_free(struct hlset *h) {
  if (h->root) tdestroy(h->root, hl_free_entry);
  h->root = NULL;
}

/* ---- copytree ---------------------------------------------------------- */

struct cp {
  const char *src, *dst;
  int droot;           /* the destination root, for linkat of hard links */
  dev_t ddev;          /* the destination root, never copied into itself */
  ino_t dino;
  int root;            /* euid 0: owners must be kept */
  struct hlset hl;
  struct tw v;
};

static int cp_fail(struct cp *c, int err, int dst_side, const char *msg) {
  return fserr_set(c->v.e, err, dst_side ? c->dst : c->src, pb_str(&c->v.w.rel), msg);
}

static int owner_ok(struct cp *c, int r) { return r == 0 || (!c->root && errno == EPERM); }

/* Owner, mode, xattrs and times: through the descriptors s and d (a
   directory or regular file: name NULL), or of name in the directories s
   and d (a symlink or special file). Owner before mode: chown clears
   setuid bits; xattrs after chown: it clears security.capability. */
static int cp_meta(struct cp *c, int s, int d, const char *name, const struct stat *st) {
  int flags = AT_SYMLINK_NOFOLLOW | (name ? 0 : AT_EMPTY_PATH);
  if (!owner_ok(c, fchownat(d, name ? name : "", st->st_uid, st->st_gid, flags)))
    return cp_fail(c, errno, 1, NULL);
  mode_t mode = st->st_mode & 07777;
  if (!S_ISLNK(st->st_mode) && (name ? fchmodat(d, name, mode, 0) : fchmod(d, mode)) != 0)
    return cp_fail(c, errno, 1, NULL);
  struct xat xs = {s, NULL}, xd = {d, NULL};
  int wside = 0, err = name ? xat_path(&xs, s, name) : 0;
  if (!err && name) err = xat_path(&xd, d, name);
  if (!err) err = copy_xattrs(&xs, &xd, &wside);
  free(xs.path);
  free(xd.path);
  if (err) return cp_fail(c, err, wside, NULL);
  struct timespec ts[2] = {st->st_atim, st->st_mtim};
  if ((name ? utimensat(d, name, ts, AT_SYMLINK_NOFOLLOW) : futimens(d, ts)) != 0)
    return cp_fail(c, errno, 1, NULL);
  return 0;
}

static int cp_file(struct cp *c, struct frame *t, const char *name, const struct stat *st) {
  struct stat ist = *st;
  int in = ct_open_regular(t->fd, name, O_RDONLY, &ist, &ist); /* ESTALE: replaced */
  if (in < 0) return cp_fail(c, errno, 0, NULL);
  int out = openat(t->dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (out < 0) {
    close_keep_errno(in);
    return cp_fail(c, errno, 1, NULL);
  }
  int wside, err = copy_data(in, out, &wside);
  if (err) cp_fail(c, err, wside, NULL);
  else err = cp_meta(c, in, out, NULL, &ist);
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
  return cp_meta(c, t->fd, t->dfd, name, st);
}

static int cp_node(struct cp *c, struct frame *t, const char *name, const struct stat *st) {
  int r = S_ISFIFO(st->st_mode) ? mkfifoat(t->dfd, name, 0600)
                                 : mknodat(t->dfd, name, (st->st_mode & S_IFMT) | 0600, st->st_rdev);
  if (r != 0) return cp_fail(c, errno, 1, NULL);
  return cp_meta(c, t->fd, t->dfd, name, st);
}

static int cp_dir(struct cp *c, struct frame *t, const char *name, const struct stat *st) {
  if (st->st_dev == c->ddev && st->st_ino == c->dino)
    return cp_fail(c, EINVAL, 0, "the destination is inside the source tree");
  if (mkdirat(t->dfd, name, 0700) != 0) return cp_fail(c, errno, 1, NULL);
  struct stat sst = *st;
  int sfd = tw_opendir(t, name, &sst); /* ESTALE: replaced */
  if (sfd < 0)
    return cp_fail(c, errno, 0, errno == EBUSY ? "is a mount point (not copying across it)" : NULL);
  int dfd = openat(t->dfd, name, DIR_FLAGS | O_NOFOLLOW);
  if (dfd < 0) {
    close_keep_errno(sfd);
    return cp_fail(c, errno, 1, NULL);
  }
  return tw_enter(&c->v, sfd, dfd, &sst);
}

static int cp_entry(struct tw *v, struct frame *t, const char *name, const struct stat *st) {
  struct cp *c = v->ctx;
  if (S_ISDIR(st->st_mode)) return cp_dir(c, t, name, st);
  int linked = st->st_nlink > 1;
  if (linked) {
    struct hl_entry *h = hl_find(&c->hl, st->st_dev, st->st_ino);
    if (h) {
      if (linkat(c->droot, h->rel, t->dfd, name, 0) == 0) return 0;
      if (errno != ENAMETOOLONG) return cp_fail(c, errno, 1, NULL);
      linked = 0; /* too deep to name: an independent copy */
    }
  }
  int err;
  if (S_ISREG(st->st_mode))
    err = cp_file(c, t, name, st);
  else if (S_ISLNK(st->st_mode))
    err = cp_symlink(c, t, name, st);
  else
    err = cp_node(c, t, name, st);
  if (!err && linked && (err = hl_add(&c->hl, st->st_dev, st->st_ino, pb_str(&v->w.rel))))
    cp_fail(c, err, 0, NULL);
  return err;
}

/* A directory's metadata once its contents are in (writing moves mtime). */
static int cp_leave(struct tw *v, struct frame *t) {
  return cp_meta(v->ctx, t->fd, t->dfd, NULL, &t->st);
}

/* Copies the directory open at sfd (taken over and closed) to dst; src
   names it in messages. */
static int copytree_fd(int sfd, const char *src, const char *dst, struct fserr *e) {
  struct cp c;
  memset(&c, 0, sizeof c);
  c.src = src;
  c.dst = dst;
  c.v = (struct tw){.e = e, .display = src, .entry = cp_entry, .leave = cp_leave, .ctx = &c};
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
    err = tw_run(&c.v, sfd, dfd, &st);
  }
  hl_free(&c.hl);
  if (c.droot >= 0) close(c.droot);
  if (err) {
    struct fserr ignored = {0, NULL, NULL, NULL};
    const struct at host = {AT_FDCWD, 0, 0};
    rmtree_at(&host, dst, dst, &ignored); /* no half copy is left behind */
    free(ignored.path);
  }
  return err;
}

/* ---- du ---------------------------------------------------------------- */

struct du {
  struct hlset seen;
  lua_Integer bytes, files;
};

static int du_entry(struct tw *v, struct frame *t, const char *name, const struct stat *st) {
  struct du *d = v->ctx;
  if (S_ISDIR(st->st_mode)) {
    struct stat cst = *st;
    int cfd = tw_opendir(t, name, &cst); /* a mount point: nothing below it counted */
    if (cfd < 0) return errno == ENOENT || errno == EBUSY ? 0 : tw_fail(v, errno, NULL);
    return tw_enter(v, cfd, -1, &cst);
  }
  if (st->st_nlink > 1) {
    if (hl_find(&d->seen, st->st_dev, st->st_ino)) return 0;
    int err = hl_add(&d->seen, st->st_dev, st->st_ino, NULL);
    if (err) return tw_fail(v, err, NULL);
  }
  d->bytes = st->st_size > LUA_MAXINTEGER - d->bytes ? LUA_MAXINTEGER : d->bytes + st->st_size;
  d->files += 1;
  return 0;
}

/* Apparent bytes and file count of the directory open at fd (taken over),
   symlinks not followed, hard links once. 0 or an errno (with *e). */
static int du_fd(int fd, const char *path, lua_Integer *bytes, lua_Integer *files, struct fserr *e) {
  struct du d;
  memset(&d, 0, sizeof d);
  struct tw v = {.e = e, .display = path, .entry = du_entry, .ctx = &d};
  struct stat st;
  int err = fstat(fd, &st) != 0 ? fserr_set(e, errno, path, "", NULL) : 0;
  if (err) close(fd);
  else err = tw_run(&v, fd, -1, &st);
  hl_free(&d.seen);
  *bytes = d.bytes;
  *files = d.files;
  return err;
}

/* ---- the Lua functions, by name and as Dir methods ---- */

/* rmtree(path), Dir:rmtree(rel) -> true; a missing path is fine; a Dir's
   "" empties the Dir itself */
static int fs_rmtree(lua_State *L) {
  struct at a;
  int arg = ct_at(L, &a);
  if (!a.dir) check_tree_path(L, arg);
  AT_REL(L, &a, arg, rel, display);
  struct fserr e = {0, NULL, NULL, NULL};
  if (rmtree_at(&a, rel, display, &e)) return fserr_push(L, &e);
  return ct_true(L);
}

/* copytree(src, dst), Dir:copytree(rel, dst) -> true; dst, a host path,
   must not exist. The walk reads through the descriptor it checked, so a
   symlink swapped in afterwards is copied as a symlink, never followed. */
static int fs_copytree(lua_State *L) {
  struct at a;
  int arg = ct_at(L, &a);
  if (!a.dir) check_tree_path(L, arg);
  const char *dst = check_tree_path(L, arg + 1);
  AT_REL(L, &a, arg, rel, display);
  int fd = ct_at_open(&a, rel, DIR_FLAGS | O_NOFOLLOW, 0);
  if (fd < 0) return ct_fail_at(L, errno, display, NULL);
  struct fserr e = {0, NULL, NULL, NULL};
  if (copytree_fd(fd, display, dst, &e)) return fserr_push(L, &e);
  return ct_true(L);
}

/* du(path), Dir:du(rel) -> bytes, files: apparent sizes of everything but
   directories, symlinks not followed, each hard-linked inode once */
static int fs_du(lua_State *L) {
  struct at a;
  int arg = ct_at(L, &a);
  if (!a.dir) check_tree_path(L, arg);
  AT_REL(L, &a, arg, rel, display);
  int fd = ct_at_open(&a, rel, O_PATH | O_NOFOLLOW, 0);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    if (fd >= 0) close_keep_errno(fd);
    return ct_fail_at(L, errno, display, NULL);
  }
  lua_Integer bytes = st.st_size, files = 1;
  if (S_ISDIR(st.st_mode)) {
    int dfd = openat(fd, ".", DIR_FLAGS);
    close_keep_errno(fd);
    if (dfd < 0) return ct_fail_at(L, errno, display, NULL);
    struct fserr e = {0, NULL, NULL, NULL};
    if (du_fd(dfd, display, &bytes, &files, &e)) return fserr_push(L, &e);
  } else {
    close(fd);
  }
  lua_pushinteger(L, bytes);
  lua_pushinteger(L, files);
  return 2;
}

int luaopen_ct_fs_trees(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"rmtree", fs_rmtree}, {"copytree", fs_copytree}, {"du", fs_du}, {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
  ct_dir_methods(L, funcs);
  return 0;
}
