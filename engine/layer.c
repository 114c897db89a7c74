/* ct.layer: OCI image layers written to disk, whole (an overlayfs lower) or on top of a tree.

   extract(blob, dest, opts) unpacks one layer into an empty directory the
   way overlayfs reads a lower layer: OCI whiteouts (".wh.<name>") become
   character devices 0:0, opaque markers (".wh..wh..opq") the xattr
   trusted.overlay.opaque = "y". apply(blob, dest, opts) lays a layer on an
   existing tree instead (the copy made where overlayfs is missing): a
   whiteout removes its name, an opaque marker empties its directory of
   what this layer did not write.

   Both write through descriptors only: every parent directory is resolved
   beneath dest with openat2 (beneath.c), never through a symlink, so an
   entry, a hard link target or a tree already in dest cannot lead a write
   outside it. Names with "..", absolute names and duplicates are refused,
   as ct.archive.extract refuses them in packages. Owners are the tar's,
   shifted by opts.idmap; setuid/setgid bits are kept; device nodes, FIFOs
   and sockets are refused, or with opts.special = "skip" skipped and named
   in the result. */
#include "int.h"
#include "layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <linux/capability.h>

#define LX_MT "ct.layer.job"

/* ---- whiteouts (shared with archive.c through layer.h) ---- */

enum ct_wh_kind ct_wh_kind(const char *base, const char **target) {
  size_t pl = sizeof CT_WH_PREFIX - 1;
  if (strncmp(base, CT_WH_PREFIX, pl) != 0) return CT_WH_NONE;
  if (strcmp(base, CT_WH_OPAQUE) == 0) return CT_WH_OPAQUE_DIR;
  if (strncmp(base + pl, CT_WH_PREFIX, pl) == 0) return CT_WH_META;
  const char *t = base + pl;
  if (!*t || strcmp(t, ".") == 0 || strcmp(t, "..") == 0) return CT_WH_BAD;
  if (target) *target = t;
  return CT_WH_FILE;
}

int ct_is_overlay_whiteout(const struct stat *st) {
  return S_ISCHR(st->st_mode) && major(st->st_rdev) == 0 && minor(st->st_rdev) == 0;
}

int ct_fd_opaque(int fd) {
  char v[2];
  ssize_t n = fgetxattr(fd, CT_OPAQUE_XATTR, v, sizeof v);
  return n == 1 && v[0] == 'y';
}

int ct_set_opaque(int fd) { return fsetxattr(fd, CT_OPAQUE_XATTR, "y", 1, 0) == 0 ? 0 : last_err(); }

/* ---- the job: one call's resources, freed on every path ---- */

struct seg {
  uint32_t inside, outside, size;
};

struct dirtime {
  char *rel;
  struct timespec mtime;
};

struct lx {
  lua_State *L;
  struct job j; /* the blob (j.fd, j.rd), the progress callback and the failure */
  int root;   /* dest */
  int pfd;    /* the parent directory of the last entry ... */
  char *pdir; /* ... and its name under dest (NULL: none kept) */
  struct dirtime *dirs; /* directories whose times are set last */
  size_t ndirs, capdirs;
  struct seg *map;
  size_t nmap;
  int apply, check_space, special;
  lua_Integer max_entries, max_bytes; /* -1: no limit */
  lua_Integer entries, bytes, done, headers, whiteouts, nskipped;
  int64_t block, space_left;
  int seen, skipped; /* stack indices */
  const char *src;
  char name[PATH_MAX]; /* the entry's cleaned name */
  char link[PATH_MAX]; /* a hard link's cleaned target */
};

static void lx_close(struct lx *x) {
  job_close(&x->j);
  if (x->root >= 0) close(x->root);
  if (x->pfd >= 0) close(x->pfd);
  x->root = x->pfd = -1;
  free(x->pdir);
  x->pdir = NULL;
  for (size_t i = 0; i < x->ndirs; i++) free(x->dirs[i].rel);
  free(x->dirs);
  x->dirs = NULL;
  x->ndirs = x->capdirs = 0;
  free(x->map);
  x->map = NULL;
}

static int lx_gc(lua_State *L) {
  lx_close(luaL_checkudata(L, 1, LX_MT));
  return 0;
}

