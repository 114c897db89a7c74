/* ct.archive.create: a pax archive (zstd, gzip or none) of host trees, written through a temp file. */
#include "int.h"
#include "layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <nettle/sha2.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

/* ---- create ---- */

struct create {
  lua_State *L;
  struct job *j;
  const char *dest;
  int owner0;
  lua_Integer mtime; /* -1: each file's own */
  lua_Integer entries, bytes;
  dev_t tmp_dev;
  ino_t tmp_ino;
  char host[PATH_MAX]; /* the file being added */
  size_t hostlen;
  char name[PATH_MAX]; /* its name in the archive */
  size_t namelen;
  int depth; /* 0: an entry the caller named; deeper: found in a directory */
  int oci;   /* this entry's whiteouts = "oci" */
  int stored; /* this entry's stored = true: its files' data in raw zstd blocks */
  int sums;  /* stack index of the sha256 table (0: not asked) */
  struct sha256_ctx md;
  int links; /* stack index of opts.links, or 0 */
};

static int create_write_failed(struct create *c) {
  struct archive *w = c->j->wr;
  const char *s = archive_error_string(w);
  if (archive_errno(w) == ENOSPC)
    return job_fail(c->j, ENOSPC, "%s: not enough space: %s", c->dest, s ? s : strerror(ENOSPC));
  return job_fail(c->j, archive_errno(w), "%s: %s: %s", c->dest, c->host, s ? s : "write error");
}

static int out_raw_end(struct zout *z);
static int out_failed(struct archive *a, struct zout *z, int err);

/* Streams size bytes of the regular file open at fd (checked by the
   caller: the file that was stat'ed, never a path looked up again). */
