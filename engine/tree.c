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
  char *buf;
};

static int feed(struct sha256_ctx *md, const char *s, size_t n) {
  sha256_update(md, n, (const uint8_t *)s);
  return 0;
}

static int feed_str(struct sha256_ctx *md, const char *s) { return feed(md, s, strlen(s) + 1); }

static void hex(const unsigned char *d, unsigned n, char *out) {
  for (unsigned i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* The sha256 hex of the regular file name in dirfd, which must still be
   the inode *st (else ESTALE). */
static int file_digest(struct digest *g, int dirfd, const char *name, const struct stat *st,
                       char out[65]) {
  struct stat now = *st;
  int fd = tw_openfile(dirfd, name, &now), err = 0;
  if (fd < 0) return last_err();
  sha256_init(&g->file);
  while (!err) {
    ssize_t n = read(fd, g->buf, COPY_BUFSIZE);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) err = last_err();
    if (n <= 0) break;
    err = feed(&g->file, g->buf, (size_t)n);
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
  int err = 0;
  if (S_ISREG(st->st_mode)) {
    err = file_digest(g, dirfd, name, st, what);
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
  if (err) return err;
  if ((err = feed_str(&g->all, rel)) || (err = feed_str(&g->all, type_name(st->st_mode)))) return err;
  snprintf(num, sizeof num, "%o", (unsigned)(st->st_mode & 07777));
  if ((err = feed_str(&g->all, num))) return err;
  snprintf(num, sizeof num, "%u", (unsigned)st->st_uid);
  if ((err = feed_str(&g->all, num))) return err;
  snprintf(num, sizeof num, "%u", (unsigned)st->st_gid);
  if ((err = feed_str(&g->all, num)) || (err = feed_str(&g->all, what))) return err;
  return feed(&g->all, "\n", 1);
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

static int digest_tree(struct digest *g, int fd, const char *path, struct fserr *e) {
  struct tw v = {.e = e, .display = path, .gone_fails = 1, .entry = dg_entry, .ctx = g};
  struct stat st;
  const char root[] = ".";
  if (fstat(fd, &st) != 0) {
    close_keep_errno(fd);
    return fserr_set(e, errno, path, "", NULL);
  }
  if (feed(&g->all, root, sizeof root) ||
      feed_str(&g->all, ct_fd_opaque(fd) ? "y" : "") || feed(&g->all, "\n", 1)) {
    close(fd);
    return fserr_set(e, EIO, path, "", "sha256 failed");
  }
  return tw_run(&v, fd, -1, &st);
}

/* tree_digest(path) -> "sha256:<hex>" */
static int fs_tree_digest(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int fd = open(path, DIR_FLAGS | O_NOFOLLOW);
  if (fd < 0) return ct_oserror(L, errno, path);
  struct digest g;
  sha256_init(&g.all);
  g.buf = malloc(COPY_BUFSIZE);
  struct fserr e = {0, NULL, NULL, NULL};
  int err = 0;
  if (!g.buf) {
    close(fd);
    err = fserr_set(&e, ENOMEM, path, "", NULL);
  } else {
    err = digest_tree(&g, fd, path, &e);
  }
  unsigned char d[SHA256_DIGEST_SIZE];
  sha256_digest(&g.all, sizeof d, d);
  free(g.buf);
  if (err) return fserr_push(L, &e);
  char out[2 * SHA256_DIGEST_SIZE + 1];
  hex(d, sizeof d, out);
  lua_pushfstring(L, "sha256:%s", out);
  return 1;
}

int luaopen_ct_fs_tree(lua_State *L) {
  lua_pushcfunction(L, fs_tree_digest);
  lua_setfield(L, -2, "tree_digest");
  return 0;
}
