/* ct.archive.extract: a tar (a package, a backup, an OCI layer) written beneath a directory through descriptors.

   Every entry's parent is opened beneath dest with openat2 (beneath.c),
   never through a symlink, so no entry, hard link target or tree already
   in dest leads a write outside it. Names with "..", absolute names and
   two entries of one name are refused; the limits (entries, bytes, free
   space) are checked before an entry is written. What differs between a
   package, a backup and a layer is the caller's, per call: owners kept
   (and shifted by an id mapping) or left ours, OCI whiteouts as plain
   names, as overlayfs reads them, or applied on the tree, and whether a
   device node, FIFO or socket is refused or skipped. */
#include "int.h"
#include "layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <nettle/sha2.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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

/* ---- whiteouts (shared through layer.h) ---- */

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

/* ---- one call ---- */

enum { WH_PLAIN, WH_OVERLAY, WH_APPLY }; /* opts.whiteouts: nil, "overlay", "apply" */

struct extract {
  lua_State *L;
  struct job *j; /* the archive, dest's descriptors, directory times, the failure */
  const char *src, *dest;
  int preserve, check_space, skip_special, wh, writeback;
  int tree;                /* opts.tree_digest: each file hashed as written ... */
  int known;               /* ... by name, in the table at this stack index */
  struct sha256_ctx md;
  int mapped;         /* opts.idmap: ids 0 .. map_size - 1 as map_out + id */
  uint32_t map_out;
  int64_t map_size;
  lua_Integer max_entries, max_bytes; /* -1: no limit */
  lua_Integer entries, bytes, done, headers, whiteouts, nskipped;
  int64_t block, space_left;
  int seen, skipped, dirs, only; /* stack indices (only: 0 when everything) */
  lua_Integer ndirs;
  char name[PATH_MAX];     /* the entry's cleaned name */
  char link[PATH_MAX];     /* a hard link's cleaned target */
};

/* "<src>: <entry>: <why or strerror>" */
static int entry_fail(struct extract *x, int err, const char *why) {
  if (!why) why = err == ELOOP ? "refusing a path through a symlink" : strerror(err);
  return job_fail(x->j, err, "%s: %s: %s", x->src, x->name, why);
}

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

/* id shifted by the idmap; -1 when the mapping does not hold it. */
static int map_id(const struct extract *x, int64_t id, uint32_t *out) {
  if (id < 0 || id >= (x->mapped ? x->map_size : (int64_t)UINT32_MAX)) return -1;
  *out = x->map_out + (uint32_t)id;
  return 0;
}

/* Whether opts.only holds the name or one of its parent directories. */
static int wanted(struct extract *x) {
  for (const char *p = x->name; x->only; p++) {
    if (*p && *p != '/') continue;
    lua_pushlstring(x->L, x->name, (size_t)(p - x->name));
    int hit = lua_rawget(x->L, x->only) != LUA_TNIL;
    lua_pop(x->L, 1);
    if (hit || !*p) return hit;
  }
  return 1;
}

/* ---- directories ---- */

/* The directory dir (cleaned, "" for dest) opened beneath dest. Missing
   directories are made 0755 (owned by the mapped root when owners are
   kept) when `make`; else a missing one is -2. A symlink on the way is
   refused by name. Returns the descriptor, or -1. */
static int open_dir(struct extract *x, const char *dir, int make, const char *what) {
  int fd = ct_open_beneath(x->j->root, *dir ? dir : ".", DIR_FLAGS, 0);
  if (fd >= 0 || (errno == ENOENT && !make)) return fd >= 0 ? fd : -2;
  uint32_t u = 0, g = 0;
  int chown_new = x->preserve && map_id(x, 0, &u) == 0 && map_id(x, 0, &g) == 0;
  char part[PATH_MAX];
  size_t n = strlen(dir);
  /* one directory at a time: which one is missing or a link */
  for (size_t i = 0; i <= n; i++) {
    if (dir[i] != '/' && dir[i] != '\0') continue;
    memcpy(part, dir, i);
    part[i] = '\0';
    fd = ct_open_beneath(x->j->root, part, DIR_FLAGS, 0);
    if (fd < 0 && errno == ENOENT && make) {
      int err = ct_mkdirs_beneath(x->j->root, part, 0755, &fd);
      if (err) return entry_fail(x, err, NULL);
      if (chown_new && fchown(fd, u, g) != 0) {
        close_keep_errno(fd);
        return entry_fail(x, errno, NULL);
      }
    }
    if (fd < 0 && errno == ELOOP)
      return job_fail(x->j, EPERM, "%s: %s: refusing %s through the symlink %s", x->src, x->name,
                      what, part);
    if (fd < 0) return entry_fail(x, errno, NULL);
    if (i < n) close(fd);
  }
  return fd;
}

