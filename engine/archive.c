/* ct.archive: tar archives through libarchive.

   extract streams an archive into a directory with libarchive's secure
   flags on and its limits (entries, bytes, free space) checked before each
   entry is written; create writes a pax archive (zstd, gzip or none)
   through a temp file; list, read_entry and detect read without writing.

   The libarchive objects, descriptors and temp file of one call live in a
   "job" userdata marked to-be-closed, so an error raised anywhere (a
   progress callback, out of memory) still frees them. No chdir: every
   entry's name is checked, then prefixed with the destination. */
#include "int.h"
#include "layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <nettle/sha2.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <zstd.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define JOB_MT "ct.archive.job"
#define BLOCK_SIZE 65536
#define PROGRESS_EVERY 0.1 /* seconds between two progress calls */
#define MAX_WARNINGS 100
#define MAX_LINK_HOPS 8

/* ---- the job: what one call holds, freed on every path ---- */

struct job {
  struct archive *rd;                       /* an archive being read */
  struct archive *wr;                       /* the disk, or an archive being written */
  struct archive_entry *entry;              /* create: the entry being built */
  struct archive_entry_linkresolver *links; /* create: hard link detection */
  DIR *dir;                                 /* create: a directory being listed */
  int fd;                                   /* the archive file */
  char *tmp;                                /* create: temp file, removed unless renamed */
  char *buf;                                /* create: copy buffer */
  ZSTD_CCtx *zc;                            /* create: zstd, driven by our writer */
  unsigned char *out;                       /* create: what goes to fd next */
  size_t outlen;
  off_t written, flushed;                   /* bytes written to fd; handed to writeback */
  struct stat st;                           /* the archive file's stat (reading) */
  /* Stack indices (0: none) of the progress callback and the warnings table. */
  int progress, warnings;
  double last_progress;
  lua_Integer nwarnings;
  int err;                      /* the failure: errno ... */
  char msg[2 * PATH_MAX + 256]; /* ... and message */
};

static void job_close(struct job *j) {
  if (j->rd) archive_read_free(j->rd);
  j->rd = NULL;
  if (j->wr) archive_write_free(j->wr);
  j->wr = NULL;
  if (j->entry) archive_entry_free(j->entry);
  j->entry = NULL;
  if (j->links) archive_entry_linkresolver_free(j->links);
  j->links = NULL;
  if (j->dir) closedir(j->dir);
  j->dir = NULL;
  if (j->fd >= 0) close(j->fd);
  j->fd = -1;
  if (j->tmp) {
    unlink(j->tmp);
    free(j->tmp);
  }
  j->tmp = NULL;
  free(j->buf);
  j->buf = NULL;
  ZSTD_freeCCtx(j->zc); /* joins its workers */
  j->zc = NULL;
  free(j->out);
  j->out = NULL;
}

static int job_gc(lua_State *L) {
  job_close(luaL_checkudata(L, 1, JOB_MT));
  return 0;
}

/* Pushes a new job, marked to-be-closed: it must stay where it is on the
   stack until the function returns. */
static struct job *job_new(lua_State *L) {
  struct job *j = lua_newuserdatauv(L, sizeof *j, 0);
  memset(j, 0, sizeof *j);
  j->fd = -1;
  luaL_setmetatable(L, JOB_MT);
  lua_toclose(L, -1);
  return j;
}