static int copy_file(struct create *c, int fd, int64_t size) {
  struct job *j = c->j;
  while (size > 0) {
    ssize_t n = read(fd, j->buf, size < BLOCK_SIZE ? (size_t)size : BLOCK_SIZE);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return job_fail(j, errno, "%s: %s", c->host, strerror(errno));
    if (n == 0) break; /* it shrank: libarchive pads with zeros to the size in its header */
    if (archive_write_data(j->wr, j->buf, (size_t)n) < 0) return create_write_failed(c);
    if (c->sums) sha256_update(&c->md, (size_t)n, (const uint8_t *)j->buf);
    size -= n;
    c->bytes += n;
    job_progress(c->L, j, c->bytes, (lua_Integer)j->z.written, 0);
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
  if (c->mtime >= 0) archive_entry_set_mtime(e, (time_t)c->mtime, 0);
  if (c->owner0) {
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
  } else { /* names looked up once per id (libarchive's cache) */
    archive_entry_copy_uname(e, archive_read_disk_uname(j->rd, st->st_uid));
    archive_entry_copy_gname(e, archive_read_disk_gname(j->rd, st->st_gid));
  }
  if (S_ISLNK(st->st_mode)) {
    char *target = readlink_alloc(pfd, base);
    if (!target) return job_fail(j, errno, "%s: %s", c->host, strerror(errno));
    archive_entry_set_symlink(e, target);
    free(target);
  }
  if (!S_ISREG(st->st_mode)) archive_entry_set_size(e, 0);
  /* opts.links[name] = the name of an entry written before: this file goes
     in as a hard link to it, no data (pack: a blob equal to one already in). */
  char to[PATH_MAX];
  to[0] = '\0';
  if (c->links && S_ISREG(st->st_mode)) {
    const char *why = lua_getfield(c->L, c->links, c->name) == LUA_TSTRING
                          ? clean_name(lua_tostring(c->L, -1), to, sizeof to)
                          : NULL;
    lua_pop(c->L, 1);
    if (why) return job_fail(j, EINVAL, "%s: links[%s]: %s", c->dest, c->name, why);
  }
  if (to[0]) {
    archive_entry_set_hardlink(e, to);
    archive_entry_set_size(e, 0);
  } else {
    struct archive_entry *spare = NULL;
    archive_entry_linkify(j->links, &j->entry, &spare); /* the tar strategy keeps j->entry */
    if (spare) archive_entry_free(spare);
  }
  e = j->entry;
  int r = archive_write_header(j->wr, e);
  if (r < ARCHIVE_WARN) return create_write_failed(c);
  int data = S_ISREG(st->st_mode) && !archive_entry_hardlink(e);
  if (data && c->sums) sha256_init(&c->md);
  j->raw = data && c->stored && j->z.zc;
  if (data && st->st_size > 0 && copy_file(c, fd, (int64_t)st->st_size) < 0) return -1;
  int err = j->raw ? out_raw_end(&j->z) : 0;
  if (err) {
    out_failed(j->wr, &j->z, err);
    return create_write_failed(c);
  }
  j->raw = 0;
  if (data && c->sums) { /* the bytes archived, read once */
    push_sha256_hex(c->L, &c->md);
    lua_setfield(c->L, c->sums, c->name);
  }
  r = archive_write_finish_entry(j->wr);
  if (r < ARCHIVE_WARN) return create_write_failed(c);
  archive_entry_free(j->entry);
  j->entry = NULL;
  c->entries++;
  job_progress(c->L, j, c->bytes, (lua_Integer)j->z.written, 0);
  return 0;
}

/* whiteouts = "oci": the empty regular entry that stands for an overlay
   whiteout (".wh.<name>" beside it) or an opaque directory (opaque: its
   ".wh..wh..opq"), with the node's owner and time. */
static int add_oci_marker(struct create *c, const struct stat *st, int opaque) {
  char name[PATH_MAX], was[PATH_MAX];
  const char *slash = strrchr(c->name, '/');
  size_t dl = slash ? (size_t)(slash - c->name) + 1 : 0;
  int n = opaque ? snprintf(name, sizeof name, "%s%s%s", c->name, c->namelen ? "/" : "", CT_WH_OPAQUE)
                 : snprintf(name, sizeof name, "%.*s%s%s", (int)dl, c->name, CT_WH_PREFIX, c->name + dl);
  if (n < 0 || (size_t)n >= sizeof name)
    return job_fail(c->j, ENAMETOOLONG, "%s: %s", c->host, strerror(ENAMETOOLONG));
  struct stat m = *st;
  m.st_mode = S_IFREG | 0644;
  m.st_size = 0;
  m.st_nlink = 1;
  memcpy(was, c->name, c->namelen + 1);
  memcpy(c->name, name, (size_t)n + 1);
  int r = add_entry(c, &m, -1, NULL, -1);
  memcpy(c->name, was, c->namelen + 1);
  return r;
}

static int add_tree(struct create *c, int pfd, const char *base);

/* The path of len bytes in buf (size bytes) with "/" (none after an empty
   one) and base appended: its new length, or 0 (buf unchanged) when it
   does not fit. */
static size_t join(char *buf, size_t len, size_t size, const char *base, size_t blen) {
  size_t sep = len > 0;
  if (len + sep + blen + 1 > size) return 0;
  buf[len] = '/';
  memcpy(buf + len + sep, base, blen + 1);
  return len + sep + blen;
}

/* Adds the children of the directory open at dfd in byte order of their
   names, each looked up beneath dfd: a tree an app writes can swap a
   directory for a symlink at any moment, and nothing is ever resolved
   through one. */
static int add_children(struct create *c, int dfd) {
  lua_State *L = c->L;
  luaL_checkstack(L, 4, "directory tree too deep");
  lua_newtable(L); /* the names, freed by Lua whatever a callback raises */
  struct names ns;
  int err = read_names(dfd, &ns);
  if (err) return job_fail(c->j, err, "%s: %s", c->host, strerror(err));
  for (size_t i = 0; i < ns.n; i++) {
    lua_pushstring(L, ns.v[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  names_free(&ns);
  size_t hostlen = c->hostlen, namelen = c->namelen;
  for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TSTRING; i++) {
    size_t len;
    const char *base = lua_tolstring(L, -1, &len);
    c->hostlen = join(c->host, hostlen, sizeof c->host, base, len);
    c->namelen = join(c->name, namelen, sizeof c->name, base, len);
    c->depth++;
    /* past PATH_MAX left out, as a swapped file is: an app can nest its
       own tree that deep, and failing here would let it stop every backup */
    int r = c->hostlen && c->namelen ? add_tree(c, dfd, base) : 0;
    c->depth--;
    if (r < 0) return -1;
    c->host[hostlen] = '\0';
    c->hostlen = hostlen;
    c->name[namelen] = '\0';
    c->namelen = namelen;
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  return 0;
}

/* Adds base, in the directory open at pfd (AT_FDCWD and c->host for an
   entry the caller named), as c->name (nothing for an empty name: a
   directory's contents go to the archive's top), then a directory's
   contents. A regular file or directory is opened without following a
   symlink and must be the one lstat saw; one that an app swapped or
   removed meanwhile is left out (it cannot make ctcli read through a link,
   block on a FIFO, or fail the backup), as are sockets, a mount inside the
   tree and, in OCI form, device nodes and FIFOs other than whiteouts and
   names beginning with ".wh.". */
static int add_tree(struct create *c, int pfd, const char *base) {
  struct job *j = c->j;
  /* In OCI form ".wh." starts a whiteout: an app's own file of such a name
     (overlayfs reserves none) would come back as one, or as a whiteout of
     no name that no extraction accepts. It cannot be said: left out. */
  if (c->oci && c->depth && strncmp(base, CT_WH_PREFIX, sizeof CT_WH_PREFIX - 1) == 0) return 0;
  struct stat st;
  if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return c->depth && errno == ENOENT ? 0 : job_fail(j, errno, "%s: %s", c->host, strerror(errno));
  if (st.st_dev == c->tmp_dev && st.st_ino == c->tmp_ino) return 0; /* our own output */
  if (S_ISSOCK(st.st_mode)) return 0;
  if (c->oci && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode)))
    return c->namelen && ct_is_overlay_whiteout(&st) ? add_oci_marker(c, &st, 0) : 0;
  if (!c->namelen && !S_ISDIR(st.st_mode))
    return job_fail(j, EINVAL, "%s: only a directory can be added with an empty name", c->host);
  int fd = -1;
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
    /* a file through O_PATH first: a FIFO or device swapped in is never opened */
    fd = S_ISREG(st.st_mode) ? ct_open_regular(pfd, base, O_RDONLY, &st, &st)
                             : openat(pfd, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_DIRECTORY);
    struct stat fst;
    if (fd < 0 || fstat(fd, &fst) != 0 || fst.st_dev != st.st_dev || fst.st_ino != st.st_ino ||
        (fst.st_mode & S_IFMT) != (st.st_mode & S_IFMT)) {
      int e = fd < 0 ? errno : EAGAIN;
      if (fd >= 0) close(fd);
      return c->depth ? 0 : job_fail(j, e, "%s: %s", c->host, strerror(e));
    }
    st = fst;
    /* a mount inside a tree (a bind mount an app cannot make, but a host
       could) is not the tree's: its files stay out of the archive */
    struct stat pst;
    if (c->depth && S_ISDIR(st.st_mode) && fstat(pfd, &pst) == 0 && is_mount_root(fd, &pst, &st)) {
      close(fd);
      return 0;
    }
  }
  int r = 0;
  if (c->namelen) r = add_entry(c, &st, pfd, base, fd);
  if (!r && c->oci && S_ISDIR(st.st_mode) && ct_fd_opaque(fd)) r = add_oci_marker(c, &st, 1);
  if (!r && S_ISDIR(st.st_mode)) r = add_children(c, fd);
  if (fd >= 0) close(fd);
  return r;
}

/* ---- the writer: what libarchive (and File:zstd_to) writes goes through here to the file ----

   zstd is driven here, not through libarchive's filter: libarchive 3.6
   sets zstd's workers but not their job size, and at level 3 zstd's
   default job (8 MiB) made two workers buffer 50-80 MB. With the smallest
   job zstd takes (512 KiB) two workers compress while this thread reads
   in about 7 MB (4 MB more per further worker, so at most two), for
   about 1% more output on compressible trees. The frame is the one zstd
   always writes (level 3, no checksum unless asked, as libarchive's); with one worker
   or two the bytes are the same.
   Writeback is started every few MiB, so the final fsync waits for the
   last few MiB only, not for the whole file. */
#define OUT_SIZE (256 << 10)
#define ZSTD_JOB_SIZE (512 << 10)
#define ZSTD_WORKERS_MAX 2
#define WRITEBACK_EVERY (8 << 20)

int zout_open(struct zout *z, int fd, int zstd, int checksum) {
  memset(z, 0, sizeof *z);
  z->fd = fd;
  if (!(z->out = malloc(OUT_SIZE))) return ENOMEM;
  if (!zstd) return 0;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int workers = cpus < 1 ? 1 : cpus > ZSTD_WORKERS_MAX ? ZSTD_WORKERS_MAX : (int)cpus;
  if (!(z->zc = ZSTD_createCCtx())) return ENOMEM;
  size_t r = ZSTD_CCtx_setParameter(z->zc, ZSTD_c_compressionLevel, 3);
  if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(z->zc, ZSTD_c_nbWorkers, workers);
  if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(z->zc, ZSTD_c_jobSize, ZSTD_JOB_SIZE);
  if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(z->zc, ZSTD_c_checksumFlag, checksum);
  if (ZSTD_isError(r)) z->zerr = ZSTD_getErrorName(r);
  return ZSTD_isError(r) ? EIO : 0;
}

void zout_free(struct zout *z) {
  ZSTD_freeCCtx(z->zc); /* joins its workers */
  z->zc = NULL;
  free(z->out);
  z->out = NULL;
}

static int out_flush(struct zout *z) {
  int err = write_all(z->fd, z->out, z->outlen);
  if (err) return err;
  z->written += (off_t)z->outlen;
  z->outlen = 0;
  if (z->written - z->flushed >= WRITEBACK_EVERY) {
    /* a hint: a failure here shows at the fsync */
    sync_file_range(z->fd, z->flushed, z->written - z->flushed, SYNC_FILE_RANGE_WRITE);
    z->flushed = z->written;
  }
  return 0;
}

/* Bytes to the file as they are. */
static int out_put(struct zout *z, const void *p, size_t len) {
  for (size_t done = 0; done < len;) {
    size_t n = len - done < OUT_SIZE - z->outlen ? len - done : OUT_SIZE - z->outlen;
    memcpy(z->out + z->outlen, (const char *)p + done, n);
    z->outlen += n;
    done += n;
    int err = z->outlen == OUT_SIZE ? out_flush(z) : 0;
    if (err) return err;
  }
  return 0;
}

/* zstd's step: ZSTD_e_continue while writing, ZSTD_e_end to finish. */
static int out_zstd(struct zout *z, const void *p, size_t len, ZSTD_EndDirective how) {
  ZSTD_inBuffer in = {p, len, 0};
  for (;;) {
    ZSTD_outBuffer o = {z->out, OUT_SIZE, z->outlen};
    size_t left = ZSTD_compressStream2(z->zc, &o, &in, how);
    if (ZSTD_isError(left)) {
      z->zerr = ZSTD_getErrorName(left);
      return EIO;
    }
    z->outlen = o.pos;
    int err = z->outlen == OUT_SIZE ? out_flush(z) : 0;
    if (err) return err;
    if (how == ZSTD_e_end ? left == 0 : in.pos == in.size) return 0;
  }
}

int zout_write(struct zout *z, const void *p, size_t len) {
  return z->zc ? out_zstd(z, p, len, ZSTD_e_continue) : out_put(z, p, len);
}

int zout_finish(struct zout *z) {
  int err = z->zc ? out_zstd(z, NULL, 0, ZSTD_e_end) : 0;
  return err ? err : out_flush(z);
}

/* A stored member's data (a blob compressed already, which zstd would
   only spend CPU on) goes in a frame of its own made of raw blocks: the
   frame being compressed is ended first, and the next data begins a new
   one. Concatenated frames are one zstd stream to every reader (RFC 8878
   section 3.1). The raw frame: magic, a descriptor with no content size,
   checksum or dictionary, a 128 KiB window; blocks of at most 128 KiB,
   each a 3-byte header (size << 3 | type raw 0 << 1 | last); ended by an
   empty last block, as zstd itself ends a frame. */
#define RAW_BLOCK (128 << 10)

static int out_raw(struct zout *z, const void *p, size_t len) {
  int err = 0;
  if (!z->raw_open) {
    static const unsigned char head[] = {0x28, 0xb5, 0x2f, 0xfd, 0x00, (17 - 10) << 3};
    if ((err = out_zstd(z, NULL, 0, ZSTD_e_end)) || (err = out_put(z, head, sizeof head))) return err;
    z->raw_open = 1;
  }
  for (size_t done = 0; done < len && !err; done += RAW_BLOCK) {
    size_t n = len - done < RAW_BLOCK ? len - done : RAW_BLOCK;
    uint32_t h = (uint32_t)n << 3;
    unsigned char bh[3] = {h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff};
    if (!(err = out_put(z, bh, sizeof bh))) err = out_put(z, (const char *)p + done, n);
  }
  return err;
}

static int out_raw_end(struct zout *z) {
  static const unsigned char last[3] = {0x01, 0x00, 0x00};
  if (!z->raw_open) return 0;
  z->raw_open = 0;
  return out_put(z, last, sizeof last);
}

/* A failure of the writer, as libarchive reports its writer's: -1. */
static int out_failed(struct archive *a, struct zout *z, int err) {
  if (z->zerr) archive_set_error(a, err, "zstd: %s", z->zerr);
  else archive_set_error(a, err, "%s", strerror(err));
  return -1;
}

static la_ssize_t out_write(struct archive *a, void *data, const void *p, size_t len) {
  struct job *j = data;
  int err = j->raw ? out_raw(&j->z, p, len) : zout_write(&j->z, p, len);
  return err ? out_failed(a, &j->z, err) : (la_ssize_t)len;
}

/* zstd (level 3, at most two workers) through out_write, gzip through
   libarchive's filter, or none. */
static int set_filter(struct create *c, const char *format) {
  struct job *j = c->j;
  struct archive *a = j->wr;
  int err = zout_open(&j->z, j->fd, strcmp(format, "zstd") == 0, 0);
  if (err == EIO) return job_fail(j, EINVAL, "%s: zstd: %s", c->dest, j->z.zerr);
  if (err) return job_fail(j, err, "%s: %s", c->dest, strerror(err));
  if (strcmp(format, "gzip") == 0) {
    /* no time in the gzip header: equal trees give equal files */
    if (archive_write_add_filter_gzip(a) != ARCHIVE_OK ||
        archive_write_set_filter_option(a, "gzip", "timestamp", NULL) != ARCHIVE_OK)
      return create_write_failed(c);
    return 0;
  }
  return archive_write_add_filter_none(a) == ARCHIVE_OK ? 0 : create_write_failed(c);
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

/* The fields of an entry in the list create_run reads. */
#define NF 6

/* The entries to add: a table at `list`, {name1, path1, before1, after1, whiteouts1, stored1, ...}. */
static int create_run(struct create *c, int list, lua_Integer n, const char *format) {
  struct job *j = c->j;
  if (!(j->buf = malloc(BLOCK_SIZE)) || asprintf(&j->tmp, "%s.tmp-XXXXXX", c->dest) < 0) {
    j->tmp = NULL;
    return job_fail(j, ENOMEM, "%s: %s", c->dest, strerror(ENOMEM));
  }
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
  j->rd = archive_read_disk_new();
  if (!j->wr || !j->links || !j->rd || archive_read_disk_set_standard_lookup(j->rd) != ARCHIVE_OK)
    return job_fail(j, ENOMEM, "%s: %s", c->dest, strerror(ENOMEM));
  if (archive_write_set_format_pax_restricted(j->wr) != ARCHIVE_OK) return create_write_failed(c);
  archive_entry_linkresolver_set_strategy(j->links, ARCHIVE_FORMAT_TAR_PAX_RESTRICTED);
  if (set_filter(c, format) < 0) return -1;
  /* no blocks, no padding after the compressed data: out_write buffers */
  archive_write_set_bytes_per_block(j->wr, 0);
  archive_write_set_bytes_in_last_block(j->wr, 1);
  if (archive_write_open(j->wr, j, NULL, out_write, NULL) != ARCHIVE_OK) return create_write_failed(c);

  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(c->L, list, NF * i - 5);
    lua_rawgeti(c->L, list, NF * i - 4);
    const char *name = lua_tostring(c->L, -2), *path = lua_tostring(c->L, -1);
    const char *why = clean_name(name, c->name, sizeof c->name);
    if (why) return job_fail(j, EINVAL, "%s: %s: %s", c->dest, name, why);
    size_t pl = strlen(path);
    if (pl + 1 > sizeof c->host)
      return job_fail(j, ENAMETOOLONG, "%s: %s", path, strerror(ENAMETOOLONG));
    if (entry_hook(c, list, NF * i - 3, "refused by its 'before' function", name) < 0) return -1;
    memcpy(c->host, path, pl + 1);
    c->hostlen = pl;
    c->namelen = strlen(c->name);
    c->depth = 0;
    lua_rawgeti(c->L, list, NF * i - 1);
    c->oci = lua_toboolean(c->L, -1);
    lua_rawgeti(c->L, list, NF * i);
    c->stored = lua_toboolean(c->L, -1);
    lua_pop(c->L, 2);
    if (add_tree(c, AT_FDCWD, c->host) < 0) return -1;
    if (entry_hook(c, list, NF * i - 2, "refused by its 'after' function", name) < 0) return -1;
    lua_pop(c->L, 2);
  }

  if (archive_write_close(j->wr) != ARCHIVE_OK) return create_write_failed(c);
  int err = zout_finish(&j->z);
  if (err) {
    out_failed(j->wr, &j->z, err);
    return create_write_failed(c);
  }
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
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", c->dest);
  int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  job_progress(c->L, j, c->bytes, (lua_Integer)j->z.written, 1);
  return 0;
}

/* create(dest, {{name=, path=[, before=, after=]}, ...} [, opts])
     -> {entries=, bytes=, size=[, sha256=]}
   Entries are written in the order given. With opts.sha256, sha256 maps
   the name of every regular file whose data was written (not a hard link
   to one before it) to the hex sha256 of those bytes, hashed as read. An entry's `before` runs just
   before its first file is read and its `after` just after its last one
   (so a caller can hold a tree still only while it is read); either fails
   the call by returning nil, msg. A failed call does not run the `after`
   of the entry it failed in: the caller undoes what its `before` did.
   opts.links = {[name] = earlier name}: those regular files as hard links.
   An entry's stored = true (zstd only): its files' data is compressed
   already (an image's gzip or zstd layer), written in raw zstd blocks. */
int ar_create(lua_State *L) {
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
  c->mtime = opt_integer(L, 3, "mtime", -1, 0);
  c->owner0 = opt_bool(L, 3, "owner0");
  int sums = opt_bool(L, 3, "sha256");
  int progress = opt_progress(L, 3); /* 5 */

  /* 6: the entries, copied so a callback changing them changes nothing:
     name (a string), path (a string), before, after (functions or nil),
     whiteouts (nil or "oci"), stored (nil or a boolean) of each, one after the other */
  static const char *const keys[NF] = {"name", "path", "before", "after", "whiteouts", "stored"};
  lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
  lua_createtable(L, (int)(NF * n), 0);
  int list = lua_gettop(L);
  for (lua_Integer i = 1; i <= n; i++) {
    luaL_argcheck(L, lua_rawgeti(L, 2, i) == LUA_TTABLE, 2, "an entry is not a table");
    for (int k = 0; k < NF; k++) {
      int ty = lua_getfield(L, -1, keys[k]);
      int good = k < 2   ? ty == LUA_TSTRING
                 : k < 4 ? ty == LUA_TNIL || ty == LUA_TFUNCTION
                 : k == 5 ? ty == LUA_TNIL || ty == LUA_TBOOLEAN
                         : ty == LUA_TNIL || (ty == LUA_TSTRING && strcmp(lua_tostring(L, -1), "oci") == 0);
      if (!good) luaL_error(L, "bad argument #2 to 'create' (entry %I: bad '%s')", (LUA_INTEGER)i, keys[k]);
      lua_rawseti(L, list, NF * i - (NF - 1) + k);
    }
    lua_pop(L, 1);
  }
  lua_newtable(L); /* 7: the sha256 of each regular file by name */
  if (sums) c->sums = lua_gettop(L);
  c->j = job_new(L); /* 8 */
  c->j->progress = progress;
  int lt = opt_field(L, 3, "links"); /* 9 */
  if (lt != LUA_TNIL && lt != LUA_TTABLE)
    luaL_error(L, "bad option 'links' (table expected, got %s)", lua_typename(L, lt));
  c->links = lt == LUA_TTABLE ? lua_gettop(L) : 0;
  if (create_run(c, list, n, format) < 0) return job_error(L, c->j);
  job_close(c->j);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, c->entries);
  lua_setfield(L, -2, "entries");
  lua_pushinteger(L, c->bytes);
  lua_setfield(L, -2, "bytes");
  lua_pushinteger(L, (lua_Integer)c->j->z.written); /* the file's size */
  lua_setfield(L, -2, "size");
  if (c->sums) {
    lua_pushvalue(L, c->sums);
    lua_setfield(L, -2, "sha256");
  }
  return 1;
}

