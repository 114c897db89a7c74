/* ct.archive.extract: a package's tar streamed into a directory, names checked, limits kept. */
#include "int.h"
#include "layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>

/* ---- extract ---- */

/* out = dir "/" name; -1 when it would not fit in size (PATH_MAX keeps
   libarchive from its chdir-based handling of deep paths). */
static int ar_join_path(char *out, size_t size, const char *dir, size_t dirlen, const char *name) {
  size_t n = strlen(name);
  if (dirlen + 1 + n + 1 > size) return -1;
  memcpy(out, dir, dirlen);
  out[dirlen] = '/';
  memcpy(out + dirlen + 1, name, n + 1);
  return 0;
}

struct extract {
  lua_State *L;
  struct job *j;
  const char *src;
  char dest[PATH_MAX]; /* realpath: no symlink for libarchive's checks to trip on */
  size_t destlen;      /* 0 when dest is "/" */
  int preserve, check_space;
  int special;      /* CT_SPECIAL_*: the caller's policy for devices, FIFOs, sockets */
  int wh_overlay;   /* whiteouts = "overlay" */
  lua_Integer max_entries, max_bytes; /* -1: no limit */
  int64_t block, space_left;
  const char **only; /* cleaned names; NULL: everything */
  size_t nonly;
  lua_Integer entries, bytes, done;
  lua_Integer headers; /* entries read, written or not */
  int seen;            /* stack index of the names met so far */
  char name[PATH_MAX]; /* the entry's cleaned name, for messages */
  char path[PATH_MAX]; /* dest/name */
  char link[PATH_MAX]; /* dest/hard link target */
};

static int wanted(const struct extract *x, const char *name) {
  if (!x->only) return 1;
  for (size_t i = 0; i < x->nonly; i++) {
    size_t n = strlen(x->only[i]);
    if (strncmp(name, x->only[i], n) == 0 && (name[n] == '\0' || name[n] == '/')) return 1;
  }
  return 0;
}

static int extract_write_failed(struct extract *x) {
  struct archive *w = x->j->wr;
  if (archive_errno(w) == ENOSPC)
    return job_fail(x->j, ENOSPC, "%s: %s: not enough space in %s (%s)", x->src, x->name, x->dest,
                    strerror(ENOSPC));
  return job_fail_archive(x->j, w, x->src, x->name);
}

/* Refuses a path under dest one of whose directories is a symlink.
   libarchive's SECURE_SYMLINKS checks the same; this one names the
   symlink and says EPERM. */
static int check_parents(struct extract *x, const char *full, const char *what) {
  char buf[PATH_MAX];
  size_t n = strlen(full);
  memcpy(buf, full, n + 1);
  for (size_t i = x->destlen + 1; i < n; i++) {
    if (buf[i] != '/') continue;
    buf[i] = '\0';
    struct stat st;
    if (lstat(buf, &st) != 0 || !(S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode)))
      return 0; /* not there yet (or not a directory: libarchive says so) */
    if (S_ISLNK(st.st_mode))
      return job_fail(x->j, EPERM, "%s: %s: refusing %s through the symlink %s", x->src, x->name,
                      what, buf + x->destlen + 1);
    buf[i] = '/';
  }
  return 0;
}

/* whiteouts = "overlay" (an app's upper restored from a backup): ".wh.<name>"
   becomes the character device 0:0 <name> (e and x->name rewritten),
   ".wh..wh..opq" the opaque xattr of its existing directory. Returns 0 for
   any other entry, 1 for a whiteout, 2 when the entry is done, -1 on failure. */
static int overlay_whiteout(struct extract *x, struct archive_entry *e) {
  char *slash = strrchr(x->name, '/');
  char *base = slash ? slash + 1 : x->name;
  const char *target = NULL;
  switch (ct_wh_kind(base, &target)) {
  case CT_WH_NONE: return 0;
  case CT_WH_META: return 2;
  case CT_WH_BAD: return job_fail(x->j, EPERM, "%s: %s: refusing a whiteout of no name", x->src, x->name);
  case CT_WH_FILE:
    memmove(base, target, strlen(target) + 1);
    archive_entry_set_hardlink(e, NULL);
    archive_entry_set_filetype(e, AE_IFCHR);
    archive_entry_set_rdev(e, 0);
    archive_entry_set_perm(e, 0);
    archive_entry_set_size(e, 0);
    return 1;
  case CT_WH_OPAQUE_DIR: break;
  }
  if (ar_join_path(x->path, sizeof x->path, x->dest, x->destlen, x->name) != 0)
    return job_fail(x->j, ENAMETOOLONG, "%s: %s: path too long under %s", x->src, x->name, x->dest);
  if (check_parents(x, x->path, "an opaque marker") < 0) return -1;
  *strrchr(x->path, '/') = '\0'; /* x->path is now the marker's directory */
  struct stat st;
  if (lstat(x->path, &st) != 0 || !S_ISDIR(st.st_mode))
    return job_fail(x->j, ENOENT, "%s: %s: an opaque marker before its directory", x->src, x->name);
  if (lsetxattr(x->path, CT_OPAQUE_XATTR, "y", 1, 0) != 0)
    return job_fail(x->j, errno, "%s: %s: %s", x->src, x->name, strerror(errno));
  return 2;
}