/* "<blob>: <entry>: <why or strerror>" */
static int entry_fail(struct lx *x, int err, const char *why) {
  if (!why) why = err == ELOOP ? "refusing a path through a symlink" : strerror(err);
  if (err == EXDEV) why = "refusing a path that leaves the destination";
  return job_fail(&x->j, err, "%s: %s: %s", x->src, x->name, why);
}

/* ---- names and owners ---- */

/* Splits a cleaned name in place: returns its last component; *dir is
   the rest ("" at the top). */
static char *split_name(char *name, const char **dir) {
  char *slash = strrchr(name, '/');
  if (!slash) {
    *dir = "";
    return name;
  }
  *slash = '\0';
  *dir = name;
  return slash + 1;
}

/* id shifted by the idmap; -1 when no segment holds it. */
static int map_id(const struct lx *x, int64_t id, uint32_t *out) {
  if (!x->nmap) {
    if (id < 0 || id > (int64_t)UINT32_MAX - 1) return -1;
    *out = (uint32_t)id;
    return 0;
  }
  for (size_t i = 0; i < x->nmap; i++) {
    const struct seg *s = &x->map[i];
    if (id >= s->inside && id - s->inside < s->size) {
      *out = s->outside + (uint32_t)(id - s->inside);
      return 0;
    }
  }
  return -1;
}

static int entry_owner(struct lx *x, struct archive_entry *e, uid_t *uid, gid_t *gid) {
  uint32_t u, g;
  if (map_id(x, archive_entry_uid(e), &u) < 0 || map_id(x, archive_entry_gid(e), &g) < 0)
    return job_fail(&x->j, EPERM, "%s: %s: owner %jd:%jd is outside the id mapping", x->src, x->name,
                   (intmax_t)archive_entry_uid(e), (intmax_t)archive_entry_gid(e));
  *uid = u;
  *gid = g;
  return 0;
}

/* ---- directories ---- */

/* The directory dir (cleaned, "" for dest) opened beneath dest, kept for
   the next entries. Missing directories are made 0755, owned by the mapped
   root, when `make`; else a missing one is -2. Returns the descriptor, or
   -1 (the job holds the failure). */
static int parent_fd(struct lx *x, const char *dir, int make) {
  if (x->pdir && strcmp(x->pdir, dir) == 0) return x->pfd;
  if (x->pfd >= 0) close(x->pfd);
  free(x->pdir);
  x->pdir = NULL;
  x->pfd = ct_open_beneath(x->root, *dir ? dir : ".", DIR_FLAGS, 0);
  if (x->pfd < 0 && errno == ENOENT && !make) return -2;
  if (x->pfd < 0 && errno == ENOENT) {
    uint32_t u = 0, g = 0;
    int mapped = map_id(x, 0, &u) == 0 && map_id(x, 0, &g) == 0;
    char part[PATH_MAX];
    size_t n = strlen(dir);
    for (size_t i = 0; i <= n; i++) {
      if (dir[i] != '/' && dir[i] != '\0') continue;
      memcpy(part, dir, i);
      part[i] = '\0';
      int fd = ct_open_beneath(x->root, part, DIR_FLAGS, 0);
      if (fd < 0 && errno == ENOENT) {
        int err = ct_mkdirs_beneath(x->root, part, 0755, &fd);
        if (err) return entry_fail(x, err, NULL);
        if (mapped && fchown(fd, u, g) != 0) {
          close_keep_errno(fd);
          return entry_fail(x, errno, NULL);
        }
      }
      if (fd < 0) return entry_fail(x, errno, NULL);
      if (i == n)
        x->pfd = fd;
      else
        close(fd);
    }
  }
  if (x->pfd < 0) return entry_fail(x, errno, NULL);
  if (!(x->pdir = strdup(dir))) return entry_fail(x, ENOMEM, NULL);
  return x->pfd;
}

/* Removes base in the directory pfd (a tree: never following a link nor
   crossing a mount); a missing one is fine. 0 or an errno. */
