/* ct.fs.File: a regular file opened beneath a Dir (read, write, seek, collapse, copy, zstd). */
#include "int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/falloc.h>

static int file_close(lua_State *L) { return ct_handle_close(L, FILE_MT); }

static int file_fail(lua_State *L, int err) { return ct_fail_at(L, err, ct_handle_path(L, 1), NULL); }

/* File:read(n) -> up to n bytes; "" at EOF */
static int f_read(lua_State *L) {
  struct handle *f = check_file(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0, 2, "negative size");
  int err = push_read(L, f->fd, (size_t)n, 0);
  return err ? file_fail(L, err) : 1;
}

/* File:read_all([max]) -> the rest of the file; more than max is EFBIG */
static int f_read_all(lua_State *L) {
  struct handle *f = check_file(L, 1);
  lua_Integer max = ct_opt_max(L, 2);
  return ct_read_rest(L, f->fd, max, 0, ct_handle_path(L, 1));
}

/* File:write(s) -> true */
static int f_write(lua_State *L) {
  struct handle *f = check_file(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  int err = write_all(f->fd, s, len);
  return err ? file_fail(L, err) : ct_true(L);
}

/* File:seek([whence="cur" [, offset=0]]) -> position */
static int f_seek(lua_State *L) {
  static const char *const names[] = {"set", "cur", "end", NULL};
  static const int modes[] = {SEEK_SET, SEEK_CUR, SEEK_END};
  struct handle *f = check_file(L, 1);
  int op = luaL_checkoption(L, 2, "cur", names);
  lua_Integer off = luaL_optinteger(L, 3, 0);
  off_t pos = lseek(f->fd, (off_t)off, modes[op]);
  if (pos < 0) return file_fail(L, errno);
  lua_pushinteger(L, (lua_Integer)pos);
  return 1;
}

/* File:stat() -> table */
static int f_stat(lua_State *L) {
  struct handle *f = check_file(L, 1);
  struct stat st;
  if (fstat(f->fd, &st) != 0) return file_fail(L, errno);
  push_stat(L, &st);
  return 1;
}

/* File:truncate(n) -> true */
static int f_truncate(lua_State *L) {
  struct handle *f = check_file(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0, 2, "negative size");
  return ftruncate(f->fd, (off_t)n) != 0 ? file_fail(L, errno) : ct_true(L);
}

/* File:fsync() -> true */
static int f_fsync(lua_State *L) {
  struct handle *f = check_file(L, 1);
  return fsync(f->fd) != 0 ? file_fail(L, errno) : ct_true(L);
}

/* Bytes that collapse(length) removes from a file of stat *st: length
   rounded down to the block size, never reaching the end; 0 when none. */
static off_t collapse_len(const struct stat *st, off_t length) {
  off_t blk = st->st_blksize > 0 ? st->st_blksize : 4096;
  off_t n = length;
  if (n > st->st_size) n = st->st_size;
  n -= n % blk;
  /* The collapse may not reach the end of the file. */
  if (n >= st->st_size) n = st->st_size - 1 - (st->st_size - 1) % blk;
  return n > 0 ? n : 0;
}

/* File:collapse(len) -> bytes removed from the start with
   fallocate(FALLOC_FL_COLLAPSE_RANGE): an O_APPEND writer loses nothing;
   EOPNOTSUPP/EINVAL where the filesystem cannot, for the caller to copy */
static int f_collapse(lua_State *L) {
  struct handle *f = check_file(L, 1);
  lua_Integer len = luaL_checkinteger(L, 2);
  luaL_argcheck(L, len >= 0, 2, "negative length");
  struct stat st;
  if (fstat(f->fd, &st) != 0) return file_fail(L, errno);
  off_t n = collapse_len(&st, (off_t)len);
  if (n > 0 && fallocate(f->fd, FALLOC_FL_COLLAPSE_RANGE, 0, n) != 0) return file_fail(L, errno);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* File:copy_to(other [, len]) -> bytes copied from this file's offset */
static int f_copy_to(lua_State *L) {
  struct handle *f = check_file(L, 1);
  struct handle *o = check_file(L, 2);
  uint64_t limit = UINT64_MAX;
  if (!lua_isnoneornil(L, 3)) {
    lua_Integer n = luaL_checkinteger(L, 3);
    luaL_argcheck(L, n >= 0, 3, "negative length");
    limit = (uint64_t)n;
  }
  uint64_t done;
  int wside;
  int err = copy_fds(f->fd, o->fd, limit, &done, &wside);
  if (err) return ct_fail_at(L, err, ct_handle_path(L, wside ? 2 : 1), NULL);
  lua_pushinteger(L, (lua_Integer)done);
  return 1;
}

/* File:zstd_to(other) -> bytes_in, bytes_out; in process (ct.archive.create's
   writer), one zstd frame with a checksum, from this file's offset to its end */
static int f_zstd_to(lua_State *L) {
  struct handle *f = check_file(L, 1);
  struct handle *o = check_file(L, 2);
  char *buf = lua_newuserdatauv(L, COPY_BUFSIZE, 0); /* freed by Lua */
  struct zout z;
  uint64_t bin = 0;
  int rerr = 0, err = zout_open(&z, o->fd, 1, 1);
  while (!err) {
    ssize_t n = read(f->fd, buf, COPY_BUFSIZE);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) rerr = errno;
    if (n <= 0) break;
    bin += (uint64_t)n;
    err = zout_write(&z, buf, (size_t)n);
  }
  if (!err && !rerr) err = zout_finish(&z);
  const char *zerr = z.zerr;
  off_t bout = z.written;
  zout_free(&z);
  if (rerr) return ct_fail_at(L, rerr, ct_handle_path(L, 1), NULL);
  if (zerr) return ct_error(L, EIO, "%s: zstd: %s", ct_handle_path(L, 1), zerr);
  if (err) return ct_fail_at(L, err, ct_handle_path(L, 2), NULL);
  lua_pushinteger(L, (lua_Integer)bin);
  lua_pushinteger(L, (lua_Integer)bout);
  return 2;
}

/* File:path() -> display path */
static int f_path(lua_State *L) {
  luaL_checkudata(L, 1, FILE_MT);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

static int f_tostring(lua_State *L) {
  struct handle *h = luaL_checkudata(L, 1, FILE_MT);
  lua_pushfstring(L, "ct.fs.File (%s%s)", ct_handle_path(L, 1), h->fd < 0 ? ", closed" : "");
  return 1;
}

static const luaL_Reg file_methods[] = {
    {"read", f_read},         {"read_all", f_read_all}, {"write", f_write},
    {"seek", f_seek},         {"stat", f_stat},         {"truncate", f_truncate},
    {"fsync", f_fsync},       {"collapse", f_collapse}, {"copy_to", f_copy_to},
    {"zstd_to", f_zstd_to},   {"path", f_path},         {"close", file_close},
    {NULL, NULL},
};

void ct_file_class(lua_State *L) { ct_class(L, FILE_MT, file_methods, file_close, f_tostring); }