/* Records the failure of the call; returns -1. */
static int job_fail(struct job *j, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int job_fail(struct job *j, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(j->msg, sizeof j->msg, fmt, ap);
  va_end(ap);
  j->err = err > 0 ? err : EIO;
  return -1;
}

/* A libarchive failure on `a`: "<who>: [<entry>: ]<libarchive's message>". */
static int job_fail_archive(struct job *j, struct archive *a, const char *who, const char *entry) {
  const char *s = archive_error_string(a);
  if (!s) s = "unknown libarchive error";
  if (entry) return job_fail(j, archive_errno(a), "%s: %s: %s", who, entry, s);
  return job_fail(j, archive_errno(a), "%s: %s", who, s);
}

/* Frees the job's resources and returns nil, msg, errno. */
static int job_error(lua_State *L, struct job *j) {
  job_close(j);
  return ct_error(L, j->err, "%s", j->msg);
}

static void job_warn(lua_State *L, struct job *j, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void job_warn(lua_State *L, struct job *j, const char *fmt, ...) {
  if (!j->warnings || j->nwarnings >= MAX_WARNINGS) return;
  char line[PATH_MAX + 256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  lua_pushstring(L, line);
  lua_rawseti(L, j->warnings, ++j->nwarnings);
}

/* Calls progress(done, other) at most every PROGRESS_EVERY seconds (always
   when forced). Its errors propagate (the job is closed on the way out). */
static void job_progress_n(lua_State *L, struct job *j, lua_Integer done, lua_Integer other,
                           int force) {
  if (!j->progress) return;
  double now = ct_mono();
  if (!force && now - j->last_progress < PROGRESS_EVERY) return;
  j->last_progress = now;
  lua_pushvalue(L, j->progress);
  lua_pushinteger(L, done);
  lua_pushinteger(L, other);
  lua_call(L, 2, 0);
}

/* The same with the bytes through `a`'s outer end (read or written). */
static void job_progress(lua_State *L, struct job *j, lua_Integer done, struct archive *a,
                         int force) {
  job_progress_n(L, j, done, a ? (lua_Integer)archive_filter_bytes(a, -1) : 0, force);
}

/* ---- options ---- */

static int opt_field(lua_State *L, int t, const char *k) {
  if (lua_isnoneornil(L, t)) {
    lua_pushnil(L);
    return LUA_TNIL;
  }
  return lua_getfield(L, t, k);
}

static int opt_bool(lua_State *L, int t, const char *k) {
  int ty = opt_field(L, t, k);
  if (ty != LUA_TNIL && ty != LUA_TBOOLEAN)
    luaL_error(L, "bad option '%s' (boolean expected, got %s)", k, lua_typename(L, ty));
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static lua_Integer opt_integer(lua_State *L, int t, const char *k, lua_Integer def,
                               lua_Integer min) {
  int ty = opt_field(L, t, k);
  if (ty == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  int ok = 0;
  lua_Integer v = ty == LUA_TNUMBER ? lua_tointegerx(L, -1, &ok) : 0;
  if (!ok || v < min)
    luaL_error(L, "bad option '%s' (an integer >= %I expected)", k, (LUA_INTEGER)min);
  lua_pop(L, 1);
  return v;
}

static const char *opt_string(lua_State *L, int t, const char *k, const char *def) {
  int ty = opt_field(L, t, k);
  if (ty == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  if (ty != LUA_TSTRING)
    luaL_error(L, "bad option '%s' (string expected, got %s)", k, lua_typename(L, ty));
  const char *s = lua_tostring(L, -1);
  lua_pop(L, 1); /* still referenced by the options table */
  return s;
}

/* Pushes opts.progress (a function or nil); returns its index, or 0. */
static int opt_progress(lua_State *L, int t) {
  int ty = opt_field(L, t, "progress");
  if (ty != LUA_TNIL && ty != LUA_TFUNCTION)
    luaL_error(L, "bad option 'progress' (function expected, got %s)", lua_typename(L, ty));
  return ty == LUA_TFUNCTION ? lua_gettop(L) : 0;
}

/* ---- names ---- */

/* Copies an archive member name to out as "a/b/c": without "." components,
   repeated or trailing slashes. Returns NULL, or why the name is refused.
   An empty result is the archive's root. */
static const char *clean_name(const char *name, char *out, size_t size) {
  if (name[0] == '/') return "refusing an absolute path";
  size_t n = 0;
  const char *p = name;
  while (*p) {
    while (*p == '/') p++;
    if (!*p) break;
    const char *s = p;
    while (*p && *p != '/') p++;
    size_t len = (size_t)(p - s);
    if (len == 1 && s[0] == '.') continue;
    if (len == 2 && s[0] == '.' && s[1] == '.') return "refusing a path with '..'";
    if (n + len + 2 > size) return "refusing a path that is too long";
    if (n) out[n++] = '/';
    memcpy(out + n, s, len);
    n += len;
  }
  out[n] = '\0';
  return NULL;
}

/* Whether `name` (cleaned) was met before in this archive, remembering it
   in the table at stack index `seen`. Two entries of one name would let a
   reader that stops at the first (read_entry: the manifest it verifies) and
   one that keeps the last (extract: what is installed) see different files. */
static int seen_before(lua_State *L, int seen, const char *name) {
  int was = lua_getfield(L, seen, name) != LUA_TNIL;
  lua_pop(L, 1);
  if (!was) {
    lua_pushboolean(L, 1);
    lua_setfield(L, seen, name);
  }
  return was;
}

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

/* ---- detection and opening ---- */

static const char *sniff(const unsigned char *b, size_t n) {
  static const unsigned char gz[] = {0x1f, 0x8b}, zst[] = {0x28, 0xb5, 0x2f, 0xfd},
                             xz[] = {0xfd, '7', 'z', 'X', 'Z', 0x00};
  if (n >= sizeof gz && memcmp(b, gz, sizeof gz) == 0) return "gzip";
  if (n >= sizeof zst && memcmp(b, zst, sizeof zst) == 0) return "zstd";
  if (n >= sizeof xz && memcmp(b, xz, sizeof xz) == 0) return "xz";
  if (n >= 4 && memcmp(b, "BZh", 3) == 0 && b[3] >= '1' && b[3] <= '9') return "bzip2";
  if (n >= 262 && memcmp(b + 257, "ustar", 5) == 0) return "tar";
  return "unknown";
}

/* The magic of the file open at fd (read from offset 0); -1 on a read error. */
static int sniff_fd(int fd, const char **kind) {
  unsigned char b[512];
  size_t n = 0;
  while (n < sizeof b) {
    ssize_t r = pread(fd, b + n, sizeof b - n, (off_t)n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    n += (size_t)r;
  }
  *kind = sniff(b, n);
  return 0;
}

/* Opens src (again, from its start, when the job already has it) for
   reading with magic-based detection of gzip, zstd, xz and bzip2. */
static int open_reader(struct job *j, const char *src) {
  if (j->fd < 0) {
    j->fd = open(src, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (j->fd < 0) return job_fail(j, errno, "%s: %s", src, strerror(errno));
    if (fstat(j->fd, &j->st) != 0) return job_fail(j, errno, "%s: %s", src, strerror(errno));
    if (S_ISDIR(j->st.st_mode)) return job_fail(j, EISDIR, "%s: %s", src, strerror(EISDIR));
  } else if (lseek(j->fd, 0, SEEK_SET) < 0) {
    return job_fail(j, errno, "%s: %s", src, strerror(errno));
  }
  if (j->rd) archive_read_free(j->rd);
  j->rd = archive_read_new();
  if (!j->rd) return job_fail(j, ENOMEM, "%s: %s", src, strerror(ENOMEM));
  /* Not _all: some filters run an external program on a crafted input. */
  archive_read_support_filter_gzip(j->rd);
  archive_read_support_filter_zstd(j->rd);
  archive_read_support_filter_xz(j->rd);
  archive_read_support_filter_bzip2(j->rd);
  archive_read_support_format_tar(j->rd); /* ustar, pax, gnutar */
  if (archive_read_open_fd(j->rd, j->fd, BLOCK_SIZE) == ARCHIVE_OK) return 0;
  if (archive_errno(j->rd) != EILSEQ) /* libarchive's "file format" errno */
    return job_fail_archive(j, j->rd, src, NULL);
  const char *kind = "unknown";
  if (sniff_fd(j->fd, &kind) == 0 && strcmp(kind, "unknown") != 0 && strcmp(kind, "tar") != 0)
    return job_fail(j, EINVAL, "%s: %s data that is not a tar archive (or is cut short)", src,
                    kind);
  return job_fail(j, EINVAL, "%s: not a tar archive (gzip, zstd, xz, bzip2 or plain)", src);
}

/* ---- extract ---- */

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
static int ar_extract(lua_State *L) {
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

/* ---- create ---- */

struct create {
  lua_State *L;
  struct job *j;
  const char *dest;
  int owner0, xattrs, has_mtime;
  lua_Integer mtime;
  lua_Integer entries, bytes;
  dev_t tmp_dev;
  ino_t tmp_ino;
  int have_uid, have_gid;
  uid_t uid;
  gid_t gid;
  char uname[256], gname[256];
  char host[PATH_MAX]; /* the file being added */
  size_t hostlen;
  char name[PATH_MAX]; /* its name in the archive */
  size_t namelen;
  int depth; /* 0: an entry the caller named; deeper: found in a directory */
  int oci;   /* this entry's whiteouts = "oci" */
  int whtab; /* stack index: entry index -> whiteouts = "oci" */
  int sums;  /* stack index of the sha256 table (0: not asked) */
  struct sha256_ctx md;
};

static void set_names(struct create *c, struct archive_entry *e, const struct stat *st) {
  char buf[4096];
  if (!c->have_uid || c->uid != st->st_uid) {
    struct passwd pw, *res = NULL;
    c->uname[0] = '\0';
    if (getpwuid_r(st->st_uid, &pw, buf, sizeof buf, &res) == 0 && res)
      snprintf(c->uname, sizeof c->uname, "%s", pw.pw_name);
    c->uid = st->st_uid;
    c->have_uid = 1;
  }
  if (!c->have_gid || c->gid != st->st_gid) {
    struct group gr, *res = NULL;
    c->gname[0] = '\0';
    if (getgrgid_r(st->st_gid, &gr, buf, sizeof buf, &res) == 0 && res)
      snprintf(c->gname, sizeof c->gname, "%s", gr.gr_name);
    c->gid = st->st_gid;
    c->have_gid = 1;
  }
  if (c->uname[0]) archive_entry_set_uname(e, c->uname);
  if (c->gname[0]) archive_entry_set_gname(e, c->gname);
}

/* Adds the extended attributes of the file open at fd to e; unreadable
   ones are left out. */
static void add_xattrs(int fd, struct archive_entry *e) {
  ssize_t n = flistxattr(fd, NULL, 0);
  if (n <= 0) return;
  char *list = malloc((size_t)n);
  if (!list) return;
  n = flistxattr(fd, list, (size_t)n);
  for (ssize_t i = 0; n > 0 && i < n; i += (ssize_t)strlen(list + i) + 1) {
    ssize_t vn = fgetxattr(fd, list + i, NULL, 0);
    if (vn < 0) continue;
    void *v = malloc(vn ? (size_t)vn : 1);
    if (!v) continue;
    vn = fgetxattr(fd, list + i, v, (size_t)vn);
    if (vn >= 0) archive_entry_xattr_add_entry(e, list + i, v, (size_t)vn);
    free(v);
  }
  free(list);
}

static int create_write_failed(struct create *c) {
  struct archive *w = c->j->wr;
  const char *s = archive_error_string(w);
  if (archive_errno(w) == ENOSPC)
    return job_fail(c->j, ENOSPC, "%s: not enough space: %s", c->dest, s ? s : strerror(ENOSPC));
  return job_fail(c->j, archive_errno(w), "%s: %s: %s", c->dest, c->host, s ? s : "write error");
}

/* Streams size bytes of the regular file open at fd (checked by the
   caller: the file that was stat'ed, never a path looked up again). */
static int copy_file(struct create *c, int fd, int64_t size) {
  struct job *j = c->j;
  while (size > 0) {
    ssize_t n = read(fd, j->buf, size < BLOCK_SIZE ? (size_t)size : BLOCK_SIZE);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return job_fail(j, errno, "%s: %s", c->host, strerror(errno));
    if (n == 0) {
      /* libarchive pads the entry with zeros to the size in its header. */
      job_warn(c->L, j, "%s: file shrank while being archived", c->host);
      break;
    }
    if (archive_write_data(j->wr, j->buf, (size_t)n) < 0) return create_write_failed(c);
    if (c->sums) sha256_update(&c->md, (size_t)n, (const uint8_t *)j->buf);
    size -= n;
    c->bytes += n;
    job_progress_n(c->L, j, c->bytes, (lua_Integer)j->written, 0);
  }
  return 0;
}

/* Adds one entry: st is the file's, base its name in the directory open at
   pfd, fd the file itself when it is a regular file or a directory. */
static int add_entry(struct create *c, const struct stat *st, int pfd, const char *base, int fd) {
  struct job *j = c->j;
  struct archive_entry *e = j->entry = archive_entry_new();
  if (!e) return job_fail(j, ENOMEM, "%s: %s", c->host, strerror(ENOMEM));
  archive_entry_copy_stat(e, st);
  archive_entry_set_pathname(e, c->name);
  /* Only mtime is kept: atime/ctime would make equal trees differ. */
  archive_entry_unset_atime(e);
  archive_entry_unset_ctime(e);
  archive_entry_unset_birthtime(e);
  if (c->has_mtime) archive_entry_set_mtime(e, (time_t)c->mtime, 0);
  if (c->owner0) {
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
  } else {
    set_names(c, e, st);
  }
  if (S_ISLNK(st->st_mode)) {
    char target[PATH_MAX];
    ssize_t n = readlinkat(pfd, base, target, sizeof target - 1);
    if (n < 0) return job_fail(j, errno, "%s: %s", c->host, strerror(errno));
    target[n] = '\0';
    archive_entry_set_symlink(e, target);
  }
  if (!S_ISREG(st->st_mode)) archive_entry_set_size(e, 0);
  if (c->xattrs && fd >= 0) add_xattrs(fd, e);
  struct archive_entry *spare = NULL;
  archive_entry_linkify(j->links, &j->entry, &spare); /* the tar strategy keeps j->entry */
  if (spare) archive_entry_free(spare);
  e = j->entry;
  int r = archive_write_header(j->wr, e);
  if (r < ARCHIVE_WARN) return create_write_failed(c);
  if (r == ARCHIVE_WARN) job_warn(c->L, j, "%s: %s", c->host, archive_error_string(j->wr));
  int data = S_ISREG(st->st_mode) && !archive_entry_hardlink(e);
  if (data && c->sums) sha256_init(&c->md);
  if (data && st->st_size > 0 && copy_file(c, fd, (int64_t)st->st_size) < 0) return -1;
  if (data && c->sums) { /* the bytes archived, read once */
    uint8_t d[SHA256_DIGEST_SIZE];
    char hex[2 * SHA256_DIGEST_SIZE + 1];
    sha256_digest(&c->md, sizeof d, d);
    for (unsigned int i = 0; i < sizeof d; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    lua_pushstring(c->L, hex);
    lua_setfield(c->L, c->sums, c->name);
  }
  r = archive_write_finish_entry(j->wr);
  if (r < ARCHIVE_WARN) return create_write_failed(c);
  archive_entry_free(j->entry);
  j->entry = NULL;
  c->entries++;
  job_progress_n(c->L, j, c->bytes, (lua_Integer)j->written, 0);
  return 0;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* whiteouts = "oci": the empty regular entry that stands for an overlay
   whiteout (".wh.<name>" beside it) or an opaque directory (opaque: its
   ".wh..wh..opq"), with the node's owner and time. */
static int add_oci_marker(struct create *c, const struct stat *st, int opaque) {
  struct job *j = c->j;
  char name[PATH_MAX];
  const char *slash = strrchr(c->name, '/');
  size_t dl = slash ? (size_t)(slash - c->name) + 1 : 0;
  int n = opaque ? snprintf(name, sizeof name, "%s%s%s", c->name, c->namelen ? "/" : "", CT_WH_OPAQUE)
                 : snprintf(name, sizeof name, "%.*s%s%s", (int)dl, c->name, CT_WH_PREFIX, c->name + dl);
  if (n < 0 || (size_t)n >= sizeof name)
    return job_fail(j, ENAMETOOLONG, "%s: %s", c->host, strerror(ENAMETOOLONG));
  struct archive_entry *e = j->entry = archive_entry_new();
  if (!e) return job_fail(j, ENOMEM, "%s: %s", c->host, strerror(ENOMEM));
  archive_entry_set_pathname(e, name);
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0644);
  archive_entry_set_size(e, 0);
  archive_entry_set_mtime(e, c->has_mtime ? (time_t)c->mtime : st->st_mtime, 0);
  archive_entry_set_uid(e, c->owner0 ? 0 : st->st_uid);
  archive_entry_set_gid(e, c->owner0 ? 0 : st->st_gid);
  if (archive_write_header(j->wr, e) < ARCHIVE_WARN || archive_write_finish_entry(j->wr) < ARCHIVE_WARN)
    return create_write_failed(c);
  archive_entry_free(j->entry);
  j->entry = NULL;
  c->entries++;
  return 0;
}

static int add_tree(struct create *c, int pfd, const char *base);

/* Adds the children of the directory open at dfd in byte order of their
   names, each looked up beneath dfd: a tree an app writes can swap a
   directory for a symlink at any moment, and nothing is ever resolved
   through one. */
static int add_children(struct create *c, int dfd) {
  lua_State *L = c->L;
  struct job *j = c->j;
  luaL_checkstack(L, 4, "directory tree too deep");
  int lfd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
  if (lfd < 0) return job_fail(j, errno, "%s: %s", c->host, strerror(errno));
  j->dir = fdopendir(lfd);
  if (!j->dir) {
    int e = errno;
    close(lfd);
    return job_fail(j, e, "%s: %s", c->host, strerror(e));
  }
  lua_newtable(L); /* the names, kept alive while the pointers below are used */
  int names = lua_gettop(L);
  lua_Integer n = 0;
  struct dirent *d;
  errno = 0;
  while ((d = readdir(j->dir)) != NULL) {
    if (strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0) {
      lua_pushstring(L, d->d_name);
      lua_rawseti(L, names, ++n);
    }
    errno = 0;
  }
  int err = errno;
  closedir(j->dir);
  j->dir = NULL;
  if (err) return job_fail(j, err, "%s: %s", c->host, strerror(err));
  const char **v = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *v, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, names, i);
    v[i - 1] = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  if (n > 1) qsort(v, (size_t)n, sizeof *v, cmp_names);
  size_t hostlen = c->hostlen, namelen = c->namelen;
  for (lua_Integer i = 0; i < n; i++) {
    size_t len = strlen(v[i]);
    if (hostlen + 1 + len + 1 > sizeof c->host || namelen + 1 + len + 1 > sizeof c->name)
      return job_fail(j, ENAMETOOLONG, "%s/%s: %s", c->host, v[i], strerror(ENAMETOOLONG));
    c->host[hostlen] = '/';
    memcpy(c->host + hostlen + 1, v[i], len + 1);
    c->hostlen = hostlen + 1 + len;
    if (namelen) {
      c->name[namelen] = '/';
      memcpy(c->name + namelen + 1, v[i], len + 1);
      c->namelen = namelen + 1 + len;
    } else {
      memcpy(c->name, v[i], len + 1);
      c->namelen = len;
    }
    c->depth++;
    int r = add_tree(c, dfd, v[i]);
    c->depth--;
    if (r < 0) return -1;
    c->host[hostlen] = '\0';
    c->hostlen = hostlen;
    c->name[namelen] = '\0';
    c->namelen = namelen;
  }
  lua_pop(L, 2);
  return 0;
}

/* Adds base, in the directory open at pfd (AT_FDCWD and c->host for an
   entry the caller named), as c->name (nothing for an empty name: a
   directory's contents go to the archive's top), then a directory's
   contents. A regular file or directory is opened without following a
   symlink and must be the one lstat saw; one that an app swapped meanwhile
   is left out with a warning (it cannot make ctcli read through a link,
   block on a FIFO, or fail the backup). */
static int add_tree(struct create *c, int pfd, const char *base) {
  struct job *j = c->j;
  struct stat st;
  if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (c->depth && errno == ENOENT) {
      job_warn(c->L, j, "%s: removed while being archived, left out", c->host);
      return 0;
    }
    return job_fail(j, errno, "%s: %s", c->host, strerror(errno));
  }
  if (st.st_dev == c->tmp_dev && st.st_ino == c->tmp_ino) return 0; /* our own output */
  if (S_ISSOCK(st.st_mode)) {
    job_warn(c->L, j, "%s: a socket, left out", c->host);
    return 0;
  }
  if (c->oci && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode))) {
    if (c->namelen && ct_is_overlay_whiteout(&st)) return add_oci_marker(c, &st, 0);
    job_warn(c->L, j, "%s: a device node or fifo, left out", c->host);
    return 0;
  }
  if (!c->namelen && !S_ISDIR(st.st_mode))
    return job_fail(j, EINVAL, "%s: only a directory can be added with an empty name", c->host);
  int fd = -1;
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
    int flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0);
    fd = openat(pfd, base, flags);
    struct stat fst;
    if (fd < 0 || fstat(fd, &fst) != 0 || fst.st_dev != st.st_dev || fst.st_ino != st.st_ino ||
        (fst.st_mode & S_IFMT) != (st.st_mode & S_IFMT)) {
      int e = fd < 0 ? errno : EAGAIN;
      if (fd >= 0) close(fd);
      if (!c->depth) return job_fail(j, e, "%s: %s", c->host, strerror(e));
      job_warn(c->L, j, "%s: changed while being archived, left out", c->host);
      return 0;
    }
    if (S_ISREG(fst.st_mode)) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    st = fst;
  }
  int r = 0;
  if (c->namelen) r = add_entry(c, &st, pfd, base, fd);
  if (!r && c->oci && S_ISDIR(st.st_mode) && ct_fd_opaque(fd)) r = add_oci_marker(c, &st, 1);
  if (!r && S_ISDIR(st.st_mode)) r = add_children(c, fd);
  if (fd >= 0) close(fd);
  return r;
}

/* ---- the writer: what libarchive writes goes through here to the file ----

   zstd is driven here, not through libarchive's filter: libarchive 3.6
   sets zstd's workers but not their job size, and at level 3 zstd's
   default job (8 MiB) made two workers buffer 50-80 MB. With the smallest
   job zstd takes (512 KiB) two workers compress while this thread reads
   in about 7 MB (4 MB more per further worker, so at most two unless
   asked), for about 1% more output on compressible trees. The frame is
   the one zstd always writes (level 3 unless asked, no checksum, as
   libarchive's); with any number of workers >= 1 the bytes are the same.
   Writeback is started every few MiB, so the final fsync waits for the
   last few MiB only, not for the whole archive. */
#define OUT_SIZE (256 << 10)
#define ZSTD_JOB_SIZE (512 << 10)
#define ZSTD_WORKERS_MAX 2 /* the default's cap */
#define WRITEBACK_EVERY (8 << 20)

static int out_flush(struct archive *a, struct job *j) {
  int err = write_all(j->fd, j->out, j->outlen);
  if (err) {
    archive_set_error(a, err, "%s", strerror(err));
    return -1;
  }
  j->written += (off_t)j->outlen;
  j->outlen = 0;
  if (j->written - j->flushed >= WRITEBACK_EVERY) {
    /* a hint: a failure here shows at the fsync */
    sync_file_range(j->fd, j->flushed, j->written - j->flushed, SYNC_FILE_RANGE_WRITE);
    j->flushed = j->written;
  }
  return 0;
}

/* zstd's step: ZSTD_e_continue while writing, ZSTD_e_end to finish. */
static int out_zstd(struct archive *a, struct job *j, const void *p, size_t len, ZSTD_EndDirective how) {
  ZSTD_inBuffer in = {p, len, 0};
  for (;;) {
    ZSTD_outBuffer o = {j->out, OUT_SIZE, j->outlen};
    size_t left = ZSTD_compressStream2(j->zc, &o, &in, how);
    if (ZSTD_isError(left)) {
      archive_set_error(a, EIO, "zstd: %s", ZSTD_getErrorName(left));
      return -1;
    }
    j->outlen = o.pos;
    if (j->outlen == OUT_SIZE && out_flush(a, j) < 0) return -1;
    if (how == ZSTD_e_end ? left == 0 : in.pos == in.size) return 0;
  }
}

static la_ssize_t out_write(struct archive *a, void *data, const void *p, size_t len) {
  struct job *j = data;
  if (j->zc) return out_zstd(a, j, p, len, ZSTD_e_continue) < 0 ? -1 : (la_ssize_t)len;
  for (size_t done = 0; done < len;) {
    size_t n = len - done < OUT_SIZE - j->outlen ? len - done : OUT_SIZE - j->outlen;
    memcpy(j->out + j->outlen, (const char *)p + done, n);
    j->outlen += n;
    done += n;
    if (j->outlen == OUT_SIZE && out_flush(a, j) < 0) return -1;
  }
  return (la_ssize_t)len;
}

/* After archive_write_close: the end of the zstd frame and what is left. */
static int out_finish(struct create *c) {
  struct job *j = c->j;
  return (j->zc && out_zstd(j->wr, j, NULL, 0, ZSTD_e_end) < 0) || out_flush(j->wr, j) < 0 ? -1 : 0;
}

static int set_filter(struct create *c, const char *format, lua_Integer threads, lua_Integer level,
                      int has_level) {
  struct job *j = c->j;
  struct archive *a = j->wr;
  char value[32];
  if (!(j->out = malloc(OUT_SIZE))) return job_fail(j, ENOMEM, "%s: %s", c->dest, strerror(ENOMEM));
  if (strcmp(format, "zstd") == 0) {
    if (has_level && (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()))
      return job_fail(j, EINVAL, "%s: compression level %jd is out of range for zstd", c->dest,
                      (intmax_t)level);
    if (threads < 0) {
      long n = sysconf(_SC_NPROCESSORS_ONLN);
      threads = n < 1 ? 1 : n > ZSTD_WORKERS_MAX ? ZSTD_WORKERS_MAX : n;
    }
    if (!(j->zc = ZSTD_createCCtx())) return job_fail(j, ENOMEM, "%s: %s", c->dest, strerror(ENOMEM));
    size_t r = ZSTD_CCtx_setParameter(j->zc, ZSTD_c_compressionLevel, has_level ? (int)level : 3);
    if (!ZSTD_isError(r) && threads > 0) {
      r = ZSTD_CCtx_setParameter(j->zc, ZSTD_c_nbWorkers, (int)threads);
      if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(j->zc, ZSTD_c_jobSize, ZSTD_JOB_SIZE);
    }
    if (ZSTD_isError(r)) return job_fail(j, EINVAL, "%s: zstd: %s", c->dest, ZSTD_getErrorName(r));
    return archive_write_add_filter_none(a) == ARCHIVE_OK ? 0 : create_write_failed(c);
  }
  if (strcmp(format, "gzip") == 0) {
    if (archive_write_add_filter_gzip(a) != ARCHIVE_OK) return create_write_failed(c);
    /* no time in the gzip header: equal trees give equal files */
    if (archive_write_set_filter_option(a, "gzip", "timestamp", NULL) != ARCHIVE_OK)
      return create_write_failed(c);
  } else {
    if (has_level) return job_fail(c->j, EINVAL, "%s: 'level' needs format zstd or gzip", c->dest);
    return archive_write_add_filter_none(a) == ARCHIVE_OK ? 0 : create_write_failed(c);
  }
  if (has_level) {
    snprintf(value, sizeof value, "%jd", (intmax_t)level);
    if (archive_write_set_filter_option(a, format, "compression-level", value) != ARCHIVE_OK)
      return job_fail(c->j, EINVAL, "%s: compression level %s is out of range for %s", c->dest,
                      value, format);
  }
  return 0;
}

/* Calls an entry's `before` or `after` function (at list[k]), when it has
   one: it returns true to go on, or nil, msg to fail the call with msg.
   Its errors propagate (the job is closed on the way out). */
static int entry_hook(struct create *c, int list, lua_Integer k, const char *which,
                      const char *name) {
  lua_State *L = c->L;
  if (lua_rawgeti(L, list, k) == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  lua_call(L, 0, 2);
  if (lua_toboolean(L, -2)) {
    lua_pop(L, 2);
    return 0;
  }
  const char *msg = lua_tostring(L, -1);
  job_fail(c->j, ECANCELED, "%s: %s: %s", c->dest, name, msg ? msg : which);
  lua_pop(L, 2);
  return -1;
}

/* The entries to add: a table at `list`, {name1, path1, before1, after1, ...}. */
static int create_run(struct create *c, int list, lua_Integer n, const char *format,
                      lua_Integer threads, lua_Integer level, int has_level) {
  struct job *j = c->j;
  size_t dl = strlen(c->dest);
  j->tmp = malloc(dl + sizeof ".tmp-XXXXXX");
  j->buf = malloc(BLOCK_SIZE);
  if (!j->tmp || !j->buf) return job_fail(j, ENOMEM, "%s: %s", c->dest, strerror(ENOMEM));
  memcpy(j->tmp, c->dest, dl);
  memcpy(j->tmp + dl, ".tmp-XXXXXX", sizeof ".tmp-XXXXXX");
  j->fd = mkostemp(j->tmp, O_CLOEXEC);
  if (j->fd < 0) {
    int err = errno;
    free(j->tmp);
    j->tmp = NULL;
    return job_fail(j, err, "%s: %s", c->dest, strerror(err));
  }
  mode_t um = umask(0); /* the file gets the mode open(2) would give it */
  umask(um);
  struct stat st;
  if (fchmod(j->fd, 0666 & ~um) != 0 || fstat(j->fd, &st) != 0)
    return job_fail(j, errno, "%s: %s", j->tmp, strerror(errno));
  c->tmp_dev = st.st_dev;
  c->tmp_ino = st.st_ino;

  j->wr = archive_write_new();
  j->links = archive_entry_linkresolver_new();
  if (!j->wr || !j->links) return job_fail(j, ENOMEM, "%s: %s", c->dest, strerror(ENOMEM));
  if (archive_write_set_format_pax_restricted(j->wr) != ARCHIVE_OK) return create_write_failed(c);
  archive_entry_linkresolver_set_strategy(j->links, ARCHIVE_FORMAT_TAR_PAX_RESTRICTED);
  if (set_filter(c, format, threads, level, has_level) < 0) return -1;
  /* no blocks, no padding after the compressed data: out_write buffers */
  archive_write_set_bytes_per_block(j->wr, 0);
  archive_write_set_bytes_in_last_block(j->wr, 1);
  if (archive_write_open(j->wr, j, NULL, out_write, NULL) != ARCHIVE_OK) return create_write_failed(c);

  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(c->L, list, 4 * i - 3);
    lua_rawgeti(c->L, list, 4 * i - 2);
    const char *name = lua_tostring(c->L, -2), *path = lua_tostring(c->L, -1);
    const char *why = clean_name(name, c->name, sizeof c->name);
    if (why) return job_fail(j, EINVAL, "%s: %s: %s", c->dest, name, why);
    size_t pl = strlen(path);
    if (pl + 1 > sizeof c->host)
      return job_fail(j, ENAMETOOLONG, "%s: %s", path, strerror(ENAMETOOLONG));
    if (entry_hook(c, list, 4 * i - 1, "refused by its 'before' function", name) < 0) return -1;
    memcpy(c->host, path, pl + 1);
    c->hostlen = pl;
    c->namelen = strlen(c->name);
    c->depth = 0;
    lua_rawgeti(c->L, c->whtab, i);
    c->oci = lua_toboolean(c->L, -1);
    lua_pop(c->L, 1);
    if (add_tree(c, AT_FDCWD, c->host) < 0) return -1;
    if (entry_hook(c, list, 4 * i, "refused by its 'after' function", name) < 0) return -1;
    lua_pop(c->L, 2);
  }

  if (archive_write_close(j->wr) != ARCHIVE_OK || out_finish(c) < 0) return create_write_failed(c);
  lua_Integer written = (lua_Integer)j->written;
  archive_write_free(j->wr);
  j->wr = NULL;
  if (fsync(j->fd) != 0) return job_fail(j, errno, "%s: %s", j->tmp, strerror(errno));
  int fd = j->fd;
  j->fd = -1;
  if (close(fd) != 0) return job_fail(j, errno, "%s: %s", j->tmp, strerror(errno));
  if (rename(j->tmp, c->dest) != 0) return job_fail(j, errno, "%s: %s", c->dest, strerror(errno));
  free(j->tmp);
  j->tmp = NULL;
  /* The rename is durable once the directory is synced. */
  char *slash = strrchr(c->dest, '/');
  char dir[PATH_MAX];
  if (!slash)
    snprintf(dir, sizeof dir, ".");
  else if (slash == c->dest)
    snprintf(dir, sizeof dir, "/");
  else
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - c->dest), c->dest);
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  job_progress_n(c->L, j, c->bytes, written, 1);
  return 0;
}

/* create(dest, {{name=, path=[, before=, after=]}, ...} [, opts])
     -> {entries=, bytes=, size=[, sha256=][, warnings=]}
   Entries are written in the order given. With opts.sha256, sha256 maps
   the name of every regular file whose data was written (not a hard link
   to one before it) to the hex sha256 of those bytes, hashed as read. An entry's `before` runs just
   before its first file is read and its `after` just after its last one
   (so a caller can hold a tree still only while it is read); either fails
   the call by returning nil, msg. A failed call does not run the `after`
   of the entry it failed in: the caller undoes what its `before` did. */
static int ar_create(lua_State *L) {
  lua_settop(L, 3);
  struct create *c = lua_newuserdatauv(L, sizeof *c, 0); /* 4 */
  memset(c, 0, sizeof *c);
  c->L = L;
  c->dest = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!lua_isnil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  const char *format = opt_string(L, 3, "format", "zstd");
  if (strcmp(format, "zstd") != 0 && strcmp(format, "gzip") != 0 && strcmp(format, "none") != 0)
    luaL_error(L, "bad option 'format' (zstd, gzip or none expected, got '%s')", format);
  /* zstd's workers; -1 (default): one per online CPU, at most two; 0:
     none, zstd compresses in the calling thread (other bytes, the same
     content) */
  lua_Integer threads = opt_integer(L, 3, "threads", -1, -1);
  int has_level = opt_field(L, 3, "level") != LUA_TNIL;
  lua_pop(L, 1);
  lua_Integer level = opt_integer(L, 3, "level", 0, LUA_MININTEGER);
  c->has_mtime = opt_field(L, 3, "mtime") != LUA_TNIL;
  lua_pop(L, 1);
  c->mtime = opt_integer(L, 3, "mtime", 0, 0);
  c->owner0 = opt_bool(L, 3, "owner0");
  c->xattrs = opt_bool(L, 3, "xattrs");
  int sums = opt_bool(L, 3, "sha256");
  int progress = opt_progress(L, 3); /* 5 */

  /* 6: the entries, copied so a callback changing them changes nothing */
  lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
  lua_createtable(L, (int)(4 * n), 0);
  int list = lua_gettop(L);
  lua_newtable(L);
  c->whtab = lua_gettop(L);
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_rawgeti(L, 2, i) != LUA_TTABLE || lua_getfield(L, -1, "name") != LUA_TSTRING ||
        lua_getfield(L, -2, "path") != LUA_TSTRING)
      luaL_error(L, "bad argument #2 to 'create' (entry %I is not {name=string, path=string})",
                 (LUA_INTEGER)i);
    lua_rawseti(L, list, 4 * i - 2);
    lua_rawseti(L, list, 4 * i - 3);
    static const char *const hooks[] = {"before", "after"};
    for (int h = 0; h < 2; h++) {
      int ty = lua_getfield(L, -1, hooks[h]);
      if (ty != LUA_TNIL && ty != LUA_TFUNCTION)
        luaL_error(L, "bad argument #2 to 'create' (entry %I: '%s' is not a function)",
                   (LUA_INTEGER)i, hooks[h]);
      lua_rawseti(L, list, 4 * i - 1 + h);
    }
    const char *wh = lua_getfield(L, -1, "whiteouts") == LUA_TNIL ? NULL : lua_tostring(L, -1);
    if (!lua_isnil(L, -1) && (!wh || strcmp(wh, "oci") != 0))
      luaL_error(L, "bad argument #2 to 'create' (entry %I: 'whiteouts' must be \"oci\")", (LUA_INTEGER)i);
    lua_pushboolean(L, wh != NULL);
    lua_rawseti(L, c->whtab, i);
    lua_pop(L, 1);
    lua_pop(L, 1);
  }
  lua_newtable(L); /* 8: warnings */
  int warnings = lua_gettop(L);
  lua_newtable(L); /* 9: the sha256 of each regular file by name */
  if (sums) c->sums = lua_gettop(L);
  c->j = job_new(L); /* 10 */
  c->j->progress = progress;
  c->j->warnings = warnings;
  struct stat st;
  if (create_run(c, list, n, format, threads, level, has_level) < 0) return job_error(L, c->j);
  job_close(c->j);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, c->entries);
  lua_setfield(L, -2, "entries");
  lua_pushinteger(L, c->bytes);
  lua_setfield(L, -2, "bytes");
  if (stat(c->dest, &st) == 0) {
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_setfield(L, -2, "size");
  }
  if (c->sums) {
    lua_pushvalue(L, c->sums);
    lua_setfield(L, -2, "sha256");
  }
  if (c->j->nwarnings) {
    lua_pushvalue(L, warnings);
    lua_setfield(L, -2, "warnings");
  }
  return 1;
}