static int remove_at(int pfd, const char *base, const char *display) {
  struct stat st;
  if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT ? 0 : last_err();
  if (!S_ISDIR(st.st_mode)) return unlinkat(pfd, base, 0) == 0 || errno == ENOENT ? 0 : last_err();
  int fd = openat(pfd, base, DIR_FLAGS | O_NOFOLLOW);
  if (fd < 0) return last_err();
  struct stat pst;
  if (fstat(pfd, &pst) != 0) {
    close_keep_errno(fd);
    return last_err();
  }
  struct fserr e = {0, NULL, NULL, NULL};
  int err = empty_dir_fd(fd, &pst, display, &e); /* closes fd */
  free(e.path);
  if (err) return err;
  return unlinkat(pfd, base, AT_REMOVEDIR) == 0 || errno == ENOENT ? 0 : last_err();
}

static int remember_dir(struct lx *x, const char *rel, struct archive_entry *e) {
  if (x->ndirs == x->capdirs) {
    size_t cap = x->capdirs ? x->capdirs * 2 : 64;
    struct dirtime *nd = realloc(x->dirs, cap * sizeof *nd);
    if (!nd) return entry_fail(x, ENOMEM, NULL);
    x->dirs = nd;
    x->capdirs = cap;
  }
  struct dirtime *d = &x->dirs[x->ndirs];
  if (!(d->rel = strdup(rel))) return entry_fail(x, ENOMEM, NULL);
  d->mtime.tv_sec = archive_entry_mtime(e);
  d->mtime.tv_nsec = archive_entry_mtime_nsec(e);
  x->ndirs++;
  return 0;
}

/* Directory times last, deepest first (writing in a directory moves its
   mtime). A directory a later whiteout removed is not there any more. */
static void set_dir_times(struct lx *x) {
  while (x->ndirs > 0) {
    struct dirtime *d = &x->dirs[--x->ndirs];
    int fd = ct_open_beneath(x->root, d->rel, DIR_FLAGS, 0);
    if (fd >= 0) {
      struct timespec ts[2] = {d->mtime, d->mtime};
      (void)futimens(fd, ts);
      close(fd);
    }
    free(d->rel);
  }
}

/* ---- metadata ---- */

/* Only user.* and file capabilities come from an image: trusted.* (the
   overlay's own attributes) and security labels are the host's. */
static int xattr_allowed(const char *name) {
  return strncmp(name, "user.", 5) == 0 || strcmp(name, "security.capability") == 0;
}

/* A file capability for the id mapping's root: v2 (which the kernel honours
   for the host's root only) becomes v3 with rootid = the mapped root; a v3
   rootid is mapped. -1 when it cannot be (the attribute is then dropped). */
static int map_fcaps(const struct lx *x, const void *value, size_t size, struct vfs_ns_cap_data *out) {
  memset(out, 0, sizeof *out);
  memcpy(out, value, size < sizeof *out ? size : sizeof *out);
  uint32_t magic = le32toh(out->magic_etc), rev = magic & VFS_CAP_REVISION_MASK, root, mapped;
  if (rev == VFS_CAP_REVISION_2 && size == XATTR_CAPS_SZ_2)
    root = 0;
  else if (rev == VFS_CAP_REVISION_3 && size == XATTR_CAPS_SZ_3)
    root = le32toh(out->rootid);
  else
    return -1;
  if (map_id(x, root, &mapped) < 0) return -1;
  out->magic_etc = htole32((magic & ~VFS_CAP_REVISION_MASK) | VFS_CAP_REVISION_3);
  out->rootid = htole32(mapped);
  return 0;
}

/* Owner, then mode (chown clears setuid/setgid: set after it), then
   xattrs (chown also drops file capabilities), then times. */
static int set_meta(struct lx *x, int fd, struct archive_entry *e, uid_t uid, gid_t gid, int dir) {
  if (fchown(fd, uid, gid) != 0) return entry_fail(x, errno, NULL);
  if (fchmod(fd, archive_entry_perm(e) & 07777) != 0) return entry_fail(x, errno, NULL);
  const char *name;
  const void *value;
  size_t size;
  archive_entry_xattr_reset(e);
  while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
    if (!xattr_allowed(name)) continue;
    struct vfs_ns_cap_data caps;
    if (x->nmap && strcmp(name, "security.capability") == 0) {
      if (map_fcaps(x, value, size, &caps) < 0) continue;
      value = &caps;
      size = XATTR_CAPS_SZ_3;
    }
    if (fsetxattr(fd, name, value, size, 0) != 0 && errno != ENOTSUP) return entry_fail(x, errno, NULL);
  }
  if (!dir) {
    struct timespec t = {archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
    struct timespec ts[2] = {t, t};
    (void)futimens(fd, ts);
  }
  return 0;
}