/* Refuses what a package may never hold, else checks the limits, rewrites
   owners, modes and paths, and streams the entry to disk. */
static int extract_entry(struct extract *x, struct archive_entry *e) {
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
  if (!x->name[0]) return 0; /* "./": dest itself is left as the caller made it */
  if (seen_before(x->L, x->seen, x->name))
    return job_fail(j, EPERM, "%s: %s: refusing a second entry of the same name", x->src, x->name);
  if (!wanted(x, x->name)) return 0;
  int wh = x->wh_overlay ? overlay_whiteout(x, e) : 0;
  if (wh < 0 || wh == 2) return wh < 0 ? -1 : 0;

  const char *hard = archive_entry_hardlink(e);
  switch (archive_entry_filetype(e)) {
  case AE_IFREG:
  case AE_IFDIR:
  case AE_IFLNK: break;
  case AE_IFCHR:
  case AE_IFBLK:
  case AE_IFIFO:
  case AE_IFSOCK: {
    if (wh) break;
    mode_t t = archive_entry_filetype(e);
    const char *what = t == AE_IFIFO ? "a fifo" : t == AE_IFSOCK ? "a socket" : "a device node";
    if (x->special == CT_SPECIAL_REFUSE) return job_fail(j, EPERM, "%s: %s: refusing %s", x->src, x->name, what);
    job_warn(x->L, j, "%s: %s: skipped %s", x->src, x->name, what);
    return 0;
  }
  default:
    if (!hard)
      return job_fail(j, EPERM, "%s: %s: refusing an entry of unknown type", x->src, x->name);
  }
  if (hard) {
    char target[PATH_MAX];
    why = clean_name(hard, target, sizeof target);
    if (!why && !target[0]) why = "refusing a link to the archive's root";
    if (why) return job_fail(j, EPERM, "%s: %s: hard link to %s: %s", x->src, x->name, hard, why);
    if (ar_join_path(x->link, sizeof x->link, x->dest, x->destlen, target) != 0)
      return job_fail(j, ENAMETOOLONG, "%s: %s: hard link target too long", x->src, x->name);
  }
  if (ar_join_path(x->path, sizeof x->path, x->dest, x->destlen, x->name) != 0)
    return job_fail(j, ENAMETOOLONG, "%s: %s: path too long under %s", x->src, x->name, x->dest);
  if (check_parents(x, x->path, "a path") < 0) return -1;
  if (hard && check_parents(x, x->link, "a hard link") < 0) return -1;

  int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
  if (size < 0 || (archive_entry_filetype(e) != AE_IFREG && !hard)) size = 0;
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

  if (!x->preserve) {
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    archive_entry_set_uname(e, NULL);
    archive_entry_set_gname(e, NULL);
    archive_entry_set_perm(e, archive_entry_perm(e) & ~(mode_t)06000);
  }
  archive_entry_set_pathname(e, x->path);
  if (hard) archive_entry_set_hardlink(e, x->link);

  int r = archive_write_header(j->wr, e);
  if (r < ARCHIVE_WARN) return extract_write_failed(x);
  if (r == ARCHIVE_WARN)
    job_warn(x->L, j, "%s: %s: %s", x->src, x->name, archive_error_string(j->wr));
  x->entries++;
  x->bytes += size;
  for (;;) {
    const void *buf;
    size_t len;
    la_int64_t off;
    r = archive_read_data_block(j->rd, &buf, &len, &off);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) return job_fail_archive(j, j->rd, x->src, x->name);
    if (r == ARCHIVE_WARN)
      job_warn(x->L, j, "%s: %s: %s", x->src, x->name, archive_error_string(j->rd));
    /* A failed write(2) (ENOSPC, EIO) comes back as ARCHIVE_WARN. */
    if (archive_write_data_block(j->wr, buf, len, off) < ARCHIVE_OK) return extract_write_failed(x);
    x->done += (lua_Integer)len;
    job_progress(x->L, j, x->done, j->rd, 0);
  }
  r = archive_write_finish_entry(j->wr);
  if (r < ARCHIVE_WARN || (r == ARCHIVE_WARN && archive_errno(j->wr) == ENOSPC))
    return extract_write_failed(x);
  if (r == ARCHIVE_WARN)
    job_warn(x->L, j, "%s: %s: %s", x->src, x->name, archive_error_string(j->wr));
  return 0;
}