/* ---- list, read_entry, detect ---- */

static const char *entry_type_name(struct archive_entry *e) {
  if (archive_entry_hardlink(e)) return "hardlink";
  switch (archive_entry_filetype(e)) {
  case AE_IFREG: return "file";
  case AE_IFDIR: return "dir";
  case AE_IFLNK: return "link";
  case AE_IFCHR: return "char";
  case AE_IFBLK: return "block";
  case AE_IFIFO: return "fifo";
  case AE_IFSOCK: return "socket";
  default: return "unknown";
  }
}

/* Streams the current entry's data through sha256; pushes the hex digest.
   Returns 0 or -1 (the job holds the failure). */
static int push_digest(lua_State *L, struct job *j, const char *src, const char *name) {
  struct sha256_ctx md;
  sha256_init(&md);
  for (;;) {
    const void *block;
    size_t len;
    la_int64_t off;
    int r = archive_read_data_block(j->rd, &block, &len, &off);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) return job_fail_archive(j, j->rd, src, name);
    /* Sparse entries: the holes read as zeros, as extract writes them. */
    sha256_update(&md, len, block);
  }
  unsigned char d[SHA256_DIGEST_SIZE];
  sha256_digest(&md, sizeof d, d);
  char hex[2 * SHA256_DIGEST_SIZE + 1];
  for (unsigned int i = 0; i < sizeof d; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
  lua_pushstring(L, hex);
  return 0;
}