/* ---- one entry ---- */

static int write_data(struct lx *x, int fd, int64_t size) {
  int64_t end = 0;
  for (;;) {
    const void *buf;
    size_t len;
    la_int64_t off;
    int r = archive_read_data_block(x->j.rd, &buf, &len, &off);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN)
      return job_fail(&x->j, archive_errno(x->j.rd), "%s: %s: %s", x->src, x->name,
                     archive_error_string(x->j.rd));
    for (size_t w = 0; w < len;) {
      ssize_t n = pwrite(fd, (const char *)buf + w, len - w, off + (off_t)w);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return entry_fail(x, errno, errno == ENOSPC ? "not enough space" : NULL);
      w += (size_t)n;
    }
    if (off + (int64_t)len > end) end = off + (int64_t)len;
    x->done += (lua_Integer)len;
    job_progress(x->L, &x->j, x->done, x->j.rd, 0);
  }
  if (end < size && ftruncate(fd, size) != 0) return entry_fail(x, errno, NULL);
  return 0;
}

/* Makes room for a new base in pfd: apply removes what is there (a
   directory only when the entry is not one: then it is kept); extract
   finds only directories it made itself for a missing parent. Returns 1
   when a directory is kept, 0 when the name is free, -1 on failure. */
static int make_room(struct lx *x, int pfd, const char *base, int want_dir) {
  struct stat st;
  if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT ? 0 : entry_fail(x, errno, NULL);
  if (want_dir && S_ISDIR(st.st_mode)) return 1;
  if (!x->apply) return entry_fail(x, EEXIST, "refusing to replace an entry of this layer");
  int err = remove_at(pfd, base, x->name);
  return err ? entry_fail(x, err, NULL) : 0;
}

static int skip_entry(struct lx *x, const char *what) {
  (void)what;
  lua_pushstring(x->L, x->name);
  lua_rawseti(x->L, x->skipped, ++x->nskipped);
  return 0;
}

/* Opaque marker in the directory pfd: extract marks it; apply removes
   what this layer did not write there. */
static int opaque(struct lx *x, int pfd, const char *dir) {
  if (!x->apply) {
    int err = ct_set_opaque(pfd);
    return err ? entry_fail(x, err, NULL) : 0;
  }
  struct names ns;
  int err = read_names(pfd, &ns);
  if (err) return entry_fail(x, err, NULL);
  for (size_t i = 0; i < ns.n && !err; i++) {
    lua_pushfstring(x->L, *dir ? "%s/%s" : "%s%s", dir, ns.v[i]);
    int mine = lua_getfield(x->L, x->seen, lua_tostring(x->L, -1)) != LUA_TNIL;
    lua_pop(x->L, 2);
    if (!mine) err = remove_at(pfd, ns.v[i], x->name);
  }
  names_free(&ns);
  return err ? entry_fail(x, err, NULL) : 0;
}

