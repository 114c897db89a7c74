/* ct.archive: the job of one call, its options and names, and the read-only calls (list, read_entry, detect).

   extract (archive_extract.c) streams an archive into a directory with
   libarchive's secure flags on and its limits (entries, bytes, free space)
   checked before each entry is written; create (archive_create.c) writes a
   pax archive (zstd, gzip or none) through a temp file; list, read_entry
   and detect (here) read without writing.

   The libarchive objects, descriptors and temp file of one call live in a
   "job" userdata marked to-be-closed, so an error raised anywhere (a
   progress callback, out of memory) still frees them. No chdir: every
   entry's name is checked, then prefixed with the destination. */
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
#include <dirent.h>
#include <nettle/sha2.h>
#include <stdarg.h>

#define JOB_MT "ct.archive.job"
#define PROGRESS_EVERY 0.1 /* seconds between two progress calls */
#define MAX_WARNINGS 100
#define MAX_LINK_HOPS 8

/* ---- the job: what one call holds, freed on every path ---- */

void job_close(struct job *j) {
  if (j->rd) archive_read_free(j->rd);
  j->rd = NULL;
  if (j->wr) archive_write_free(j->wr);
  j->wr = NULL;
  if (j->entry) archive_entry_free(j->entry);
  j->entry = NULL;
  if (j->links) archive_entry_linkresolver_free(j->links);
  j->links = NULL;
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
  if (j->root >= 0) close(j->root);
  if (j->pfd >= 0) close(j->pfd);
  j->root = j->pfd = -1;
  free(j->pdir);
  j->pdir = NULL;
  for (size_t i = 0; i < j->ndirs; i++) free(j->dirs[i].rel);
  free(j->dirs);
  j->dirs = NULL;
  j->ndirs = j->capdirs = 0;
}

static int job_gc(lua_State *L) {
  job_close(luaL_checkudata(L, 1, JOB_MT));
  return 0;
}

/* Pushes a new job, marked to-be-closed: it must stay where it is on the
   stack until the function returns. */
struct job *job_new(lua_State *L) {
  struct job *j = lua_newuserdatauv(L, sizeof *j, 0);
  memset(j, 0, sizeof *j);
  j->fd = j->root = j->pfd = -1;
  luaL_setmetatable(L, JOB_MT);
  lua_toclose(L, -1);
  return j;
}

/* Records the failure of the call; returns -1. */
int job_fail(struct job *j, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int job_fail(struct job *j, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(j->msg, sizeof j->msg, fmt, ap);
  va_end(ap);
  j->err = err > 0 ? err : EIO;
  return -1;
}

/* A libarchive failure on `a`: "<who>: [<entry>: ]<libarchive's message>". */
int job_fail_archive(struct job *j, struct archive *a, const char *who, const char *entry) {
  const char *s = archive_error_string(a);
  if (!s) s = "unknown libarchive error";
  if (entry) return job_fail(j, archive_errno(a), "%s: %s: %s", who, entry, s);
  return job_fail(j, archive_errno(a), "%s: %s", who, s);
}

/* Frees the job's resources and returns nil, msg, errno. */
int job_error(lua_State *L, struct job *j) {
  job_close(j);
  return ct_error(L, j->err, "%s", j->msg);
}

void job_warn(lua_State *L, struct job *j, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void job_warn(lua_State *L, struct job *j, const char *fmt, ...) {
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
void job_progress_n(lua_State *L, struct job *j, lua_Integer done, lua_Integer other,
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
void job_progress(lua_State *L, struct job *j, lua_Integer done, struct archive *a,
                         int force) {
  job_progress_n(L, j, done, a ? (lua_Integer)archive_filter_bytes(a, -1) : 0, force);
}

/* ---- options ---- */

int opt_field(lua_State *L, int t, const char *k) {
  if (lua_isnoneornil(L, t)) {
    lua_pushnil(L);
    return LUA_TNIL;
  }
  return lua_getfield(L, t, k);
}

int opt_bool(lua_State *L, int t, const char *k) {
  int ty = opt_field(L, t, k);
  if (ty != LUA_TNIL && ty != LUA_TBOOLEAN)
    luaL_error(L, "bad option '%s' (boolean expected, got %s)", k, lua_typename(L, ty));
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

lua_Integer opt_integer(lua_State *L, int t, const char *k, lua_Integer def,
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

const char *opt_string(lua_State *L, int t, const char *k, const char *def) {
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
int opt_progress(lua_State *L, int t) {
  int ty = opt_field(L, t, "progress");
  if (ty != LUA_TNIL && ty != LUA_TFUNCTION)
    luaL_error(L, "bad option 'progress' (function expected, got %s)", lua_typename(L, ty));
  return ty == LUA_TFUNCTION ? lua_gettop(L) : 0;
}

/* ---- names ---- */

/* Copies an archive member name to out as "a/b/c": without "." components,
   repeated or trailing slashes. Returns NULL, or why the name is refused.
   An empty result is the archive's root. */
const char *clean_name(const char *name, char *out, size_t size) {
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
int seen_before(lua_State *L, int seen, const char *name) {
  int was = lua_getfield(L, seen, name) != LUA_TNIL;
  lua_pop(L, 1);
  if (!was) {
    lua_pushboolean(L, 1);
    lua_setfield(L, seen, name);
  }
  return was;
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
int open_reader(struct job *j, const char *src) {
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
  ct_class(L, JOB_MT, NULL, job_gc, NULL);
  luaL_newlib(L, archive_funcs);
  return 1;
}
