/* The tree walk: a descriptor-based walker (no symlink followed, any depth on a bounded number of descriptors), the visitor every tree operation rides on, rmtree and the hard link table.

   The walk is iterative: a heap stack of frames, one per directory level,
   each holding the directory's sorted entry names. Only the deepest
   WALK_OPEN_LEVELS levels keep their descriptors open; an older level is
   closed and reopened through ".." of its child when the walk comes back to
   it, and checked by dev/ino. Every lookup inside a walk is relative to a
   directory descriptor with O_NOFOLLOW / AT_SYMLINK_NOFOLLOW. */
#include "int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Directory levels of a walk whose descriptors stay open. */
#define WALK_OPEN_LEVELS 32

/* ---- directory listings ------------------------------------------------ */

void names_free(struct names *ns) {
  for (size_t i = 0; i < ns->n; i++) free(ns->v[i]);
  free(ns->v);
  ns->v = NULL;
  ns->n = 0;
}

static int not_dots(const struct dirent *de) {
  const char *nm = de->d_name;
  return !(nm[0] == '.' && (nm[1] == '\0' || (nm[1] == '.' && nm[2] == '\0')));
}

/* Byte order, whatever the locale (alphasort follows LC_COLLATE). */
static int byte_order(const struct dirent **a, const struct dirent **b) {
  return strcmp((*a)->d_name, (*b)->d_name);
}

/* The sorted entry names of the directory open at fd (no "." / ".."); the
   descriptor itself is left as it is. Returns 0 or an errno. */
int read_names(int fd, struct names *out) {
  struct dirent **de;
  int n = scandirat(fd, ".", &de, not_dots, byte_order);
  out->n = 0;
  if (n < 0) {
    out->v = NULL;
    return last_err();
  }
  out->v = malloc((n ? (size_t)n : 1) * sizeof *out->v);
  int err = out->v ? 0 : ENOMEM;
  for (int i = 0; i < n; i++) {
    if (!err && !(out->v[out->n] = strdup(de[i]->d_name))) err = ENOMEM;
    if (!err) out->n++;
    free(de[i]);
  }
  free(de);
  if (err) names_free(out);
  return err;
}

/* ---- a growing relative path ------------------------------------------ */

/* Truncates to `len` and appends "/name" ("name" at the start). */
static int pb_set(struct buf *b, size_t len, const char *name) {
  size_t nl = strlen(name);
  b->len = len;
  if (ct_buf_grow(b, 1 + nl + 1) != 0) return ENOMEM;
  if (len) b->p[b->len++] = '/';
  memcpy(b->p + b->len, name, nl + 1);
  b->len += nl;
  return 0;
}

static void pb_trunc(struct buf *b, size_t len) {
  if (b->p) b->p[len] = '\0';
  b->len = len;
}

const char *pb_str(const struct buf *b) { return b->p ? b->p : ""; }

/* ---- the iterative walker ---------------------------------------------- */

static void frame_close(struct frame *fr) {
  if (fr->fd >= 0) close(fr->fd);
  if (fr->dfd >= 0) close(fr->dfd);
  fr->fd = fr->dfd = -1;
}

/* Frees a walk's frames (closing their descriptors); again is harmless. */
static void walk_free(struct walk *w) {
  for (size_t i = 0; i < w->depth; i++) {
    frame_close(&w->f[i]);
    names_free(&w->f[i].names);
  }
  free(w->f);
  free(w->rel.p);
  memset(w, 0, sizeof *w);
}

static struct frame *walk_top(struct walk *w) { return &w->f[w->depth - 1]; }

/* Enters a directory: takes ownership of fd (and dfd, or -1), whose source
   stat is *st. Returns 0 or an errno (the descriptors are then closed). */