static int layer_entry(struct lx *x, struct archive_entry *e) {
  const char *raw = archive_entry_pathname(e);
  if (!raw) raw = archive_entry_pathname_utf8(e);
  if (!raw) return job_fail(&x->j, EINVAL, "%s: an entry has a name that cannot be read", x->src);
  const char *why = clean_name(raw, x->name, sizeof x->name);
  if (why) return job_fail(&x->j, EPERM, "%s: %s: %s", x->src, raw, why);
  if (x->max_entries >= 0 && ++x->headers > x->max_entries)
    return job_fail(&x->j, EFBIG, "%s: %s: the layer holds more than max_entries (%jd) entries", x->src,
                   x->name[0] ? x->name : raw, (intmax_t)x->max_entries);
  if (!x->name[0]) return 0; /* "./": dest is the caller's */
  if (seen_before(x->L, x->seen, x->name)) return entry_fail(x, EPERM, "refusing a second entry of the same name");

  const char *hard = archive_entry_hardlink(e);
  mode_t type = archive_entry_filetype(e);
  if (!hard && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK) {
    if (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFIFO || type == AE_IFSOCK)
      return x->special == CT_SPECIAL_SKIP ? skip_entry(x, "special")
                                           : entry_fail(x, EPERM, "refusing a special file");
    return entry_fail(x, EPERM, "refusing an entry of unknown type");
  }
  if (hard) {
    why = clean_name(hard, x->link, sizeof x->link);
    if (!why && !x->link[0]) why = "refusing a link to the layer's root";
    if (why) return job_fail(&x->j, EPERM, "%s: %s: hard link to %s: %s", x->src, x->name, hard, why);
  }
  int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
  if (size < 0 || type != AE_IFREG || hard) size = 0;
  if (x->max_bytes >= 0 && size > x->max_bytes - x->bytes)
    return job_fail(&x->j, EFBIG, "%s: %s: the layer holds more than max_bytes (%jd) bytes", x->src,
                   x->name, (intmax_t)x->max_bytes);
  if (x->check_space) {
    int64_t need = (size + x->block - 1) / x->block * x->block;
    if (need > x->space_left)
      return job_fail(&x->j, ENOSPC, "%s: %s: not enough space: need at least %jd bytes more, %jd free",
                     x->src, x->name, (intmax_t)need, (intmax_t)x->space_left);
    x->space_left -= need;
  }
  uid_t uid = 0; /* set by entry_owner (-O2 cannot see it) */
  gid_t gid = 0;
  if (entry_owner(x, e, &uid, &gid) < 0) return -1;

  char full[PATH_MAX];
  memcpy(full, x->name, strlen(x->name) + 1);
  const char *dir;
  char *base = split_name(full, &dir);
  const char *target = NULL;
  enum ct_wh_kind wk = ct_wh_kind(base, &target);
  if (wk == CT_WH_BAD) return entry_fail(x, EPERM, "refusing a whiteout of no name");
  if (wk == CT_WH_META) return 0;
  /* applied, a whiteout in a directory that is not there hides nothing */
  int pfd = parent_fd(x, dir, !(x->apply && wk != CT_WH_NONE));
  if (pfd == -2) return 0;
  if (pfd < 0) return -1;
  if (wk == CT_WH_OPAQUE_DIR) return opaque(x, pfd, dir);
  if (wk == CT_WH_FILE) {
    x->whiteouts++;
    if (x->apply) {
      int err = remove_at(pfd, target, x->name);
      return err ? entry_fail(x, err, NULL) : 0;
    }
    if (mknodat(pfd, target, S_IFCHR, makedev(0, 0)) != 0) return entry_fail(x, errno, NULL);
    if (fchownat(pfd, target, uid, gid, AT_SYMLINK_NOFOLLOW) != 0) return entry_fail(x, errno, NULL);
    x->entries++;
    return 0;
  }

  int kept = make_room(x, pfd, base, !hard && type == AE_IFDIR);
  if (kept < 0) return -1;
  x->entries++;
  x->bytes += size;
  if (hard) {
    char tfull[PATH_MAX];
    memcpy(tfull, x->link, strlen(x->link) + 1);
    const char *tdir;
    char *tbase = split_name(tfull, &tdir);
    int tfd = ct_open_beneath(x->root, *tdir ? tdir : ".", DIR_FLAGS, 0);
    if (tfd < 0) return entry_fail(x, errno, NULL);
    int r = linkat(tfd, tbase, pfd, base, 0);
    close_keep_errno(tfd);
    return r == 0 ? 0 : job_fail(&x->j, errno, "%s: %s: hard link to %s: %s", x->src, x->name, x->link,
                                strerror(errno));
  }
  if (type == AE_IFLNK) {
    const char *to = archive_entry_symlink(e);
    if (!to) return entry_fail(x, EINVAL, "a symlink without a target");
    if (symlinkat(to, pfd, base) != 0) return entry_fail(x, errno, NULL);
    if (fchownat(pfd, base, uid, gid, AT_SYMLINK_NOFOLLOW) != 0) return entry_fail(x, errno, NULL);
    struct timespec t = {archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
    struct timespec ts[2] = {t, t};
    (void)utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW);
    return 0;
  }
  if (type == AE_IFDIR) {
    if (!kept && mkdirat(pfd, base, 0700) != 0) return entry_fail(x, errno, NULL);
    int fd = openat(pfd, base, DIR_FLAGS | O_NOFOLLOW);
    if (fd < 0) return entry_fail(x, errno, NULL);
    int r = set_meta(x, fd, e, uid, gid, 1);
    close(fd);
    return r < 0 ? -1 : remember_dir(x, x->name, e);
  }
  int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return entry_fail(x, errno, NULL);
  int r = write_data(x, fd, size);
  if (!r) r = set_meta(x, fd, e, uid, gid, 0);
  if (close(fd) != 0 && !r) r = entry_fail(x, errno, NULL);
  return r;
}