/* open_dir for an entry's parent, kept for the next entries. */
static int parent_fd(struct extract *x, const char *dir, int make) {
  struct job *j = x->j;
  if (j->pdir && strcmp(j->pdir, dir) == 0) return j->pfd;
  if (j->pfd >= 0) close(j->pfd);
  free(j->pdir);
  j->pdir = NULL;
  j->pfd = open_dir(x, dir, make, "a path");
  if (j->pfd < 0) return j->pfd;
  if (!(j->pdir = strdup(dir))) return entry_fail(x, ENOMEM, NULL);
  return j->pfd;
}

/* Removes base in the directory pfd (rmtree: never following a link nor
   crossing a mount); a missing one is fine. 0 or an errno. */
static int remove_at(int pfd, const char *base, const char *display) {
  const struct at a = {pfd, 1, 0};
  struct fserr e = {0, NULL, NULL, NULL};
  int err = rmtree_at(&a, base, display, &e);
  free(e.path);
  return err;
}

/* A directory's time is set at the end: (name, seconds, nanoseconds) in
   the table at x->dirs. */
static void remember_dir(struct extract *x, struct archive_entry *e) {
  lua_State *L = x->L;
  lua_pushstring(L, x->name);
  lua_rawseti(L, x->dirs, ++x->ndirs);
  lua_pushinteger(L, (lua_Integer)archive_entry_mtime(e));
  lua_rawseti(L, x->dirs, ++x->ndirs);
  lua_pushinteger(L, (lua_Integer)archive_entry_mtime_nsec(e));
  lua_rawseti(L, x->dirs, ++x->ndirs);
}

/* Directory times last, deepest first (writing in a directory moves its
   mtime). A directory a later whiteout removed is not there any more. */
static void set_dir_times(struct extract *x) {
  lua_State *L = x->L;
  for (lua_Integer i = x->ndirs - 2; i > 0; i -= 3) {
    lua_rawgeti(L, x->dirs, i);
    lua_rawgeti(L, x->dirs, i + 1);
    lua_rawgeti(L, x->dirs, i + 2);
    struct timespec t = {(time_t)lua_tointeger(L, -2), (long)lua_tointeger(L, -1)};
    int fd = ct_open_beneath(x->j->root, lua_tostring(L, -3), DIR_FLAGS, 0);
    lua_pop(L, 3);
    if (fd >= 0) {
      struct timespec ts[2] = {t, t};
      (void)futimens(fd, ts);
      close(fd);
    }
  }
}

/* ---- metadata ---- */

/* A file capability for the id mapping's root: v2 (which the kernel honours
   for the host's root only) becomes v3 with rootid = the mapped root; a v3
   rootid is mapped. -1 when it cannot be (the attribute is then dropped). */
