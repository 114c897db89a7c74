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
#include <nettle/base16.h>
#include <nettle/sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* tw_push's userdata: a Lua error in a lookup of known frees the walk. */
struct digest {
  struct tw v;
  lua_State *L;
  int known; /* stack index of the digests known already (0: none) */
  struct sha256_ctx all, file;
  char buf[COPY_BUFSIZE];
};

static void feed(struct sha256_ctx *md, const char *s, size_t n) {
  sha256_update(md, n, (const uint8_t *)s);
}

/* s with its NUL */
static void feed_str(struct sha256_ctx *md, const char *s) { feed(md, s, strlen(s) + 1); }

static void hex(const unsigned char d[SHA256_DIGEST_SIZE], char out[65]) {
  base16_encode_update(out, SHA256_DIGEST_SIZE, d);
  out[64] = '\0';
}

/* Whether known holds rel as the inode *st with its size now (then *k). */
static int known_digest(struct digest *g, const char *rel, const struct stat *st,
                        struct ct_known_file *k) {
  if (!g->known) return 0;
  int hit = lua_getfield(g->L, g->known, rel) == LUA_TSTRING && lua_rawlen(g->L, -1) == sizeof *k;
  if (hit) memcpy(k, lua_tostring(g->L, -1), sizeof *k);
  lua_pop(g->L, 1);
  return hit && k->ino == st->st_ino && k->size == st->st_size;
}

/* The sha256 hex of the regular file name in dirfd, which must still be
   the inode *st (else ESTALE). */
static int file_digest(struct digest *g, int dirfd, const char *name, const struct stat *st,
                       char out[65]) {
  struct ct_known_file k;
  if (known_digest(g, pb_str(&g->v.w.rel), st, &k)) {
    hex(k.sha256, out);
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
  if (!err) hex(d, out);
  return err;
}

/* One record; fd is the entry opened as a directory (for its xattr), or -1. */
static int record(struct digest *g, int dirfd, const char *name, const char *rel,
                  const struct stat *st, int fd) {
  char what[PATH_MAX + 1] = "", meta[96];
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
  /* type, mode, uid and gid, each ended by its NUL */
  int n = snprintf(meta, sizeof meta, "%s%c%o%c%u%c%u", type_name(st->st_mode), 0,
                   (unsigned)(st->st_mode & 07777), 0, (unsigned)st->st_uid, 0, (unsigned)st->st_gid);
  feed(&g->all, meta, (size_t)n + 1);
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

int ct_tree_digest_push(lua_State *L, const char *path, int known) {
  struct digest *g = tw_push(L, sizeof *g); /* the read buffer too, freed by Lua */
  g->L = L;
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
  g->v = (struct tw){.e = &e, .display = path, .gone_fails = 1, .entry = dg_entry, .ctx = g};
  if (tw_run(&g->v, fd, -1, &st)) return fserr_push(L, &e);
  unsigned char d[SHA256_DIGEST_SIZE];
  sha256_digest(&g->all, sizeof d, d);
  char out[65];
  hex(d, out);
  /* the userdata stays: Lua 5.4.4's lua_settop of a to-be-closed slot can
     keep a stale stack pointer when its __close grows the stack */
  lua_pushfstring(L, "sha256:%s", out);
  return 1;
}

/* tree_digest(path) -> "sha256:<hex>" */
static int fs_tree_digest(lua_State *L) { return ct_tree_digest_push(L, luaL_checkstring(L, 1), 0); }

int luaopen_ct_fs_tree(lua_State *L) {
  lua_pushcfunction(L, fs_tree_digest);
  lua_setfield(L, -2, "tree_digest");
  return 0;
}