/* ---- the call ---- */

static int lx_run(struct lx *x, const char *dest) {
  x->root = open(dest, DIR_FLAGS);
  if (x->root < 0) return job_fail(&x->j, errno, "%s: %s", dest, strerror(errno));
  if (!x->apply) {
    struct names ns;
    int err = read_names(x->root, &ns);
    size_t n = ns.n;
    names_free(&ns);
    if (err) return job_fail(&x->j, err, "%s: %s", dest, strerror(err));
    if (n) return job_fail(&x->j, ENOTEMPTY, "%s: not empty (a layer is extracted into an empty directory)", dest);
  }
  x->j.fd = open(x->src, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  struct stat st;
  if (x->j.fd < 0 || fstat(x->j.fd, &st) != 0) return job_fail(&x->j, errno, "%s: %s", x->src, strerror(errno));
  if (!S_ISREG(st.st_mode)) return job_fail(&x->j, EINVAL, "%s: not a regular file", x->src);
  if (x->check_space) {
    struct statvfs vfs;
    if (fstatvfs(x->root, &vfs) != 0) return job_fail(&x->j, errno, "%s: %s", dest, strerror(errno));
    x->block = vfs.f_frsize ? (int64_t)vfs.f_frsize : 4096;
    x->space_left = (int64_t)vfs.f_bavail * x->block;
  }
  if (!(x->j.rd = archive_read_new())) return job_fail(&x->j, ENOMEM, "%s: %s", x->src, strerror(ENOMEM));
  archive_read_support_filter_gzip(x->j.rd);
  archive_read_support_filter_zstd(x->j.rd);
  archive_read_support_format_tar(x->j.rd);
  if (archive_read_open_fd(x->j.rd, x->j.fd, BLOCK_SIZE) != ARCHIVE_OK)
    return job_fail(&x->j, EINVAL, "%s: not a layer (a tar, plain, gzip or zstd): %s", x->src,
                   archive_error_string(x->j.rd));
  for (;;) {
    struct archive_entry *e;
    int r = archive_read_next_header(x->j.rd, &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN)
      return job_fail(&x->j, archive_errno(x->j.rd) > 0 ? archive_errno(x->j.rd) : EINVAL, "%s: %s", x->src,
                     archive_error_string(x->j.rd));
    if (layer_entry(x, e) < 0) return -1;
  }
  set_dir_times(x);
  job_progress(x->L, &x->j, x->done, x->j.rd, 1);
  return 0;
}

static lua_Integer opt_int(lua_State *L, const char *k, lua_Integer def) {
  int ty = lua_getfield(L, 3, k);
  lua_Integer v = def;
  if (ty != LUA_TNIL) {
    int ok = 0;
    v = lua_tointegerx(L, -1, &ok);
    if (!ok || v < 0) luaL_error(L, "bad option '%s' (a non-negative integer expected)", k);
  }
  lua_pop(L, 1);
  return v;
}

static uint32_t seg_field(lua_State *L, int t, const char *k, int i) {
  lua_getfield(L, t, k);
  int ok = 0;
  lua_Integer v = lua_tointegerx(L, -1, &ok);
  lua_pop(L, 1);
  if (!ok || v < 0 || v > (lua_Integer)UINT32_MAX)
    luaL_error(L, "bad option 'idmap' (segment %d: '%s' must be an id)", i, k);
  return (uint32_t)v;
}

static void read_idmap(lua_State *L, struct lx *x) {
  if (lua_getfield(L, 3, "idmap") == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  luaL_argexpected(L, lua_istable(L, -1), 3, "idmap: an array of {inside=, outside=, size=}");
  size_t n = (size_t)lua_rawlen(L, -1);
  if (n == 0 || n > 340) luaL_error(L, "bad option 'idmap' (1 to 340 segments expected)");
  if (!(x->map = calloc(n, sizeof *x->map))) luaL_error(L, "out of memory");
  for (size_t i = 0; i < n; i++) {
    if (lua_rawgeti(L, -1, (lua_Integer)i + 1) != LUA_TTABLE)
      luaL_error(L, "bad option 'idmap' (segment %d is not a table)", (int)i + 1);
    struct seg *s = &x->map[i];
    s->inside = seg_field(L, -1, "inside", (int)i + 1);
    s->outside = seg_field(L, -1, "outside", (int)i + 1);
    s->size = seg_field(L, -1, "size", (int)i + 1);
    if (!s->size || (uint64_t)s->inside + s->size > UINT32_MAX + 1ull ||
        (uint64_t)s->outside + s->size > UINT32_MAX + 1ull)
      luaL_error(L, "bad option 'idmap' (segment %d is empty or out of range)", (int)i + 1);
    lua_pop(L, 1);
    x->nmap++;
  }
  lua_pop(L, 1);
}

/* extract/apply(blob, dest [, opts]) -> {entries=, bytes=, whiteouts=, skipped={names}} */
static int layer_call(lua_State *L, int apply) {
  const char *src = luaL_checkstring(L, 1);
  const char *dest = luaL_checkstring(L, 2);
  if (lua_isnoneornil(L, 3)) {
    lua_settop(L, 2);
    lua_newtable(L);
  }
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  int progress = 0;
  int ty = lua_getfield(L, 3, "progress"); /* 4 */
  if (ty != LUA_TNIL && ty != LUA_TFUNCTION)
    luaL_error(L, "bad option 'progress' (function expected, got %s)", lua_typename(L, ty));
  if (ty == LUA_TFUNCTION) progress = 4;
  lua_newtable(L); /* 5: names met */
  lua_newtable(L); /* 6: skipped */
  struct lx *x = lua_newuserdatauv(L, sizeof *x, 0); /* 7 */
  memset(x, 0, sizeof *x);
  x->j.fd = x->root = x->pfd = -1;
  luaL_setmetatable(L, LX_MT);
  lua_toclose(L, 7);
  x->L = L;
  x->src = src;
  x->apply = apply;
  x->j.progress = progress;
  x->seen = 5;
  x->skipped = 6;
  x->max_entries = opt_int(L, "max_entries", -1);
  x->max_bytes = opt_int(L, "max_bytes", -1);
  lua_getfield(L, 3, "check_space");
  x->check_space = lua_toboolean(L, -1);
  lua_pop(L, 1);
  x->special = ct_opt_special(L, 3);
  read_idmap(L, x);
  if (lx_run(x, dest) < 0) {
    lx_close(x);
    return ct_error(L, x->j.err, "%s", x->j.msg);
  }
  lx_close(x);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, x->entries);
  lua_setfield(L, -2, "entries");
  lua_pushinteger(L, x->bytes);
  lua_setfield(L, -2, "bytes");
  lua_pushinteger(L, x->whiteouts);
  lua_setfield(L, -2, "whiteouts");
  lua_pushvalue(L, 6);
  lua_setfield(L, -2, "skipped");
  return 1;
}

static int l_extract(lua_State *L) { return layer_call(L, 0); }
static int l_apply(lua_State *L) { return layer_call(L, 1); }

static const luaL_Reg layer_funcs[] = {
    {"extract", l_extract},
    {"apply", l_apply},
    {NULL, NULL},
};

int luaopen_ct_layer(lua_State *L) {
  ct_class(L, LX_MT, NULL, lx_gc, NULL);
  luaL_newlib(L, layer_funcs);
  return 1;
}