static int map_fcaps(const struct extract *x, const void *value, size_t size,
                     struct vfs_ns_cap_data *out) {
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

/* With owners kept: owner, then mode (chown clears setuid/setgid: set
   after it), then xattrs (chown also drops file capabilities): user.* and
   file capabilities only, trusted.* (the overlay's own) and security labels
   are the host's. Without: ours, setuid/setgid cleared, no xattrs. Then
   the time (a directory's at the end). */
static int set_meta(struct extract *x, int fd, struct archive_entry *e, uid_t uid, gid_t gid,
                    int dir) {
  if (x->preserve && fchown(fd, uid, gid) != 0) return entry_fail(x, errno, NULL);
  mode_t perm = archive_entry_perm(e) & (x->preserve ? 07777 : 01777);
  if (fchmod(fd, perm) != 0) return entry_fail(x, errno, NULL);
  const char *name;
  const void *value;
  size_t size;
  archive_entry_xattr_reset(e);
  while (x->preserve && archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
    int caps = strcmp(name, "security.capability") == 0;
    if (!caps && strncmp(name, "user.", 5) != 0) continue;
    struct vfs_ns_cap_data mapped;
    if (caps && x->mapped) {
      if (map_fcaps(x, value, size, &mapped) < 0) continue;
      value = &mapped;
      size = XATTR_CAPS_SZ_3;
    }
    if (fsetxattr(fd, name, value, size, 0) != 0 && errno != ENOTSUP)
      return entry_fail(x, errno, NULL);
  }
  if (!dir) {
    struct timespec t = {archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
    struct timespec ts[2] = {t, t};
    (void)futimens(fd, ts);
  }
  return 0;
}

/* ---- one entry ---- */

/* opts.writeback: each file's pages are handed to the disk as they are
   written (every few MiB, and its tail when it is closed), so the disk
   works while the rest of the archive is read and the caller's one
   syncfs waits only for the last of them. A hint: a failure shows there. */
#define WRITEBACK_EVERY (8 << 20)

static void start_writeback(struct extract *x, int fd, int64_t from, int64_t to) {
  if (x->writeback && to > from) sync_file_range(fd, from, to - from, SYNC_FILE_RANGE_WRITE);
}

/* opts.tree_digest: the file's content digest, kept by name with its
   inode and size for the tree digest at the end (the same definition as
   ct.fs.tree_digest's walk, which then reads no file this call wrote). */
static void hash_zeros(struct extract *x, int64_t n) {
  static const unsigned char zeros[4096];
  for (; n > 0; n -= n < (int64_t)sizeof zeros ? n : (int64_t)sizeof zeros)
    sha256_update(&x->md, n < (int64_t)sizeof zeros ? (size_t)n : sizeof zeros, zeros);
}

/* Only files this large are remembered: what a walk saves is reading big
   files again, and the table then grows with the layer's bytes (one entry
   per 64 KiB at most), not with its number of files. */
#define KNOWN_MIN (64 << 10)

static void remember_digest(struct extract *x, int fd, int64_t len) {
  struct stat st;
  if (len < KNOWN_MIN) return; /* not known: the walk reads it */
  if (fstat(fd, &st) != 0 || st.st_size != len) return;
  struct ct_known_file k = {st.st_ino, st.st_size, {0}};
  sha256_digest(&x->md, sizeof k.sha256, k.sha256);
  lua_pushlstring(x->L, (const char *)&k, sizeof k);
  lua_setfield(x->L, x->known, x->name);
}

static int write_data(struct extract *x, int fd, int64_t size) {
  struct job *j = x->j;
  int64_t end = 0, started = 0, hashed = 0; /* hashed: -1 once the data came out of order */
  if (x->tree) sha256_init(&x->md);
  for (;;) {
    const void *buf;
    size_t len;
    la_int64_t off;
    int r = archive_read_data_block(j->rd, &buf, &len, &off);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) return job_fail_archive(j, j->rd, x->src, x->name);
    for (size_t w = 0; w < len;) {
      ssize_t n = pwrite(fd, (const char *)buf + w, len - w, off + (off_t)w);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == ENOSPC)
        return job_fail(j, ENOSPC, "%s: %s: not enough space in %s (%s)", x->src, x->name,
                        x->dest, strerror(ENOSPC));
      if (n < 0) return entry_fail(x, errno, NULL);
      w += (size_t)n;
    }
    if (x->tree && hashed >= 0 && off >= hashed) { /* a hole of a sparse file reads as zeros */
      hash_zeros(x, off - hashed);
      sha256_update(&x->md, len, buf);
      hashed = off + (int64_t)len;
    } else if (x->tree) {
      hashed = -1;
    }
    if (off + (int64_t)len > end) end = off + (int64_t)len;
    if (end - started >= WRITEBACK_EVERY) {
      start_writeback(x, fd, started, end);
      started = end;
    }
    x->done += (lua_Integer)len;
    job_progress(x->L, j, x->done, (lua_Integer)archive_filter_bytes(j->rd, -1), 0);
  }
  if (end < size && ftruncate(fd, size) != 0) return entry_fail(x, errno, NULL);
  start_writeback(x, fd, started, end);
  if (x->tree && hashed >= 0) {
    int64_t len = end > size ? end : size;
    hash_zeros(x, len - hashed);
    remember_digest(x, fd, len);
  }
  return 0;
}

/* Makes room for a new base in pfd: applied, what is there goes (a
   directory only when the entry is not one: then it is kept); otherwise
   only a directory made for a missing parent may be there. Returns 1 when
   a directory is kept, 0 when the name is free, -1 on failure. */