/* list(src [, opts]) -> {{name=, type=, size=, mode=[, link=][, sha256=]}, ...}
   | nil, msg, errno. opts.digests: the sha256 of every regular file's data,
   read as one stream (memory flat in the archive's size; nothing extracted).
   Two entries of the same name ("./a" and "a" are one name) are refused,
   as extract refuses them. */
static int ar_list(lua_State *L) {
  const char *src = luaL_checkstring(L, 1);
  int digests = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    digests = opt_bool(L, 2, "digests");
    /* stop(entry) -> true ends the listing there (a caller that needs only
       the first entries of a large archive does not read the rest). */
    lua_getfield(L, 2, "stop");
    lua_replace(L, 2);
  }
  lua_settop(L, 2);
  lua_newtable(L);
  int seen = lua_gettop(L);
  struct job *j = job_new(L);
  lua_newtable(L);
  if (open_reader(j, src) < 0) return job_error(L, j);
  lua_Integer n = 0;
  char clean[PATH_MAX];
  for (;;) {
    struct archive_entry *e;
    int r = archive_read_next_header(j->rd, &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      job_fail_archive(j, j->rd, src, NULL);
      return job_error(L, j);
    }
    const char *name = archive_entry_pathname(e);
    if (!name) name = archive_entry_pathname_utf8(e);
    /* A name extract would refuse otherwise is kept as it is for the check. */
    const char *key = name ? name : "";
    if (name && !clean_name(name, clean, sizeof clean)) key = clean;
    if (key[0] && seen_before(L, seen, key)) {
      job_fail(j, EPERM, "%s: %s: refusing a second entry of the same name", src, key);
      return job_error(L, j);
    }
    lua_createtable(L, 0, 5);
    lua_pushstring(L, name ? name : "");
    lua_setfield(L, -2, "name");
    lua_pushstring(L, entry_type_name(e));
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, archive_entry_size_is_set(e) ? (lua_Integer)archive_entry_size(e) : 0);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)(archive_entry_mode(e) & 07777));
    lua_setfield(L, -2, "mode");
    const char *link = archive_entry_hardlink(e);
    if (!link) link = archive_entry_symlink(e);
    if (link) {
      lua_pushstring(L, link);
      lua_setfield(L, -2, "link");
    }
    if (digests && !archive_entry_hardlink(e) && archive_entry_filetype(e) == AE_IFREG) {
      if (push_digest(L, j, src, name ? name : "") < 0) return job_error(L, j);
      lua_setfield(L, -2, "sha256");
    }
    lua_rawseti(L, -2, ++n);
    if (lua_isfunction(L, 2)) {
      lua_pushvalue(L, 2);
      lua_rawgeti(L, -2, n);
      lua_call(L, 1, 1);
      int done = lua_toboolean(L, -1);
      lua_pop(L, 1);
      if (done) break;
    }
  }
  job_close(j);
  return 1;
}