static int walk_push(struct walk *w, int fd, int dfd, const struct stat *st) {
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
static int walk_next(struct walk *w, const char **name) {
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
static int walk_pop(struct walk *w) {
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
static const char *walk_popped_name(struct walk *w) {
  struct frame *t = walk_top(w);
  return t->names.v[t->next - 1];
}

/* ---- the visitor walk: every tree operation rides on it ----------------- */

int tw_fail(struct tw *v, int err, const char *msg) {
  return fserr_set(v->e, err, v->display, pb_str(&v->w.rel), msg);
}

int tw_enter(struct tw *v, int fd, int dfd, const struct stat *st) {
  int err = walk_push(&v->w, fd, dfd, st);
  return err ? tw_fail(v, err, NULL) : 0;
}

/* 0 when fd is still the inode *st (then *st is its stat now), else an errno. */
static int same_inode(int fd, struct stat *st) {
  struct stat now;
  if (fstat(fd, &now) != 0) return last_err();
  if (now.st_ino != st->st_ino || now.st_dev != st->st_dev || (now.st_mode ^ st->st_mode) & S_IFMT)
    return ESTALE;
  *st = now;
  return 0;
}

int tw_opendir(const struct frame *t, const char *name, struct stat *st) {
  int fd = openat(t->fd, name, DIR_FLAGS | O_NOFOLLOW);
  int err = fd < 0 ? last_err() : same_inode(fd, st);
  if (!err && is_mount_root(fd, &t->st, st)) err = EBUSY;
  if (!err) return fd;
  if (fd >= 0) close(fd);
  errno = err;
  return -1;
}

int ct_open_regular(int dirfd, const char *name, int flags, const struct stat *want, struct stat *st) {
  const struct stat was = want ? *want : (struct stat){0}; /* want may be st */
  int fd = -1, p = name ? openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC)
                        : fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  int err = p < 0 || fstat(p, st) != 0 ? last_err() : 0;
  if (!err && want && (was.st_ino != st->st_ino || was.st_dev != st->st_dev)) err = ESTALE;
  if (!err && !S_ISREG(st->st_mode)) err = S_ISLNK(st->st_mode) ? ELOOP : EINVAL;
  if (!err) {
    char proc[48];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", p);
    fd = open(proc, flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && name) /* no /proc: by name, without blocking, checked after */
      fd = openat(dirfd, name, flags | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
    err = fd < 0 ? last_err() : same_inode(fd, st);
    /* O_NONBLOCK only guarded the open; a regular file does not need it */
    if (!err && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) err = last_err();
  }
  if (p >= 0) close(p);
  if (!err) return fd;
  if (fd >= 0) close(fd);
  errno = err;
  return -1;
}

#define TW_MT "ct.fs.walk"

static int tw_gc(lua_State *L) {
  walk_free(&((struct tw *)luaL_checkudata(L, 1, TW_MT))->w);
  return 0;
}

void *tw_push(lua_State *L, size_t size) {
  ct_class(L, TW_MT, NULL, tw_gc, NULL);
  void *p = lua_newuserdatauv(L, size, 0);
  memset(p, 0, size);
  luaL_setmetatable(L, TW_MT);
  lua_toclose(L, -1);
  return p;
}

int tw_run(struct tw *v, int fd, int dfd, const struct stat *st) {
  int err = tw_enter(v, fd, dfd, st);
  while (!err) {
    const char *name;
    int ev = walk_next(&v->w, &name);
    if (ev < 0) {
      err = tw_fail(v, -ev, NULL);
      break;
    }
    struct frame *t = walk_top(&v->w);
    if (ev == EV_ENTRY) {
      struct stat cst;
      if (!v->nostat && fstatat(t->fd, name, &cst, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT && !v->gone_fails) continue; /* removed meanwhile */
        err = tw_fail(v, errno, NULL);
        break;
      }
      err = v->entry(v, t, name, v->nostat ? NULL : &cst);
      continue;
    }
    if (v->leave && (err = v->leave(v, t))) break;
    if (v->w.depth == 1) break;
    if ((err = walk_pop(&v->w))) {
      tw_fail(v, err, NULL);
      break;
    }
    if (v->left) err = v->left(v, walk_top(&v->w), walk_popped_name(&v->w));
  }
  walk_free(&v->w);
  return err;
}

/* ---- rmtree ------------------------------------------------------------ */

/* Owner rwx on a directory we are about to empty (a no-op for root, which
   needs none; a non-root owner cannot empty a read-only directory). */
static void ensure_rwx(int fd, const struct stat *st) {
  if ((st->st_mode & 0700) != 0700) (void)fchmod(fd, (st->st_mode & 07777) | 0700);
}

/* Is the directory open at fd the root of a mount? With no kernel support
   for STATX_ATTR_MOUNT_ROOT, a different st_dev than its parent's. */
int is_mount_root(int fd, const struct stat *parent, const struct stat *st) {
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

/* Checks the directory open at fd (taken over) is no mount root, makes it
   writable and stats it into *st; 0 or an errno (recorded). */
static int rm_prepare(struct tw *v, int fd, const struct stat *parent, struct stat *st) {
  int err = fstat(fd, st) != 0 ? tw_fail(v, errno, NULL) : 0;
  if (!err && is_mount_root(fd, parent, st))
    err = tw_fail(v, EBUSY, "is a mount point (not removing across it)");
  if (err) close(fd);
  else ensure_rwx(fd, st);
  return err;
}

/* An entry is unlinked at once; a directory is entered and removed when left. */
static int rm_entry(struct tw *v, struct frame *t, const char *name, const struct stat *unused) {
  (void)unused;
  if (unlinkat(t->fd, name, 0) == 0 || errno == ENOENT) return 0;
  if (errno != EISDIR) return tw_fail(v, errno, NULL);
  int cfd, err = rm_open_dir(t->fd, name, &cfd);
  if (err) return err == ENOENT ? 0 : tw_fail(v, err, NULL);
  struct stat cst;
  return (err = rm_prepare(v, cfd, &t->st, &cst)) ? err : tw_enter(v, cfd, -1, &cst);
}

static int rm_left(struct tw *v, struct frame *t, const char *name) {
  if (unlinkat(t->fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT) return tw_fail(v, errno, NULL);
  return 0;
}

/* Empties the directory open at fd (taken over: closed on return), whose
   parent's stat is *parent (NULL when unknown: then only statx tells a
   mount root). Never follows a symlink, never crosses a mount. Failures are
   recorded in *e against display/<rel>. Returns 0 or an errno. */
static int empty_dir_fd(int fd, const struct stat *parent, const char *display, struct fserr *e) {
  struct tw v = {.e = e, .display = display, .nostat = 1, .entry = rm_entry, .left = rm_left};
  struct stat st;
  int err = rm_prepare(&v, fd, parent, &st);
  return err ? err : tw_run(&v, fd, -1, &st);
}

/* Removes rel and everything under it; see int.h. */
int rmtree_at(const struct at *a, const char *rel, const char *display, struct fserr *e) {
  const char *r = rel;
  while (a->dir && (*r == '/' || (r[0] == '.' && (r[1] == '/' || !r[1])))) r++;
  if (a->dir && !*r) { /* the Dir itself: emptied */
    int fd = openat(a->fd, ".", DIR_FLAGS);
    return fd < 0 ? fserr_set(e, errno, display, "", NULL) : empty_dir_fd(fd, NULL, display, e);
  }
  int pfd;
  char *base;
  int err = ct_at_parent(a, rel, &pfd, &base);
  if (err == EINVAL) return fserr_set(e, EINVAL, display, "", "refusing to remove '.' or '..'");
  if (err) return err == ENOENT ? 0 : fserr_set(e, err, display, "", NULL);
  struct stat st, pst;
  if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    err = errno == ENOENT ? 0 : fserr_set(e, errno, display, "", NULL);
  } else if (!S_ISDIR(st.st_mode)) {
    if (unlinkat(pfd, base, 0) != 0 && errno != ENOENT) err = fserr_set(e, errno, display, "", NULL);
  } else if (fstat(pfd, &pst) != 0) {
    err = fserr_set(e, errno, display, "", NULL);
  } else {
    int fd;
    err = rm_open_dir(pfd, base, &fd);
    if (err) err = err == ENOENT ? 0 : fserr_set(e, ct_classify(pfd, base, err), display, "", NULL);
    else if (!(err = empty_dir_fd(fd, &pst, display, e)) && unlinkat(pfd, base, AT_REMOVEDIR) != 0 &&
             errno != ENOENT)
      err = fserr_set(e, errno, display, "", NULL);
  }
  close(pfd);
  free(base);
  return err;
}