static int make_room(struct extract *x, int pfd, const char *base, int want_dir) {
  struct stat st;
  if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT ? 0 : entry_fail(x, errno, NULL);
  if (want_dir && S_ISDIR(st.st_mode)) return 1;
  if (x->wh != WH_APPLY) return entry_fail(x, EEXIST, "refusing to replace what is there");
  int err = remove_at(pfd, base, x->name);
  return err ? entry_fail(x, err, NULL) : 0;
}

/* An opaque marker in the directory pfd: as overlayfs reads it, the
   directory's xattr; applied, what this archive did not write there goes. */
static int opaque(struct extract *x, int pfd, const char *dir) {
  if (x->wh == WH_OVERLAY) {
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

/* Checks an entry's name, type and the limits; returns its size to write,
   or -1 (failed) or -2 (nothing to write). */
static int64_t check_entry(struct extract *x, struct archive_entry *e) {
  struct job *j = x->j;
  const char *raw = archive_entry_pathname(e);
  if (!raw) raw = archive_entry_pathname_utf8(e);
  if (!raw) return job_fail(j, EINVAL, "%s: an entry has a name that cannot be read", x->src);
  const char *why = clean_name(raw, x->name, sizeof x->name);
  if (why) return job_fail(j, EPERM, "%s: %s: %s", x->src, raw, why);
  /* Every header counts against max_entries, written or not: an archive of
     a million "./" entries costs as much to read as a million files. */
  if (x->max_entries >= 0 && ++x->headers > x->max_entries)
    return job_fail(j, EFBIG, "%s: %s: the archive holds more than max_entries (%jd) entries",
                    x->src, x->name[0] ? x->name : raw, (intmax_t)x->max_entries);
  if (!x->name[0]) return -2; /* "./": dest is the caller's */
  if (seen_before(x->L, x->seen, x->name))
    return entry_fail(x, EPERM, "refusing a second entry of the same name");
  if (!wanted(x)) return -2;
  const char *hard = archive_entry_hardlink(e);
  mode_t type = archive_entry_filetype(e);
  if (!hard && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK) {
    if (type != AE_IFCHR && type != AE_IFBLK && type != AE_IFIFO && type != AE_IFSOCK)
      return entry_fail(x, EPERM, "refusing an entry of unknown type");
    /* device nodes, FIFOs and sockets: refused or skipped (named in the
       result), never made */
    const char *what = type == AE_IFIFO ? "a fifo" : type == AE_IFSOCK ? "a socket" : "a device node";
    if (!x->skip_special)
      return job_fail(j, EPERM, "%s: %s: refusing %s", x->src, x->name, what);
    lua_pushstring(x->L, x->name);
    lua_rawseti(x->L, x->skipped, ++x->nskipped);
    return -2;
  }
  if (hard) {
    why = clean_name(hard, x->link, sizeof x->link);
    if (!why && !x->link[0]) why = "refusing a link to the archive's root";
    if (why) return job_fail(j, EPERM, "%s: %s: hard link to %s: %s", x->src, x->name, hard, why);
  }
  int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
  if (size < 0 || type != AE_IFREG || hard) size = 0;
  if (x->max_bytes >= 0 && size > x->max_bytes - x->bytes)
    return job_fail(j, EFBIG, "%s: %s: the archive holds more than max_bytes (%jd) bytes", x->src,
                    x->name, (intmax_t)x->max_bytes);
  if (x->check_space) {
    int64_t need = (size + x->block - 1) / x->block * x->block;
    if (need > x->space_left)
      return job_fail(j, ENOSPC,
                      "%s: %s: not enough space in %s: need at least %jd bytes more, %jd free",
                      x->src, x->name, x->dest, (intmax_t)need, (intmax_t)x->space_left);
    x->space_left -= need;
  }
  return size;
}

/* A hard link to an entry written before, both beneath dest. */
static int hard_link(struct extract *x, int pfd, const char *base) {
  char tfull[PATH_MAX];
  memcpy(tfull, x->link, strlen(x->link) + 1);
  const char *tdir;
  char *tbase = split_name(tfull, &tdir);
  int tfd = open_dir(x, tdir, 0, "a hard link");
  if (tfd == -2) return entry_fail(x, ENOENT, NULL);
  if (tfd < 0) return -1;
  int r = linkat(tfd, tbase, pfd, base, 0);
  close_keep_errno(tfd);
  if (r == 0 && x->tree) { /* the same inode: its digest by this name too */
    lua_getfield(x->L, x->known, x->link);
    lua_setfield(x->L, x->known, x->name);
  }
  if (r == 0) return 0;
  return job_fail(x->j, errno, "%s: %s: hard link to %s: %s", x->src, x->name, x->link,
                  strerror(errno));
}

static int extract_entry(struct extract *x, struct archive_entry *e) {
  int64_t size = check_entry(x, e);
  if (size < 0) return size == -1 ? -1 : 0;
  uint32_t uid = 0, gid = 0;
  if (x->preserve && (map_id(x, archive_entry_uid(e), &uid) < 0 || map_id(x, archive_entry_gid(e), &gid) < 0))
    return job_fail(x->j, EPERM, "%s: %s: owner %jd:%jd is outside the id mapping", x->src, x->name,
                    (intmax_t)archive_entry_uid(e), (intmax_t)archive_entry_gid(e));
  char full[PATH_MAX];
  memcpy(full, x->name, strlen(x->name) + 1);
  const char *dir;
  char *base = split_name(full, &dir);
  const char *target = NULL;
  enum ct_wh_kind wk = x->wh == WH_PLAIN ? CT_WH_NONE : ct_wh_kind(base, &target);
  if (wk == CT_WH_BAD) return entry_fail(x, EPERM, "refusing a whiteout of no name");
  if (wk == CT_WH_META) return 0;
  /* applied, a whiteout in a directory that is not there hides nothing */
  int pfd = parent_fd(x, dir, !(x->wh == WH_APPLY && wk != CT_WH_NONE));
  if (pfd == -2) return 0;
  if (pfd < 0) return -1;
  if (wk == CT_WH_OPAQUE_DIR) return opaque(x, pfd, dir);
  if (wk == CT_WH_FILE) {
    x->whiteouts++;
    if (x->wh == WH_APPLY) {
      int err = remove_at(pfd, target, x->name);
      return err ? entry_fail(x, err, NULL) : 0;
    }
    if (mknodat(pfd, target, S_IFCHR, makedev(0, 0)) != 0) return entry_fail(x, errno, NULL);
    if (x->preserve && fchownat(pfd, target, uid, gid, AT_SYMLINK_NOFOLLOW) != 0)
      return entry_fail(x, errno, NULL);
    x->entries++;
    return 0;
  }

  const char *hard = archive_entry_hardlink(e);
  mode_t type = archive_entry_filetype(e);
  int kept = make_room(x, pfd, base, !hard && type == AE_IFDIR);
  if (kept < 0) return -1;
  x->entries++;
  x->bytes += size;
  if (hard) return hard_link(x, pfd, base);
  if (type == AE_IFLNK) {
    const char *to = archive_entry_symlink(e);
    if (!to) return entry_fail(x, EINVAL, "a symlink without a target");
    if (symlinkat(to, pfd, base) != 0) return entry_fail(x, errno, NULL);
    if (x->preserve && fchownat(pfd, base, uid, gid, AT_SYMLINK_NOFOLLOW) != 0)
      return entry_fail(x, errno, NULL);
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
    if (r == 0) remember_dir(x, e);
    return r;
  }
  int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return entry_fail(x, errno, NULL);
  int r = write_data(x, fd, size);
  if (!r) r = set_meta(x, fd, e, uid, gid, 0);
  if (close(fd) != 0 && !r) r = entry_fail(x, errno, NULL);
  return r;
}

/* ---- the call ---- */

static int extract_run(struct extract *x) {
  struct job *j = x->j;
  j->root = open(x->dest, DIR_FLAGS);
  if (j->root < 0) return job_fail(j, errno, "%s: %s", x->dest, strerror(errno));
  if (open_reader(j, x->src) < 0) return -1;
  if (x->check_space) {
    struct statvfs vfs;
    if (fstatvfs(j->root, &vfs) != 0) return job_fail(j, errno, "%s: %s", x->dest, strerror(errno));
    x->block = vfs.f_frsize ? (int64_t)vfs.f_frsize : 4096;
    x->space_left = (int64_t)vfs.f_bavail * x->block;
    if ((int64_t)j->st.st_size > x->space_left)
      return job_fail(j, ENOSPC, "%s: not enough space in %s: need at least %jd bytes more, %jd free",
                      x->src, x->dest, (intmax_t)j->st.st_size, (intmax_t)x->space_left);
  }
  for (;;) {
    struct archive_entry *e;
    int r = archive_read_next_header(j->rd, &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) return job_fail_archive(j, j->rd, x->src, NULL);
    if (extract_entry(x, e) < 0) return -1;
  }
  set_dir_times(x);
  job_progress(x->L, j, x->done, (lua_Integer)archive_filter_bytes(j->rd, -1), 1);
  return 0;
}

/* opts.idmap = {outside=, size=}: the ids an image's files are owned by
   inside the container (from 0) and where they are on the host. */
static void read_idmap(lua_State *L, struct extract *x) {
  if (opt_field(L, 3, "idmap") == LUA_TNIL) return;
  luaL_argexpected(L, lua_istable(L, -1), 3, "idmap: {outside=, size=}");
  lua_Integer out = opt_integer(L, -1, "outside", -1, 0), size = opt_integer(L, -1, "size", 0, 1);
  if (out < 0 || size < 1 || size > (lua_Integer)UINT32_MAX + 1 - out)
    luaL_error(L, "bad option 'idmap' (empty or out of range)");
  x->mapped = 1;
  x->map_out = (uint32_t)out;
  x->map_size = size;
}

/* opts.only = {[name] = true} (names as an archive's cleaned: "a/b"), or 0
   when there is none. */
static int read_only(lua_State *L) {
  int ty = opt_field(L, 3, "only");
  if (ty != LUA_TNIL && ty != LUA_TTABLE)
    luaL_error(L, "bad option 'only' (table expected, got %s)", lua_typename(L, ty));
  return ty == LUA_TTABLE ? lua_gettop(L) : 0;
}

/* extract(src, dest [, opts]) -> {entries=, bytes=, whiteouts=, skipped={names}[, tree=]} | nil, msg, errno
   opts.writeback: start each file's writeback as it is written (for a
   caller that syncs the filesystem next). opts.tree_digest: tree =
   ct.fs.tree_digest(dest) once extracted, each file's content hashed as
   it was written instead of read again. */
int ar_extract(lua_State *L) {
  const char *src = luaL_checkstring(L, 1);
  const char *dest = luaL_checkstring(L, 2);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  struct extract *x = lua_newuserdatauv(L, sizeof *x, 0); /* big: off the C stack */
  memset(x, 0, sizeof *x);
  x->L = L;
  x->src = src;
  x->dest = dest;
  x->preserve = opt_bool(L, 3, "preserve");
  x->check_space = opt_bool(L, 3, "check_space");
  x->writeback = opt_bool(L, 3, "writeback");
  x->tree = opt_bool(L, 3, "tree_digest");
  const char *special = opt_string(L, 3, "special", "refuse");
  x->skip_special = strcmp(special, "skip") == 0;
  if (!x->skip_special && strcmp(special, "refuse") != 0)
    luaL_error(L, "bad option 'special' (\"refuse\" or \"skip\" expected)");
  const char *wh = opt_string(L, 3, "whiteouts", NULL);
  x->wh = !wh ? WH_PLAIN : strcmp(wh, "overlay") == 0 ? WH_OVERLAY : strcmp(wh, "apply") == 0 ? WH_APPLY : -1;
  if (x->wh < 0) luaL_error(L, "bad option 'whiteouts' (\"overlay\" or \"apply\" expected)");
  x->max_entries = opt_integer(L, 3, "max_entries", -1, 0);
  x->max_bytes = opt_integer(L, 3, "max_bytes", -1, 0);
  int progress = opt_progress(L, 3);
  read_idmap(L, x);
  x->only = read_only(L);
  lua_newtable(L);
  x->seen = lua_gettop(L);
  lua_newtable(L);
  x->skipped = lua_gettop(L);
  lua_newtable(L);
  x->dirs = lua_gettop(L);
  lua_newtable(L);
  x->known = lua_gettop(L);
  x->j = job_new(L);
  x->j->progress = progress;
  if (extract_run(x) < 0) return job_error(L, x->j);
  job_close(x->j);
  if (x->tree) {
    if (ct_tree_digest_push(L, dest, x->known) != 1) return 3;
  } else {
    lua_pushnil(L);
  }
  int tree = lua_gettop(L);
  lua_createtable(L, 0, 5);
  lua_pushvalue(L, tree);
  lua_setfield(L, -2, "tree");
  lua_pushinteger(L, x->entries);
  lua_setfield(L, -2, "entries");
  lua_pushinteger(L, x->bytes);
  lua_setfield(L, -2, "bytes");
  lua_pushinteger(L, x->whiteouts);
  lua_setfield(L, -2, "whiteouts");
  lua_pushvalue(L, x->skipped);
  lua_setfield(L, -2, "skipped");
  return 1;
}