/* Finds `want` (a cleaned name) from the start of src; 1 found, 0 not, -1 error. */
static int find_entry(struct job *j, const char *src, const char *want, struct archive_entry **e) {
  char cur[PATH_MAX];
  if (open_reader(j, src) < 0) return -1;
  for (;;) {
    int r = archive_read_next_header(j->rd, e);
    if (r == ARCHIVE_EOF) return 0;
    if (r < ARCHIVE_WARN) return job_fail_archive(j, j->rd, src, NULL);
    const char *raw = archive_entry_pathname(*e);
    if (raw && !clean_name(raw, cur, sizeof cur) && strcmp(cur, want) == 0) return 1;
  }
}

/* Reads the current entry's data into a string pushed on the stack. */
static int read_data(lua_State *L, struct job *j, const char *src, const char *name, int64_t size) {
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, (size_t)size);
  size_t got = 0;
  while (got < (size_t)size) {
    la_ssize_t n = archive_read_data(j->rd, p + got, (size_t)size - got);
    if (n < 0) return job_fail_archive(j, j->rd, src, name);
    if (n == 0) return job_fail(j, EIO, "%s: %s: the entry is cut short", src, name);
    got += (size_t)n;
  }
  luaL_pushresultsize(&b, got);
  return 0;
}

/* read_entry(src, name [, max]) -> the entry's bytes | nil, msg, errno.
   Reads the archive only up to the entry (for a hard link, up to its target). */
