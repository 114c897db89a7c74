/* ct.archive: the job of one call, its options and names, and list (the archive read without writing).

   extract (archive_extract.c) writes an archive beneath a directory
   through descriptors, its names and limits checked; create (archive_create.c) writes a
   pax archive (zstd, gzip or none) through a temp file; list (here) reads
   without writing.

   The libarchive objects, descriptors and temp file of one call live in a
   "job" userdata marked to-be-closed, so an error raised anywhere (a
   progress callback, out of memory) still frees them. */
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
#include <nettle/base16.h>
#include <nettle/sha2.h>
#include <stdarg.h>

#define JOB_MT "ct.archive.job"
#define PROGRESS_EVERY 0.1 /* seconds between two progress calls */

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
  zout_free(&j->z);
  if (j->root >= 0) close(j->root);
  if (j->pfd >= 0) close(j->pfd);
  j->root = j->pfd = -1;
  free(j->pdir);
  j->pdir = NULL;
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

/* Calls progress(done, other) at most every PROGRESS_EVERY seconds (always
   when forced). Its errors propagate (the job is closed on the way out). */
void job_progress(lua_State *L, struct job *j, lua_Integer done, lua_Integer other, int force) {
  if (!j->progress) return;
  double now = ct_mono();
  if (!force && now - j->last_progress < PROGRESS_EVERY) return;
  j->last_progress = now;
  lua_pushvalue(L, j->progress);
  lua_pushinteger(L, done);
  lua_pushinteger(L, other);
  lua_call(L, 2, 0);
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

/* Opens src (again, from its start, when the job already has it) for
   reading with magic-based detection of gzip, zstd, xz and bzip2. */
int open_reader(struct job *j, const char *src) {
  j->fd = open(src, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (j->fd < 0 || fstat(j->fd, &j->st) != 0) return job_fail(j, errno, "%s: %s", src, strerror(errno));
  if (S_ISDIR(j->st.st_mode)) return job_fail(j, EISDIR, "%s: %s", src, strerror(EISDIR));
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
  return job_fail(j, EINVAL, "%s: not a tar archive (gzip, zstd, xz, bzip2 or plain) or one cut short",
                  src);
}

/* ---- list ---- */

/* An entry's type is named by type_name (ct.fs.stat's names). */
_Static_assert(AE_IFREG == S_IFREG && AE_IFDIR == S_IFDIR && AE_IFLNK == S_IFLNK && AE_IFCHR == S_IFCHR &&
                   AE_IFBLK == S_IFBLK && AE_IFIFO == S_IFIFO && AE_IFSOCK == S_IFSOCK,
               "libarchive's file types are not the S_IF* values");

void push_sha256_hex(lua_State *L, struct sha256_ctx *md) {
  unsigned char d[SHA256_DIGEST_SIZE];
  sha256_digest(md, sizeof d, d);
  char hex[2 * SHA256_DIGEST_SIZE];
  base16_encode_update(hex, sizeof d, d);
  lua_pushlstring(L, hex, sizeof hex);
}

/* Feeds n bytes to the digest and/or the buffer. */
static void feed(struct sha256_ctx *md, luaL_Buffer *b, const void *p, size_t n) {
  if (md) sha256_update(md, n, p);
  if (b) luaL_addlstring(b, p, n);
}

/* Streams the current entry's data (holes as zeros, as extract writes
   them) through sha256 when md, into a string when b; pushes the string,
   then the hex digest. Returns 0 or -1 (the job holds the failure). */
static int push_data(lua_State *L, struct job *j, const char *src, const char *name,
                     struct sha256_ctx *md, luaL_Buffer *b, int64_t size) {
  static const char zeros[4096];
  int64_t pos = 0;
  for (;;) {
    const void *block;
    size_t len;
    la_int64_t off;
    int r = archive_read_data_block(j->rd, &block, &len, &off);
    if (r < ARCHIVE_WARN) return job_fail_archive(j, j->rd, src, name);
    if (r == ARCHIVE_EOF) off = size > pos ? size : pos;
    for (size_t n; pos < off; pos += (int64_t)n) {
      n = off - pos < (int64_t)sizeof zeros ? (size_t)(off - pos) : sizeof zeros;
      feed(md, b, zeros, n);
    }
    if (r == ARCHIVE_EOF) break;
    feed(md, b, block, len);
    pos += (int64_t)len;
  }
  if (b) luaL_pushresult(b);
  if (md) push_sha256_hex(L, md);
  return 0;
}

/* list(src [, opts]) -> {{name=, type=[, link=][, sha256=][, data=]}, ...}
   | nil, msg, errno, read as one stream (memory flat in the archive's
   size; nothing extracted). opts.digests: the sha256 of every regular
   file's data; opts.read = {[name] = max}: those regular files' bytes (one
   larger than max is EFBIG); opts.stop(entry) returning true ends the
   listing after that entry. Two entries of the same name ("./a" and "a"
   are one name) are refused, as extract refuses them: a reader that stops
   at the first and one that keeps the last would see different files. */
static int ar_list(lua_State *L) {
  const char *src = luaL_checkstring(L, 1);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  int digests = opt_bool(L, 2, "digests");
  int ty = opt_field(L, 2, "read"); /* 3 */
  luaL_argexpected(L, ty == LUA_TNIL || ty == LUA_TTABLE, 2, "read: a table of names to sizes");
  opt_field(L, 2, "stop"); /* 4 */
  lua_newtable(L);           /* 5: the names met */
  struct job *j = job_new(L); /* 6 */
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
    if (!name) name = "";
    /* A name extract would refuse otherwise is kept as it is for the check. */
    const char *key = clean_name(name, clean, sizeof clean) ? name : clean;
    if (key[0] && seen_before(L, 5, key)) {
      job_fail(j, EPERM, "%s: %s: refusing a second entry of the same name", src, key);
      return job_error(L, j);
    }
    int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
    lua_createtable(L, 0, 5);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, archive_entry_hardlink(e) ? "hardlink" : type_name(archive_entry_filetype(e)));
    lua_setfield(L, -2, "type");
    const char *link = archive_entry_hardlink(e);
    if (!link) link = archive_entry_symlink(e);
    if (link) {
      lua_pushstring(L, link);
      lua_setfield(L, -2, "link");
    }
    int regular = !archive_entry_hardlink(e) && archive_entry_filetype(e) == AE_IFREG;
    lua_Integer max = -1;
    if (regular && lua_istable(L, 3)) {
      if (lua_getfield(L, 3, key) != LUA_TNIL) max = luaL_checkinteger(L, -1);
      lua_pop(L, 1);
    }
    if (max >= 0 && size > max) {
      job_fail(j, EFBIG, "%s: %s: %jd bytes, more than the limit of %jd", src, key, (intmax_t)size,
               (intmax_t)max);
      return job_error(L, j);
    }
    if (regular && (digests || max >= 0)) {
      struct sha256_ctx md;
      luaL_Buffer b;
      if (digests) sha256_init(&md);
      if (max >= 0) luaL_buffinit(L, &b);
      if (push_data(L, j, src, key, digests ? &md : NULL, max >= 0 ? &b : NULL, size) < 0)
        return job_error(L, j);
      if (digests) lua_setfield(L, -2 - (max >= 0), "sha256");
      if (max >= 0) lua_setfield(L, -2, "data");
    }
    lua_rawseti(L, -2, ++n);
    if (lua_isfunction(L, 4)) {
      lua_pushvalue(L, 4);
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

static const luaL_Reg archive_funcs[] = {
    {"extract", ar_extract},
    {"create", ar_create},
    {"list", ar_list},
    {NULL, NULL},
};

int luaopen_ct_archive(lua_State *L) {
  ct_class(L, JOB_MT, NULL, job_gc, NULL);
  luaL_newlib(L, archive_funcs);
  return 1;
}