static int extract_run(struct extract *x, const char *dest) {
  struct job *j = x->j;
  if (!realpath(dest, x->dest)) return job_fail(j, errno, "%s: %s", dest, strerror(errno));
  struct stat st;
  if (stat(x->dest, &st) != 0) return job_fail(j, errno, "%s: %s", dest, strerror(errno));
  if (!S_ISDIR(st.st_mode)) return job_fail(j, ENOTDIR, "%s: %s", dest, strerror(ENOTDIR));
  x->destlen = strcmp(x->dest, "/") == 0 ? 0 : strlen(x->dest);
  if (open_reader(j, x->src) < 0) return -1;
  if (x->check_space) {
    struct statvfs vfs;
    if (statvfs(x->dest, &vfs) != 0) return job_fail(j, errno, "%s: %s", dest, strerror(errno));
    x->block = vfs.f_frsize ? (int64_t)vfs.f_frsize : 4096;
    x->space_left = (int64_t)vfs.f_bavail * x->block;
    if ((int64_t)j->st.st_size > x->space_left)
      return job_fail(j, ENOSPC,
                      "%s: not enough space in %s: need at least %jd bytes more, %jd free", x->src,
                      x->dest, (intmax_t)j->st.st_size, (intmax_t)x->space_left);
  }
  j->wr = archive_write_disk_new();
  if (!j->wr) return job_fail(j, ENOMEM, "%s: %s", x->src, strerror(ENOMEM));
  /* ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS would refuse the dest prefix
     itself: clean_name refuses absolute names and hard link targets. */
  int flags = ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
              ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM;
  if (x->preserve) flags |= ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_XATTR;
  archive_write_disk_set_options(j->wr, flags);
  /* No name lookups: with preserve, owners stay the archive's numeric ids. */
  archive_write_disk_set_skip_file(j->wr, j->st.st_dev, j->st.st_ino);

  for (;;) {
    struct archive_entry *e;
    int r = archive_read_next_header(j->rd, &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) return job_fail_archive(j, j->rd, x->src, NULL);
    if (r == ARCHIVE_WARN) job_warn(x->L, j, "%s: %s", x->src, archive_error_string(j->rd));
    if (extract_entry(x, e) < 0) return -1;
  }
  /* Directory modes and times are set here, after their contents. */
  if (archive_write_close(j->wr) < ARCHIVE_WARN) return job_fail_archive(j, j->wr, x->src, NULL);
  job_progress(x->L, j, x->done, j->rd, 1);
  return 0;
}

/* Pushes opts.only as our own copy (cleaned names, kept alive by a table)
   and an array of pointers to them; or one nil when there is none. */
static void read_only(lua_State *L, struct extract *x) {
  int ty = opt_field(L, 3, "only");
  if (ty == LUA_TNIL) return;
  if (ty != LUA_TTABLE)
    luaL_error(L, "bad option 'only' (table expected, got %s)", lua_typename(L, ty));
  int given = lua_gettop(L);
  size_t n = (size_t)lua_rawlen(L, given);
  lua_createtable(L, (int)n, 0);
  x->only = lua_newuserdatauv(L, (n ? n : 1) * sizeof *x->only, 0);
  x->nonly = n;
  for (size_t i = 1; i <= n; i++) {
    char clean[PATH_MAX];
    if (lua_rawgeti(L, given, (lua_Integer)i) != LUA_TSTRING)
      luaL_error(L, "bad option 'only' (item %d is not a string)", (int)i);
    if (clean_name(lua_tostring(L, -1), clean, sizeof clean) || !clean[0])
      luaL_error(L, "bad option 'only' (item %d is not a relative name)", (int)i);
    x->only[i - 1] = lua_pushstring(L, clean);
    lua_rawseti(L, given + 1, (lua_Integer)i);
    lua_pop(L, 1);
  }
  lua_remove(L, given);
}

/* extract(src, dest [, opts]) -> {entries=, bytes=[, warnings=]} | nil, msg, errno */
int ar_extract(lua_State *L) {
  const char *src = luaL_checkstring(L, 1);
  const char *dest = luaL_checkstring(L, 2);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  struct extract *x = lua_newuserdatauv(L, sizeof *x, 0); /* big: off the C stack */
  memset(x, 0, sizeof *x);
  x->L = L;
  x->src = src;
  x->preserve = opt_bool(L, 3, "preserve");
  x->check_space = opt_bool(L, 3, "check_space");
  x->special = lua_istable(L, 3) ? ct_opt_special(L, 3) : CT_SPECIAL_REFUSE;
  const char *wh = opt_string(L, 3, "whiteouts", NULL);
  if (wh && strcmp(wh, "overlay") != 0) luaL_error(L, "bad option 'whiteouts' (\"overlay\" expected)");
  x->wh_overlay = wh != NULL;
  x->max_entries = opt_integer(L, 3, "max_entries", -1, 0);
  x->max_bytes = opt_integer(L, 3, "max_bytes", -1, 0);
  int progress = opt_progress(L, 3);
  read_only(L, x);
  lua_newtable(L);
  int warnings = lua_gettop(L);
  lua_newtable(L);
  x->seen = lua_gettop(L);
  x->j = job_new(L);
  x->j->progress = progress;
  x->j->warnings = warnings;
  if (extract_run(x, dest) < 0) return job_error(L, x->j);
  job_close(x->j);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, x->entries);
  lua_setfield(L, -2, "entries");
  lua_pushinteger(L, x->bytes);
  lua_setfield(L, -2, "bytes");
  if (x->j->nwarnings) {
    lua_pushvalue(L, warnings);
    lua_setfield(L, -2, "warnings");
  }
  return 1;
}