static int ar_read_entry(lua_State *L) {
  const char *src = luaL_checkstring(L, 1);
  const char *name = luaL_checkstring(L, 2);
  lua_Integer max = -1;
  if (!lua_isnoneornil(L, 3)) {
    max = luaL_checkinteger(L, 3);
    luaL_argcheck(L, max >= 0, 3, "expected a non-negative size");
  }
  lua_settop(L, 3);
  struct job *j = job_new(L);
  char want[PATH_MAX];
  if (clean_name(name, want, sizeof want) || !want[0])
    return ct_error(L, ENOENT, "%s: %s: no such entry", src, name);
  struct archive_entry *e = NULL;
  for (int hops = 0;; hops++) {
    int r = find_entry(j, src, want, &e);
    if (r < 0) return job_error(L, j);
    if (r == 0) {
      job_fail(j, ENOENT, "%s: %s: no such entry", src, name);
      return job_error(L, j);
    }
    const char *hard = archive_entry_hardlink(e);
    if (!hard || archive_entry_size(e) > 0) break; /* pax may give a hard link its data */
    if (hops >= MAX_LINK_HOPS || clean_name(hard, want, sizeof want) || !want[0]) {
      job_fail(j, ELOOP, "%s: %s: a hard link that leads nowhere", src, name);
      return job_error(L, j);
    }
  }
  int64_t size = archive_entry_size(e);
  if (archive_entry_filetype(e) == AE_IFDIR)
    job_fail(j, EISDIR, "%s: %s: a directory", src, name);
  else if (archive_entry_filetype(e) != AE_IFREG && !archive_entry_hardlink(e))
    job_fail(j, EINVAL, "%s: %s: not a regular file (%s)", src, name, entry_type_name(e));
  else if (max >= 0 && size > max)
    job_fail(j, EFBIG, "%s: %s: %jd bytes, more than the limit of %jd", src, name, (intmax_t)size,
             (intmax_t)max);
  else if (read_data(L, j, src, name, size) == 0) {
    job_close(j);
    return 1;
  }
  return job_error(L, j);
}

/* detect(src) -> "gzip" | "zstd" | "xz" | "bzip2" | "tar" | "unknown" | nil, msg, errno */
static int ar_detect(lua_State *L) {
  const char *src = luaL_checkstring(L, 1);
  int fd = open(src, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return ct_oserror(L, errno, src);
  const char *kind = "unknown";
  int r = sniff_fd(fd, &kind);
  int err = errno;
  close(fd);
  if (r < 0) return ct_oserror(L, err, src);
  lua_pushstring(L, kind);
  return 1;
}

static const luaL_Reg archive_funcs[] = {
    {"extract", ar_extract},       {"create", ar_create}, {"list", ar_list},
    {"read_entry", ar_read_entry}, {"detect", ar_detect}, {NULL, NULL},
};

int luaopen_ct_archive(lua_State *L) {
  if (luaL_newmetatable(L, JOB_MT)) {
    lua_pushcfunction(L, job_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, job_gc);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  luaL_newlib(L, archive_funcs);
  return 1;
}
