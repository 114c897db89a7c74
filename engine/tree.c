/* ct.fs.tree_digest: one sha256 over a directory tree's names, metadata and contents.

   The layer store records it for every extracted layer so `images --verify`
   can tell a layer that changed on disk. The walk is walk.c's visitor: names in byte order, no symlink followed, no mount crossed (a
   mount point is recorded, not entered). Each entry
   adds one record to the digest:

     <relative name> NUL <type> NUL <mode, octal> NUL <uid> NUL <gid> NUL <what> NUL LF

   where <what> is the sha256 of a regular file's content, a symlink's
   target, "major:minor" of a device, "y"/"" for a directory's
   trusted.overlay.opaque; the root itself is recorded as "." with its
   opaque flag only (its owner and mode are the caller's). */
#include "int.h"
#include "layer.h"

#include <errno.h>
#include <nettle/sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

struct digest {
  struct sha256_ctx all, file;
  const struct ct_known *known;
  char buf[COPY_BUFSIZE];
};

static void feed(struct sha256_ctx *md, const char *s, size_t n) {
  sha256_update(md, n, (const uint8_t *)s);
}

/* s with its NUL */
static void feed_str(struct sha256_ctx *md, const char *s) { feed(md, s, strlen(s) + 1); }

static void hex(const unsigned char *d, unsigned n, char *out) {
  for (unsigned i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static int by_ino(const void *a, const void *b) {
  const struct ct_known_file *x = a, *y = b;
  if (x->ino != y->ino) return x->ino < y->ino ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

void ct_known_sort(struct ct_known *k) {
  if (k->n) qsort(k->v, k->n, sizeof *k->v, by_ino);
}

/* The last digest recorded for st's inode when its size is the one
   recorded, else NULL. */
static const unsigned char *known_digest(const struct ct_known *k, const struct stat *st) {
  size_t lo = 0, hi = k ? k->n : 0;
  while (lo < hi) { /* the first entry of a larger inode */
    size_t mid = lo + (hi - lo) / 2;
    if (k->v[mid].ino <= st->st_ino) lo = mid + 1;
    else hi = mid;
  }
  if (lo == 0 || k->v[lo - 1].ino != st->st_ino || k->v[lo - 1].size != st->st_size) return NULL;
  return k->v[lo - 1].sha256;
}

/* The sha256 hex of the regular file name in dirfd, which must still be
   the inode *st (else ESTALE). */
static int file_digest(struct digest *g, int dirfd, const char *name, const struct stat *st,
                       char out[65]) {
  const unsigned char *known = known_digest(g->known, st);
  if (known) {
    hex(known, SHA256_DIGEST_SIZE, out);
    return 0;
  }
  struct stat now = *st;
  int fd = ct_open_regular(dirfd, name, O_RDONLY, &now, &now), err = 0;
  if (fd < 0) return last_err();
  sha256_init(&g->file);
  for (;;) {
    ssize_t n = read(fd, g->buf, COPY_BUFSIZE);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) err = last_err();
    if (n <= 0) break;
    feed(&g->file, g->buf, (size_t)n);
  }
  close(fd);
  unsigned char d[SHA256_DIGEST_SIZE];
  sha256_digest(&g->file, sizeof d, d);
  if (!err) hex(d, sizeof d, out);
  return err;
}

/* One record; fd is the entry opened as a directory (for its xattr), or -1. */
static int record(struct digest *g, int dirfd, const char *name, const char *rel,
                  const struct stat *st, int fd) {
  char what[PATH_MAX + 1] = "", num[64];
  if (S_ISREG(st->st_mode)) {
    int err = file_digest(g, dirfd, name, st, what);
    if (err) return err;
  } else if (S_ISLNK(st->st_mode)) {
    char *t = readlink_alloc(dirfd, name);
    if (!t) return last_err();
    snprintf(what, sizeof what, "%s", t);
    free(t);
  } else if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) {
    snprintf(what, sizeof what, "%u:%u", major(st->st_rdev), minor(st->st_rdev));
  } else if (S_ISDIR(st->st_mode) && fd >= 0 && ct_fd_opaque(fd)) {
    snprintf(what, sizeof what, "y");
  }
  feed_str(&g->all, rel);
  feed_str(&g->all, type_name(st->st_mode));
  snprintf(num, sizeof num, "%o", (unsigned)(st->st_mode & 07777));
  feed_str(&g->all, num);
  snprintf(num, sizeof num, "%u", (unsigned)st->st_uid);
  feed_str(&g->all, num);
  snprintf(num, sizeof num, "%u", (unsigned)st->st_gid);
  feed_str(&g->all, num);
  feed_str(&g->all, what);
  feed(&g->all, "\n", 1);
  return 0;
}

/* Records each entry; a directory is entered unless it is a mount point. */
static int dg_entry(struct tw *v, struct frame *t, const char *name, const struct stat *st) {
  struct stat cst = *st;
  int cfd = S_ISDIR(cst.st_mode) ? tw_opendir(t, name, &cst) : -1;
  if (S_ISDIR(cst.st_mode) && cfd < 0 && errno != EBUSY) return tw_fail(v, errno, NULL);
  int err = record(v->ctx, t->fd, name, pb_str(&v->w.rel), &cst, cfd);
  if (err || cfd < 0) {
    if (cfd >= 0) close(cfd);
    return err ? tw_fail(v, err, NULL) : 0;
  }
  return tw_enter(v, cfd, -1, &cst);
}

int ct_tree_digest_push(lua_State *L, const char *path, const struct ct_known *known) {
  struct digest *g = lua_newuserdatauv(L, sizeof *g, 0); /* the read buffer, freed by Lua */
  g->known = known;
  int fd = open(path, DIR_FLAGS | O_NOFOLLOW);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    if (fd >= 0) close_keep_errno(fd);
    return ct_oserror(L, errno, path);
  }
  sha256_init(&g->all);
  feed(&g->all, ".", 2);
  feed_str(&g->all, ct_fd_opaque(fd) ? "y" : "");
  feed(&g->all, "\n", 1);
  struct fserr e = {0, NULL, NULL, NULL};
  struct tw v = {.e = &e, .display = path, .gone_fails = 1, .entry = dg_entry, .ctx = g};
  if (tw_run(&v, fd, -1, &st)) return fserr_push(L, &e);
  unsigned char d[SHA256_DIGEST_SIZE];
  sha256_digest(&g->all, sizeof d, d);
  char out[2 * SHA256_DIGEST_SIZE + 1];
  hex(d, sizeof d, out);
  lua_pop(L, 1);
  lua_pushfstring(L, "sha256:%s", out);
  return 1;
}

/* tree_digest(path) -> "sha256:<hex>" */
static int fs_tree_digest(lua_State *L) { return ct_tree_digest_push(L, luaL_checkstring(L, 1), NULL); }

int luaopen_ct_fs_tree(lua_State *L) {
  lua_pushcfunction(L, fs_tree_digest);
  lua_setfield(L, -2, "tree_digest");
  return 0;
}
