/* ct.archive: hostile archives are refused with the archive's and the
   entry's names and nothing lands outside the destination; limits hold
   before the entry that would pass them; create/extract round trips keep
   modes, symlinks and hard links; create is reproducible. Hostile archives
   are built here with libarchive's write API. */
#include "harness.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <time.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* ---- helpers ---- */

/* "<tmpdir>/<rel>" in one of a few rotating buffers. */
static const char *P(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *P(const char *fmt, ...) {
  static char bufs[8][1024];
  static int next;
  char *b = bufs[next++ % 8];
  char rel[900];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(rel, sizeof rel, fmt, ap);
  va_end(ap);
  snprintf(b, sizeof bufs[0], "%s/%s", t_tmpdir(), rel);
  return b;
}

static void mkdirs(const char *path) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
  if (system(cmd) != 0) t_fail(__FILE__, __LINE__, "mkdir -p %s failed", path);
}

static void rmtree(const char *path) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
  if (system(cmd) != 0) t_fail(__FILE__, __LINE__, "rm -rf %s failed", path);
}

static void write_file(const char *path, const char *data, size_t len, mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) t_fail(__FILE__, __LINE__, "open %s: %s", path, strerror(errno));
  if (len && write(fd, data, len) != (ssize_t)len) t_fail(__FILE__, __LINE__, "write %s", path);
  close(fd);
  if (chmod(path, mode) != 0) t_fail(__FILE__, __LINE__, "chmod %s", path);
}

/* The whole file (NUL-terminated), or NULL when it cannot be read. */
static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0;
  char *b = malloc(cap + 1);
  size_t r;
  while ((r = fread(b + n, 1, cap - n, f)) > 0) {
    n += r;
    if (n == cap) b = realloc(b, (cap *= 2) + 1);
  }
  fclose(f);
  b[n] = '\0';
  if (len) *len = n;
  return b;
}

static int exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

static void fill_random(char *b, size_t n, unsigned seed) {
  unsigned long long x = seed * 2654435761ULL + 1;
  for (size_t i = 0; i < n; i++) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    b[i] = (char)(x >> 56);
  }
}

/* The names in dir (no "." and ".."), checked against a NULL-terminated list. */
static void expect_children_at(const char *file, int line, const char *dir, ...) {
  const char *want[32];
  int n = 0;
  va_list ap;
  va_start(ap, dir);
  for (const char *s; (s = va_arg(ap, const char *)) != NULL && n < 32;) want[n++] = s;
  va_end(ap);
  DIR *d = opendir(dir);
  if (!d) t_fail(file, line, "opendir %s: %s", dir, strerror(errno));
  int seen = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    int found = 0;
    for (int i = 0; i < n; i++) found |= strcmp(want[i], e->d_name) == 0;
    if (!found) {
      closedir(d);
      t_fail(file, line, "%s holds an unexpected \"%s\"", dir, e->d_name);
    }
    seen++;
  }
  closedir(d);
  if (seen != n) t_fail(file, line, "%s holds %d names, expected %d", dir, seen, n);
}
#define EXPECT_CHILDREN(...) expect_children_at(__FILE__, __LINE__, __VA_ARGS__, (const char *)NULL)

/* An archive member to write: type 'f' file ("content of <name>\n", or
   size zero bytes), 'r' file of size pseudo-random bytes, 'd' directory,
   'l' symlink to link, 'h' hard link to link, 'c'/'b' device, 'p' fifo. */
struct member {
  const char *name;
  char type;
  unsigned mode;
  const char *link;
  long long size;
  long long id; /* uid and gid */
};

static void make_archive_at(const char *file, int line, const char *path, const char *filter,
                            const struct member *m, size_t n) {
  struct archive *a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (!strcmp(filter, "gzip"))
    archive_write_add_filter_gzip(a);
  else if (!strcmp(filter, "zstd"))
    archive_write_add_filter_zstd(a);
  else if (!strcmp(filter, "xz"))
    archive_write_add_filter_xz(a);
  else if (!strcmp(filter, "bzip2"))
    archive_write_add_filter_bzip2(a);
  else
    archive_write_add_filter_none(a);
  if (archive_write_open_filename(a, path) != ARCHIVE_OK)
    t_fail(file, line, "cannot write %s: %s", path, archive_error_string(a));
  static char chunk[65536];
  for (size_t i = 0; i < n; i++) {
    struct archive_entry *e = archive_entry_new();
    char content[600];
    snprintf(content, sizeof content, "content of %s\n", m[i].name);
    long long size = 0;
    archive_entry_set_pathname(e, m[i].name);
    archive_entry_set_mtime(e, 1600000000, 0);
    archive_entry_set_uid(e, m[i].id);
    archive_entry_set_gid(e, m[i].id);
    switch (m[i].type) {
    case 'f':
    case 'r':
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, m[i].mode ? m[i].mode : 0644);
      size = m[i].size ? m[i].size : (long long)strlen(content);
      break;
    case 'd':
      archive_entry_set_filetype(e, AE_IFDIR);
      archive_entry_set_perm(e, m[i].mode ? m[i].mode : 0755);
      break;
    case 'l':
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_set_perm(e, 0777);
      archive_entry_set_symlink(e, m[i].link);
      break;
    case 'h':
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, 0644);
      archive_entry_set_hardlink(e, m[i].link);
      break;
    case 'c':
    case 'b':
      archive_entry_set_filetype(e, m[i].type == 'c' ? AE_IFCHR : AE_IFBLK);
      archive_entry_set_perm(e, 0666);
      archive_entry_set_rdev(e, makedev(1, 3));
      break;
    case 'p':
      archive_entry_set_filetype(e, AE_IFIFO);
      archive_entry_set_perm(e, 0644);
      break;
    }
    archive_entry_set_size(e, size);
    if (archive_write_header(a, e) != ARCHIVE_OK)
      t_fail(file, line, "header %s: %s", m[i].name, archive_error_string(a));
    if (m[i].type == 'f' && !m[i].size) archive_write_data(a, content, (size_t)size);
    for (long long left = m[i].type == 'f' && !m[i].size ? 0 : size; left > 0;) {
      size_t k = left < (long long)sizeof chunk ? (size_t)left : sizeof chunk;
      if (m[i].type == 'r')
        fill_random(chunk, k, (unsigned)left);
      else
        memset(chunk, 0, k);
      archive_write_data(a, chunk, k);
      left -= (long long)k;
    }
    archive_entry_free(e);
  }
  if (archive_write_close(a) != ARCHIVE_OK) t_fail(file, line, "close %s", path);
  archive_write_free(a);
}
#define MAKE_ARCHIVE(path, filter, m)                                                              \
  make_archive_at(__FILE__, __LINE__, path, filter, m, sizeof(m) / sizeof((m)[0]))

static const char PRELUDE[] =
    "A = require('ct').archive\n"
    "function refused(needles, r, msg, err)\n"
    "  assert(r == nil, 'expected a failure, got a result')\n"
    "  assert(type(msg) == 'string', 'no message')\n"
    "  assert(math.type(err) == 'integer' and err > 0, 'no errno: ' .. tostring(err))\n"
    "  for _, n in ipairs(needles) do\n"
    "    assert(msg:find(n, 1, true), string.format('message %q does not contain %q', msg, n))\n"
    "  end\n"
    "  return msg, err\n"
    "end\n"
    "function ok(r, msg) if not r then error(msg, 2) end return r end\n";

/* The state with T (the temp dir), E (errno values), A and the helpers. */
static lua_State *S(void) {
  lua_State *L = t_state();
  lua_pushstring(L, t_tmpdir());
  lua_setglobal(L, "T");
  lua_createtable(L, 0, 8);
  static const struct {
    const char *name;
    int value;
  } errs[] = {{"ENOENT", ENOENT}, {"ENOSPC", ENOSPC}, {"EPERM", EPERM},    {"EFBIG", EFBIG},
              {"EISDIR", EISDIR}, {"EINVAL", EINVAL}, {"ENOTDIR", ENOTDIR},
              {"ECANCELED", ECANCELED}};
  for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
    lua_pushinteger(L, errs[i].value);
    lua_setfield(L, -2, errs[i].name);
  }
  lua_setglobal(L, "E");
  T_LUA(L, PRELUDE);
  return L;
}

static void lua_fmt_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void lua_fmt_at(const char *file, int line, const char *fmt, ...) {
  char code[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(code, sizeof code, fmt, ap);
  va_end(ap);
  t_lua(S(), code, file, line);
}
#define LUA_FMT(...) lua_fmt_at(__FILE__, __LINE__, __VA_ARGS__)

/* Extracts T/<arch> into a fresh T/<box>/dest and checks that it fails
   with the archive's name and `needle` in the message, and that <box>
   holds nothing but dest afterwards. */
static void expect_refused_at(const char *file, int line, const char *box, const char *arch,
                              const char *opts, const char *needle) {
  mkdirs(P("%s/dest", box));
  lua_fmt_at(file, line,
             "local _, err = refused({[==[%s]==], [==[%s]==]}, "
             "  A.extract(T .. '/%s', T .. '/%s/dest', %s)) "
             "assert(err == E.EPERM or err == E.EFBIG, err) return true",
             arch, needle, arch, box, opts ? opts : "nil");
  expect_children_at(file, line, P("%s", box), "dest", (const char *)NULL);
}
#define EXPECT_REFUSED(box, arch, opts, needle)                                                    \
  expect_refused_at(__FILE__, __LINE__, box, arch, opts, needle)

static mode_t mode_of(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) t_fail(__FILE__, __LINE__, "lstat %s: %s", path, strerror(errno));
  return st.st_mode & 07777;
}

/* ---- hostile archives ---- */

DEFINE_TEST(extract_refuses_dotdot_entries) {
  struct member a[] = {{.name = "ok.txt", .type = 'f'}, {.name = "../escape", .type = 'f'}};
  MAKE_ARCHIVE(P("dotdot.tar"), "none", a);
  EXPECT_REFUSED("box", "dotdot.tar", NULL, "../escape: refusing a path with '..'");
  T_ASSERT(exists(P("box/dest/ok.txt"))); /* what came before stays, as documented */

  struct member b[] = {{.name = "sub/", .type = 'd'}, {.name = "sub/../../escape2", .type = 'f'}};
  MAKE_ARCHIVE(P("dotdot2.tar.gz"), "gzip", b);
  EXPECT_REFUSED("box2", "dotdot2.tar.gz", NULL, "sub/../../escape2");
  EXPECT_CHILDREN(t_tmpdir(), "dotdot.tar", "dotdot2.tar.gz", "box", "box2");
}

DEFINE_TEST(extract_refuses_absolute_entries) {
  char name[600];
  snprintf(name, sizeof name, "%s", P("abs-target"));
  struct member a[] = {{.name = name, .type = 'f'}};
  MAKE_ARCHIVE(P("abs.tar"), "none", a);
  EXPECT_REFUSED("box", "abs.tar", NULL, name);
  T_ASSERT(!exists(P("abs-target")));
  EXPECT_CHILDREN(t_tmpdir(), "abs.tar", "box");
}

DEFINE_TEST(extract_refuses_a_path_through_a_symlink_to_root) {
  /* link -> / then link/<tmp>/via-root: writes into our temp dir if it works */
  char name[600];
  snprintf(name, sizeof name, "link%s/via-root", t_tmpdir());
  struct member a[] = {{.name = "link", .type = 'l', .link = "/"}, {.name = name, .type = 'f'}};
  MAKE_ARCHIVE(P("root-link.tar"), "none", a);
  char needle[700];
  snprintf(needle, sizeof needle, "%s: refusing a path through the symlink link", name);
  EXPECT_REFUSED("box", "root-link.tar", NULL, needle);
  T_ASSERT(!exists(P("via-root")));
  EXPECT_CHILDREN(t_tmpdir(), "root-link.tar", "box");
}

DEFINE_TEST(extract_refuses_a_path_through_a_symlink_to_the_parent) {
  struct member a[] = {{.name = "up", .type = 'l', .link = ".."},
                       {.name = "up/escaped", .type = 'f'}};
  MAKE_ARCHIVE(P("up.tar"), "none", a);
  EXPECT_REFUSED("box", "up.tar", NULL, "up/escaped: refusing a path through the symlink up");
  T_ASSERT(!exists(P("box/escaped")));

  struct member b[] = {{.name = "d/", .type = 'd'},
                       {.name = "d/up2", .type = 'l', .link = "../.."},
                       {.name = "d/up2/x", .type = 'f'}};
  MAKE_ARCHIVE(P("up2.tar.zst"), "zstd", b);
  EXPECT_REFUSED("box2", "up2.tar.zst", NULL, "d/up2/x: refusing a path through the symlink d/up2");
  EXPECT_CHILDREN(t_tmpdir(), "up.tar", "up2.tar.zst", "box", "box2");
}

/* A symlink then a file of the same name: refused as a second entry of
   one name, and the file outside is not written through the symlink. */
DEFINE_TEST(extract_refuses_a_file_over_a_planted_symlink) {
  write_file(P("outside"), "secret\n", 7, 0644);
  char target[600];
  snprintf(target, sizeof target, "%s", P("outside"));
  struct member a[] = {{.name = "conf", .type = 'l', .link = target},
                       {.name = "conf", .type = 'f'}};
  MAKE_ARCHIVE(P("plant.tar"), "none", a);
  EXPECT_REFUSED("box", "plant.tar", NULL, "plant.tar: conf: refusing a second entry of the same name");
  char *s = read_file(P("outside"), NULL);
  T_ASSERT_STR(s, "secret\n");
  free(s);
}

DEFINE_TEST(extract_refuses_hard_links_leading_outside) {
  write_file(P("outside"), "secret\n", 7, 0644);
  struct member rel[] = {{.name = "h", .type = 'h', .link = "../../outside"}};
  MAKE_ARCHIVE(P("hard-rel.tar"), "none", rel);
  EXPECT_REFUSED("box1", "hard-rel.tar", NULL, "h: hard link to ../../outside");

  char abs[600];
  snprintf(abs, sizeof abs, "%s", P("outside"));
  struct member ab[] = {{.name = "h", .type = 'h', .link = abs}};
  MAKE_ARCHIVE(P("hard-abs.tar"), "none", ab);
  EXPECT_REFUSED("box2", "hard-abs.tar", NULL, "h: hard link to /");

  /* through a symlink */
  char via[600];
  snprintf(via, sizeof via, "s%s", P("outside"));
  struct member sym[] = {{.name = "s", .type = 'l', .link = "/"},
                         {.name = "h", .type = 'h', .link = via}};
  MAKE_ARCHIVE(P("hard-sym.tar"), "none", sym);
  EXPECT_REFUSED("box3", "hard-sym.tar", NULL, "h: refusing a hard link through the symlink s");

  /* a data-carrying pax hard link would have written into the target */
  char *s = read_file(P("outside"), NULL);
  T_ASSERT_STR(s, "secret\n");
  free(s);
  struct stat st;
  T_ASSERT(stat(P("outside"), &st) == 0 && st.st_nlink == 1);
  T_ASSERT(!exists(P("box1/dest/h")) && !exists(P("box2/dest/h")) && !exists(P("box3/dest/h")));
}

DEFINE_TEST(extract_refuses_device_nodes) {
  struct member c[] = {{.name = "dev/", .type = 'd'}, {.name = "dev/null", .type = 'c'}};
  MAKE_ARCHIVE(P("chr.tar"), "none", c);
  EXPECT_REFUSED("box1", "chr.tar", NULL, "chr.tar: dev/null: refusing a device node");
  T_ASSERT(!exists(P("box1/dest/dev/null")));

  struct member b[] = {{.name = "./dev/sda", .type = 'b'}};
  MAKE_ARCHIVE(P("blk.tar.gz"), "gzip", b);
  EXPECT_REFUSED("box2", "blk.tar.gz", NULL, "blk.tar.gz: dev/sda: refusing a device node");
  T_ASSERT(!exists(P("box2/dest/dev/sda")));
  /* preserve (a backup restore) refuses them too */
  EXPECT_REFUSED("box3", "chr.tar", "{preserve=true}", "dev/null: refusing a device node");
}

DEFINE_TEST(extract_refuses_fifos) {
  struct member p[] = {{.name = "run/pipe", .type = 'p'}};
  MAKE_ARCHIVE(P("fifo.tar"), "none", p);
  EXPECT_REFUSED("box", "fifo.tar", NULL, "fifo.tar: run/pipe: refusing a fifo");
  T_ASSERT(!exists(P("box/dest/run/pipe")));
  EXPECT_REFUSED("box2", "fifo.tar", "{special='refuse'}", "run/pipe: refusing a fifo");
}

/* The caller's policy: special = "skip" (a backup's data) leaves them out, named. */
DEFINE_TEST(extract_skips_special_files_when_told) {
  struct member m[] = {{.name = "dev/", .type = 'd'}, {.name = "dev/null", .type = 'c'},
                       {.name = "run/pipe", .type = 'p'}, {.name = "ok", .type = 'f'}};
  MAKE_ARCHIVE(P("mixed.tar"), "none", m);
  mkdirs(P("skip/dest"));
  LUA_FMT("local r = ok(A.extract(T .. '/mixed.tar', T .. '/skip/dest', {special = 'skip'})) "
          "assert(#r.skipped == 2 and r.skipped[1] == 'dev/null' and r.skipped[2] == 'run/pipe') "
          "assert(not pcall(A.extract, T .. '/mixed.tar', T .. '/skip/dest', {special = 'keep'})) "
          "return true");
  T_ASSERT(exists(P("skip/dest/ok")) && !exists(P("skip/dest/dev/null")) && !exists(P("skip/dest/run/pipe")));
}

/* A reader that stops at the first manifest.json (verify) and one that
   keeps the last (extract) must never see two different files. */
DEFINE_TEST(extract_and_list_refuse_two_entries_of_one_name) {
  struct member m[] = {{.name = "manifest.json", .type = 'f'},
                       {.name = "images/", .type = 'd'},
                       {.name = "./manifest.json", .type = 'f', .size = 10}};
  MAKE_ARCHIVE(P("dup.tar"), "none", m);
  EXPECT_REFUSED("box", "dup.tar", NULL, "dup.tar: manifest.json: refusing a second entry of the same name");
  /* The first copy was written before the second was met; the caller
     removes the staging directory on any failure. */
  LUA_FMT("local _, e = refused({'dup.tar: manifest.json: refusing a second entry of the same name'}, "
          "  A.list(T .. '/dup.tar', {digests = true})) "
          "assert(e == E.EPERM) return true");
  /* Directories too, "a" and "a/" being one name; also outside opts.only. */
  struct member d[] = {{.name = "data/", .type = 'd'}, {.name = "x/y", .type = 'f'},
                       {.name = "./data", .type = 'd'}};
  MAKE_ARCHIVE(P("dupdir.tar.gz"), "gzip", d);
  EXPECT_REFUSED("box2", "dupdir.tar.gz", "{only = {x = true}}", "dupdir.tar.gz: data: refusing a second entry");
  LUA_FMT("refused({'dupdir.tar.gz: data: refusing a second entry'}, A.list(T .. '/dupdir.tar.gz')) "
          "return true");
  /* A hard link is an entry of its own name: naming it twice is refused. */
  struct member h[] = {{.name = "a", .type = 'f'}, {.name = "b", .type = 'h', .link = "a"},
                       {.name = "b", .type = 'h', .link = "a"}};
  MAKE_ARCHIVE(P("duplink.tar"), "none", h);
  EXPECT_REFUSED("box3", "duplink.tar", NULL, "duplink.tar: b: refusing a second entry");
}

DEFINE_TEST(extract_strips_setuid_and_owners_unless_preserving) {
  struct member m[] = {{.name = "bin/", .type = 'd'},
                       {.name = "bin/su", .type = 'f', .mode = 04755, .id = 1234},
                       {.name = "bin/sg", .type = 'f', .mode = 02755, .id = 1234},
                       {.name = "tmp/", .type = 'd', .mode = 01777}};
  MAKE_ARCHIVE(P("suid.tar.gz"), "gzip", m);
  mkdirs(P("plain"));
  mkdirs(P("kept"));
  LUA_FMT("local r = ok(A.extract(T .. '/suid.tar.gz', T .. '/plain')) "
          "assert(r.entries == 4, r.entries) return true");
  struct stat st;
  T_ASSERT(stat(P("plain/bin/su"), &st) == 0);
  T_ASSERT((st.st_mode & 07777) == 0755 && st.st_uid == 0 && st.st_gid == 0);
  T_ASSERT(stat(P("plain/bin/sg"), &st) == 0);
  T_ASSERT((st.st_mode & 07777) == 0755 && st.st_gid == 0);
  T_ASSERT(mode_of(P("plain/tmp")) == 01777); /* the sticky bit is not setuid */

  if (geteuid() != 0) t_skip("restoring owners needs root");
  LUA_FMT("return ok(A.extract(T .. '/suid.tar.gz', T .. '/kept', {preserve=true}))");
  T_ASSERT(stat(P("kept/bin/su"), &st) == 0);
  T_ASSERT((st.st_mode & 07777) == 04755 && st.st_uid == 1234 && st.st_gid == 1234);
  T_ASSERT(stat(P("kept/bin/sg"), &st) == 0);
  T_ASSERT((st.st_mode & 07777) == 02755 && st.st_gid == 1234);
}

/* ---- limits ---- */

DEFINE_TEST(extract_stops_before_the_entry_past_max_entries) {
  struct member m[30];
  char names[30][16];
  for (int i = 0; i < 30; i++) {
    snprintf(names[i], sizeof names[i], "f%02d", i);
    m[i] = (struct member){.name = names[i], .type = 'f'};
  }
  MAKE_ARCHIVE(P("many.tar.gz"), "gzip", m);
  EXPECT_REFUSED("box", "many.tar.gz", "{max_entries=10}",
                 "f10: the archive holds more than max_entries (10)");
  T_ASSERT(exists(P("box/dest/f09")) && !exists(P("box/dest/f10")));
  mkdirs(P("all"));
  LUA_FMT("local r = ok(A.extract(T .. '/many.tar.gz', T .. '/all', {max_entries=30})) "
          "assert(r.entries == 30, r.entries) return true");
}

DEFINE_TEST(extract_stops_before_the_entry_past_max_bytes) {
  struct member m[] = {{.name = "small", .type = 'f', .size = 1000},
                       {.name = "big", .type = 'f', .size = 8 << 20}};
  MAKE_ARCHIVE(P("bomb.tar.gz"), "gzip", m);
  struct stat st;
  T_ASSERT(stat(P("bomb.tar.gz"), &st) == 0 && st.st_size < 100000); /* a real bomb */
  EXPECT_REFUSED("box", "bomb.tar.gz", "{max_bytes=1<<20}",
                 "big: the archive holds more than max_bytes");
  T_ASSERT(exists(P("box/dest/small")) && !exists(P("box/dest/big")));
  mkdirs(P("exact"));
  LUA_FMT("local r = ok(A.extract(T .. '/bomb.tar.gz', T .. '/exact', {max_bytes=1000 + (8<<20)})) "
          "assert(r.bytes == 1000 + (8<<20), r.bytes) return true");
}

static char mounted[1024];
static void unmount_small(void) {
  if (mounted[0] && umount2(mounted, MNT_DETACH) != 0)
    fprintf(stderr, "warning: could not unmount %s: %s\n", mounted, strerror(errno));
  mounted[0] = '\0';
}

DEFINE_TEST(extract_checks_free_space_as_it_goes) {
  mkdirs(P("small"));
  if (mount("tmpfs", P("small"), "tmpfs", 0, "size=2m") != 0) {
    char why[200];
    snprintf(why, sizeof why, "cannot mount a 2 MiB tmpfs (%s%s)", strerror(errno),
             geteuid() != 0 ? ", not root" : "");
    t_skip(why);
  }
  snprintf(mounted, sizeof mounted, "%s", P("small"));
  atexit(unmount_small);

  /* each entry fits, both do not: the second is refused before writing */
  struct member two[] = {{.name = "a", .type = 'f', .size = 1536 << 10},
                         {.name = "b", .type = 'f', .size = 1536 << 10}};
  MAKE_ARCHIVE(P("two.tar.gz"), "gzip", two);
  mkdirs(P("small/x/dest"));
  LUA_FMT("local msg = refused({'two.tar.gz: b: not enough space in ', 'need at least', ' free'}, "
          "A.extract(T .. '/two.tar.gz', T .. '/small/x/dest', {check_space=true})) return msg");
  T_ASSERT(exists(P("small/x/dest/a")) && !exists(P("small/x/dest/b")));
  rmtree(P("small/x"));

  /* the archive alone is larger than the free space: nothing is written */
  struct member big[] = {{.name = "c", .type = 'f', .size = 3 << 20}};
  MAKE_ARCHIVE(P("big.tar"), "none", big);
  mkdirs(P("small/y/dest"));
  LUA_FMT("local _, err = refused({'big.tar: not enough space in '}, "
          "A.extract(T .. '/big.tar', T .. '/small/y/dest', {check_space=true})) "
          "assert(err == E.ENOSPC) return true");
  EXPECT_CHILDREN(P("small/y/dest"));
  rmtree(P("small/y"));

  /* without the budget the disk fills up: still "not enough space" */
  MAKE_ARCHIVE(P("big.tar.gz"), "gzip", big);
  mkdirs(P("small/z/dest"));
  LUA_FMT("local _, err = refused({'big.tar.gz: c: not enough space in ', 'No space left'}, "
          "A.extract(T .. '/big.tar.gz', T .. '/small/z/dest')) "
          "assert(err == E.ENOSPC, err) return true");
  unmount_small();
}

/* ---- what is not a (whole) tar archive ---- */

DEFINE_TEST(extract_rejects_what_is_not_a_tar_archive) {
  write_file(P("notes.txt"), "just some notes, not an archive\n", 32, 0644);
  write_file(P("empty"), "", 0, 0644);
  /* gzip data holding plain text */
  struct archive *a = archive_write_new();
  archive_write_set_format_raw(a);
  archive_write_add_filter_gzip(a);
  T_ASSERT(archive_write_open_filename(a, P("notes.gz")) == ARCHIVE_OK);
  struct archive_entry *e = archive_entry_new();
  archive_entry_set_filetype(e, AE_IFREG);
  archive_write_header(a, e);
  archive_write_data(a, "plain text, gzipped\n", 20);
  archive_entry_free(e);
  archive_write_close(a);
  archive_write_free(a);
  mkdirs(P("dest"));
  LUA_FMT("refused({'notes.txt: not a tar archive (gzip, zstd, xz'}, A.extract(T .. '/notes.txt', "
          "T .. '/dest')) "
          "refused({'empty: not a tar archive'}, A.extract(T .. '/empty', T .. '/dest')) "
          "refused({'notes.gz: not a tar archive'}, A.extract(T .. '/notes.gz', "
          "T .. '/dest')) "
          "refused({'notes.txt: not a tar archive'}, A.list(T .. '/notes.txt')) "
          "local _, e1 = refused({'missing.tar'}, A.extract(T .. '/missing.tar', T .. '/dest')) "
          "assert(e1 == E.ENOENT) "
          "local _, e2 = refused({'dest'}, A.extract(T .. '/dest', T .. '/dest')) "
          "assert(e2 == E.EISDIR) return true");
  EXPECT_CHILDREN(P("dest"));
}

DEFINE_TEST(extract_names_the_file_of_a_truncated_gzip) {
  struct member m[] = {{.name = "one", .type = 'r', .size = 300000},
                       {.name = "two", .type = 'r', .size = 300000}};
  MAKE_ARCHIVE(P("trunc.tar.gz"), "gzip", m);
  struct stat st;
  T_ASSERT(stat(P("trunc.tar.gz"), &st) == 0);
  T_ASSERT(truncate(P("trunc.tar.gz"), st.st_size * 3 / 4) == 0);
  mkdirs(P("dest"));
  LUA_FMT("local msg = refused({'trunc.tar.gz: '}, A.extract(T .. '/trunc.tar.gz', T .. '/dest')) "
          "refused({'trunc.tar.gz: '}, A.list(T .. '/trunc.tar.gz')) "
          "refused({'trunc.tar.gz: two'}, A.list(T .. '/trunc.tar.gz', {read = {two = 300000}})) "
          "return msg");
  /* truncated right after the gzip header: too short even to be detected */
  T_ASSERT(truncate(P("trunc.tar.gz"), 12) == 0);
  LUA_FMT("return refused({'trunc.tar.gz: ', 'gzip'}, "
          "A.extract(T .. '/trunc.tar.gz', T .. '/dest'))");
}

DEFINE_TEST(extract_checks_its_destination) {
  struct member m[] = {{.name = "a", .type = 'f'}};
  MAKE_ARCHIVE(P("a.tar"), "none", m);
  write_file(P("file"), "x", 1, 0644);
  LUA_FMT("local _, e1 = refused({'nowhere'}, A.extract(T .. '/a.tar', T .. '/nowhere')) "
          "assert(e1 == E.ENOENT) "
          "local _, e2 = refused({'file'}, A.extract(T .. '/a.tar', T .. '/file')) "
          "assert(e2 == E.ENOTDIR) return true");
}

DEFINE_TEST(extract_leaves_the_destination_itself_alone) {
  struct member m[] = {{.name = "./", .type = 'd', .mode = 0777}, {.name = "./a", .type = 'f'}};
  MAKE_ARCHIVE(P("dot.tar"), "none", m);
  mkdirs(P("dest"));
  T_ASSERT(chmod(P("dest"), 0750) == 0);
  LUA_FMT("local r = ok(A.extract(T .. '/dot.tar', T .. '/dest')) "
          "assert(r.entries == 1, r.entries) return true");
  T_ASSERT(mode_of(P("dest")) == 0750);
  T_ASSERT(exists(P("dest/a")));
}

DEFINE_TEST(extract_only_some_names_with_progress) {
  struct member m[] = {{.name = "a/", .type = 'd'},
                       {.name = "a/1", .type = 'r', .size = 2 << 20},
                       {.name = "b/2", .type = 'f'},
                       {.name = "c", .type = 'f'},
                       {.name = "ab", .type = 'f'}};
  MAKE_ARCHIVE(P("some.tar.gz"), "gzip", m);
  mkdirs(P("dest"));
  LUA_FMT("local calls = {} "
          "local r = ok(A.extract(T .. '/some.tar.gz', T .. '/dest', {only={a = true, c = true}, "
          "  progress=function(done, read) calls[#calls + 1] = {done, read} end})) "
          "assert(r.entries == 3, r.entries) "
          "local want = (2 << 20) + #'content of c\\n' "
          "assert(r.bytes == want, r.bytes) "
          "assert(#calls >= 1) "
          "for i = 2, #calls do assert(calls[i][1] >= calls[i - 1][1]) end "
          "assert(calls[#calls][1] == want, calls[#calls][1]) "
          "assert(calls[#calls][2] > 0) return true");
  T_ASSERT(exists(P("dest/a/1")) && exists(P("dest/c")));
  T_ASSERT(!exists(P("dest/b")) && !exists(P("dest/ab")));
}

DEFINE_TEST(a_failing_progress_callback_raises_and_frees_everything) {
  struct member m[] = {{.name = "a", .type = 'r', .size = 1 << 20}};
  MAKE_ARCHIVE(P("p.tar.zst"), "zstd", m);
  mkdirs(P("dest"));
  mkdirs(P("src"));
  write_file(P("src/f"), "data", 4, 0644);
  LUA_FMT("local ok1, e1 = pcall(A.extract, T .. '/p.tar.zst', T .. '/dest', "
          "  {progress=function() error('stop here') end}) "
          "assert(not ok1 and e1:find('stop here'), e1) "
          "local ok2, e2 = pcall(A.create, T .. '/out.tar.zst', {{name='x', path=T .. '/src'}}, "
          "  {progress=function() error('stop there') end}) "
          "assert(not ok2 and e2:find('stop there'), e2) "
          "collectgarbage() return true");
  /* the temp file of create went with the error */
  EXPECT_CHILDREN(t_tmpdir(), "p.tar.zst", "dest", "src");
}

DEFINE_TEST(wrong_argument_types_raise) {
  LUA_FMT("for _, f in ipairs{"
          "  function() A.extract() end,"
          "  function() A.extract('a', 'b', 'opts') end,"
          "  function() A.extract('a', 'b', {max_entries='10'}) end,"
          "  function() A.extract('a', 'b', {max_bytes=-1}) end,"
          "  function() A.extract('a', 'b', {only='a'}) end,"
          "  function() A.extract('a', 'b', {progress=1}) end,"
          "  function() A.extract('a', 'b', {preserve='yes'}) end,"
          "  function() A.create('x') end,"
          "  function() A.create('x', {{name=1, path='p'}}) end,"
          "  function() A.create('x', {'p'}) end,"
          "  function() A.create('x', {}, {format='lz4'}) end,"
          "  function() A.list() end,"
          "  function() A.list('x', {read = 'manifest.json'}) end,"
          "} do assert(not pcall(f)) end return true");
}

/* ---- create ---- */

/* T/src: app/{bin/run, etc/conf, etc/secret.d/, link, abs, hard1, hard2,
   deep/<long>/file, data.bin}, top.txt */
static const char LONG_DIR[] =
    "a-directory-name-that-is-much-longer-than-the-hundred-bytes-a-plain-ustar-header-"
    "can-hold-for-a-name";

static void make_tree(void) {
  mkdirs(P("src/app/bin"));
  mkdirs(P("src/app/etc/secret.d"));
  mkdirs(P("src/app/deep/%s", LONG_DIR));
  write_file(P("src/app/bin/run"), "#!/bin/sh\necho hi\n", 18, 0755);
  write_file(P("src/app/etc/conf"), "key=value\n", 10, 0640);
  T_ASSERT(chmod(P("src/app/etc/secret.d"), 0700) == 0);
  T_ASSERT(symlink("etc/conf", P("src/app/link")) == 0);
  T_ASSERT(symlink("/etc/hostname", P("src/app/abs")) == 0);
  write_file(P("src/app/hard1"), "same inode\n", 11, 0600);
  T_ASSERT(link(P("src/app/hard1"), P("src/app/hard2")) == 0);
  write_file(P("src/app/deep/%s/file", LONG_DIR), "deep\n", 5, 0644);
  static char data[1 << 20];
  fill_random(data, sizeof data, 7);
  write_file(P("src/app/data.bin"), data, sizeof data, 0644);
  write_file(P("src/top.txt"), "top\n", 4, 0600);
}

static void same_file(const char *a, const char *b) {
  size_t na = 0, nb = 0;
  char *x = read_file(a, &na), *y = read_file(b, &nb);
  if (!x || !y || na != nb || memcmp(x, y, na) != 0)
    t_fail(__FILE__, __LINE__, "%s and %s differ", a, b);
  free(x);
  free(y);
}

static void round_trip(const char *format, const char *file) {
  make_tree();
  LUA_FMT("local r = ok(A.create(T .. '/%s', {{name='app', path=T .. '/src/app'}, "
          "  {name='top.txt', path=T .. '/src/top.txt'}}, {format='%s'})) "
          "assert(r.entries == 15, r.entries) "
          "assert(r.bytes == 18 + 10 + 11 + 5 + (1 << 20) + 4, r.bytes) "
          "assert(require('ctcli.model.pkgtool').compression(T .. '/%s') == '%s') "
          "local l = ok(A.list(T .. '/%s')) "
          "local got = {} for i, e in ipairs(l) do got[i] = e.name .. ':' .. e.type end "
          "local want = {'app/:dir', 'app/abs:link', 'app/bin/:dir', 'app/bin/run:file', "
          "  'app/data.bin:file', 'app/deep/:dir', 'app/deep/%s/:dir', "
          "  'app/deep/%s/file:file', 'app/etc/:dir', 'app/etc/conf:file', "
          "  'app/etc/secret.d/:dir', 'app/hard1:file', 'app/hard2:hardlink', 'app/link:link', "
          "  'top.txt:file'} "
          "assert(table.concat(got, ' ') == table.concat(want, ' '), table.concat(got, ' ')) "
          "assert(l[2].link == '/etc/hostname' and l[13].link == 'app/hard1') "
          "return true",
          file, format, file, strcmp(format, "none") ? format : "tar", file, LONG_DIR, LONG_DIR);
  mkdirs(P("x"));
  LUA_FMT("local r = ok(A.extract(T .. '/%s', T .. '/x')) "
          "assert(r.entries == 15, r.entries) return true",
          file);
  same_file(P("src/app/bin/run"), P("x/app/bin/run"));
  same_file(P("src/app/etc/conf"), P("x/app/etc/conf"));
  same_file(P("src/app/data.bin"), P("x/app/data.bin"));
  same_file(P("src/top.txt"), P("x/top.txt"));
  same_file(P("src/app/deep/%s/file", LONG_DIR), P("x/app/deep/%s/file", LONG_DIR));
  T_ASSERT(mode_of(P("x/app/bin/run")) == 0755);
  T_ASSERT(mode_of(P("x/app/etc/conf")) == 0640);
  T_ASSERT(mode_of(P("x/app/etc/secret.d")) == 0700);
  T_ASSERT(mode_of(P("x/top.txt")) == 0600);
  char buf[256];
  ssize_t n = readlink(P("x/app/link"), buf, sizeof buf - 1);
  T_ASSERT(n == 8 && memcmp(buf, "etc/conf", 8) == 0);
  n = readlink(P("x/app/abs"), buf, sizeof buf - 1);
  T_ASSERT(n == 13 && memcmp(buf, "/etc/hostname", 13) == 0);
  struct stat h1, h2;
  T_ASSERT(stat(P("x/app/hard1"), &h1) == 0 && stat(P("x/app/hard2"), &h2) == 0);
  T_ASSERT(h1.st_ino == h2.st_ino && h1.st_nlink == 2);
  same_file(P("src/app/hard1"), P("x/app/hard2"));
  /* no temp file left beside the archive */
  EXPECT_CHILDREN(t_tmpdir(), "src", "x", file);
}

DEFINE_TEST(round_trip_zstd_keeps_modes_symlinks_and_hard_links) {
  round_trip("zstd", "out.tar.zst");
}

DEFINE_TEST(round_trip_gzip_keeps_modes_symlinks_and_hard_links) {
  round_trip("gzip", "out.tar.gz");
}

DEFINE_TEST(round_trip_uncompressed) { round_trip("none", "out.tar"); }

static void reproducible(const char *opts) {
  make_tree();
  LUA_FMT("local o = %s o.mtime = 1700000000 o.owner0 = true "
          "ok(A.create(T .. '/one', {{name='app', path=T .. '/src/app'}}, o)) return true",
          opts);
  /* everything an archive could pick up from the moment changes */
  struct timespec ts[2] = {{1111, 0}, {2222, 5}};
  T_ASSERT(utimensat(AT_FDCWD, P("src/app/etc/conf"), ts, 0) == 0);
  T_ASSERT(utimensat(AT_FDCWD, P("src/app"), ts, 0) == 0);
  T_ASSERT(lchown(P("src/app/bin/run"), 1234, 1234) == 0);
  /* and the clock: the second archive is made in a later second than the
     first, so a time taken from the clock would show */
  time_t first = time(NULL);
  while (time(NULL) == first) usleep(10000);
  LUA_FMT("local o = %s o.mtime = 1700000000 o.owner0 = true "
          "ok(A.create(T .. '/two', {{name='app', path=T .. '/src/app'}}, o)) return true",
          opts);
  same_file(P("one"), P("two"));
  mkdirs(P("x"));
  LUA_FMT("ok(A.extract(T .. '/two', T .. '/x', {preserve=true})) return true");
  struct stat st;
  T_ASSERT(stat(P("x/app/etc/conf"), &st) == 0 && st.st_mtime == 1700000000);
  T_ASSERT(stat(P("x/app/bin/run"), &st) == 0 && st.st_uid == 0 && st.st_gid == 0);
  LUA_FMT("for _, e in ipairs(ok(A.list(T .. '/two'))) do "
          "  assert(not e.name:find('PaxHeader'), e.name) end return true");
}

DEFINE_TEST(create_is_reproducible_with_mtime_and_owner0_zstd) {
  reproducible("{format='zstd'}");
}

DEFINE_TEST(create_is_reproducible_with_mtime_and_owner0_gzip) {
  reproducible("{format='gzip'}");
}

/* 3 MiB of text (compressible, several of zstd's 512 KiB jobs): each
   file's sha256 is that of what was archived, read once. */
DEFINE_TEST(create_hashes_what_it_archives) {
  make_tree();
  static char text[3 << 20];
  for (size_t i = 0; i < sizeof text; i++) text[i] = (char)('a' + (i * 7 + i / 4093) % 26);
  write_file(P("src/app/text"), text, sizeof text, 0644);
  LUA_FMT("local r = ok(A.create(T .. '/w', {{name='app', path=T .. '/src/app'}}, "
          "  {mtime=1700000000, owner0=true, sha256=true})) "
          "local h = require('ct').hash "
          "for _, f in ipairs({'text', 'data.bin', 'etc/conf', 'bin/run'}) do "
          "  assert(r.sha256['app/' .. f] == h.sha256_file(T .. '/src/app/' .. f), f) end "
          "assert((r.sha256['app/hard1'] ~= nil) ~= (r.sha256['app/hard2'] ~= nil)) "
          "assert(r.sha256['app/link'] == nil and r.sha256['app/bin'] == nil) "
          "assert(r.size < %d, r.size) "
          "local n = 0 for _, e in ipairs(ok(A.list(T .. '/w'))) do n = n + 1 end "
          "assert(n == r.entries) "
          "local plain = ok(A.create(T .. '/p', {{name='app', path=T .. '/src/app'}})) "
          "assert(plain.sha256 == nil) return true",
          (1 << 20) + (2 << 20) / 4);
  mkdirs(P("x"));
  LUA_FMT("ok(A.extract(T .. '/w', T .. '/x')) return true");
  same_file(P("x/app/text"), P("src/app/text"));
}

/* stored = true: that entry's data in raw zstd frames between the
   compressed ones. 3 MiB of text stored takes its full size (more than
   zstd's 128 KiB blocks, so several raw blocks); the same text not stored
   is compressed; both read back byte for byte, hashed as archived, and
   an empty stored file and two stored entries in a row change nothing. */
DEFINE_TEST(create_writes_stored_entries_in_raw_zstd_frames) {
  make_tree();
  static char text[3 << 20];
  for (size_t i = 0; i < sizeof text; i++) text[i] = (char)('a' + (i * 7 + i / 4093) % 26);
  write_file(P("src/stored"), text, sizeof text, 0644);
  write_file(P("src/packed"), text, sizeof text, 0644);
  write_file(P("src/empty"), "", 0, 0644);
  LUA_FMT("local function entries(stored) return { "
          "  {name='app', path=T .. '/src/app'}, "
          "  {name='stored', path=T .. '/src/stored', stored=stored}, "
          "  {name='empty', path=T .. '/src/empty', stored=stored}, "
          "  {name='top.txt', path=T .. '/src/top.txt', stored=stored}, "
          "  {name='packed', path=T .. '/src/packed'}} end "
          "local s = ok(A.create(T .. '/s.tar.zst', entries(true), {sha256=true})) "
          "local c = ok(A.create(T .. '/c.tar.zst', entries(false))) "
          "assert(s.size > c.size + %d and s.size < c.size + %d + 65536, s.size .. ' ' .. c.size) "
          "assert(s.sha256.stored == require('ct').hash.sha256_file(T .. '/src/stored')) "
          "assert(require('ctcli.model.pkgtool').compression(T .. '/s.tar.zst') == 'zstd') "
          "local n = 0 for _, e in ipairs(ok(A.list(T .. '/s.tar.zst', {digests=true}))) do "
          "  n = n + 1 if e.name == 'packed' then assert(e.sha256 == s.sha256.stored) end end "
          "assert(n == s.entries, n) "
          "assert(ok(A.create(T .. '/g.tar.gz', entries(true), {format='gzip'})).size < %d) "
          "assert(not pcall(A.create, T .. '/bad', {{name='x', path=T .. '/src/top.txt', stored='yes'}})) "
          "return true",
          (int)(sizeof text) * 3 / 4, (int)(sizeof text), (int)(sizeof text) / 2);
  mkdirs(P("x"));
  LUA_FMT("ok(A.extract(T .. '/s.tar.zst', T .. '/x')) return true");
  same_file(P("x/stored"), P("src/stored"));
  same_file(P("x/packed"), P("src/packed"));
  same_file(P("x/empty"), P("src/empty"));
  same_file(P("x/top.txt"), P("src/top.txt"));
  same_file(P("x/app/data.bin"), P("src/app/data.bin"));
}

DEFINE_TEST(create_adds_a_directory_contents_at_the_top_and_reports_progress) {
  make_tree();
  LUA_FMT("local last = 0 "
          "local r = ok(A.create(T .. '/flat.tar.zst', {{name='.', path=T .. '/src'}}, "
          "  {progress=function(b) last = b end})) "
          "assert(last == r.bytes and r.size > 0, last) "
          "local names = {} for _, e in ipairs(ok(A.list(T .. '/flat.tar.zst'))) do "
          "names[#names + 1] = e.name end "
          "assert(names[1] == 'app/' and names[#names] == 'top.txt', table.concat(names, ' ')) "
          "return true");
}

DEFINE_TEST(create_fails_cleanly_and_removes_its_temp_file) {
  mkdirs(P("src"));
  write_file(P("src/f"), "data", 4, 0644);
  LUA_FMT("local _, e1 = refused({'missing'}, A.create(T .. '/out.tar.zst', "
          "  {{name='x', path=T .. '/missing'}})) "
          "assert(e1 == E.ENOENT) "
          "local _, e2 = refused({'../x'}, A.create(T .. '/out.tar.zst', "
          "  {{name='../x', path=T .. '/src'}})) "
          "assert(e2 == E.EINVAL) "
          "refused({'only a directory'}, A.create(T .. '/out.tar.zst', "
          "  {{name='', path=T .. '/src/f'}})) "
          "refused({'nodir'}, A.create(T .. '/nodir/out.tar.zst', "
          "  {{name='x', path=T .. '/src'}})) "
          "return true");
  EXPECT_CHILDREN(t_tmpdir(), "src");
}

/* before/after run around their own entry only, in order: what a backup
   needs to pause one app while its data is read and no longer. A `before`
   that refuses fails the call without an `after`, and the temp file goes. */
DEFINE_TEST(create_runs_each_entry_before_and_after_around_its_own_files) {
  mkdirs(P("src/a"));
  mkdirs(P("src/b"));
  write_file(P("src/a/f"), "aaaa", 4, 0644);
  write_file(P("src/b/g"), "bb", 2, 0644);
  LUA_FMT("local log = {} "
          "local function touch(p) local f = assert(io.open(T .. p, 'w')) f:close() end "
          "local function mark(what, file) return function() "
          "  log[#log + 1] = what if file then touch(file) end return true end end "
          "ok(A.create(T .. '/o.tar', {"
          "  {name='a', path=T .. '/src/a', before=mark('a+', '/src/a/early'), after=mark('a-', '/src/a/late')},"
          "  {name='plain', path=T .. '/src/b'},"
          "  {name='b', path=T .. '/src/b', before=mark('b+'), after=mark('b-')}}, {format='none'})) "
          "assert(table.concat(log, ' ') == 'a+ a- b+ b-', table.concat(log, ' ')) "
          "local names = {} for _, e in ipairs(ok(A.list(T .. '/o.tar'))) do names[#names + 1] = e.name end "
          "assert(table.concat(names, ' ') == 'a/ a/early a/f plain/ plain/g b/ b/g', table.concat(names, ' ')) "
          "local after = false "
          "local _, e = refused({'o2.tar', 'b', 'frozen'}, A.create(T .. '/o2.tar', {"
          "  {name='a', path=T .. '/src/a'},"
          "  {name='b', path=T .. '/src/b', before=function() return nil, 'frozen' end,"
          "   after=function() after = true return true end}}, {format='none'})) "
          "assert(e == E.ECANCELED and not after) "
          "refused({'o3.tar', 'a', \"'after'\"}, A.create(T .. '/o3.tar', {"
          "  {name='a', path=T .. '/src/a', after=function() return false end}}, {format='none'})) "
          "assert(not pcall(A.create, T .. '/o4.tar', {{name='a', path=T .. '/src/a', before=1}})) "
          "return true");
  EXPECT_CHILDREN(t_tmpdir(), "src", "o.tar");
}

DEFINE_TEST(create_does_not_archive_its_own_output) {
  mkdirs(P("src"));
  write_file(P("src/f"), "data", 4, 0644);
  LUA_FMT("local r = ok(A.create(T .. '/src/self.tar.gz', {{name='s', path=T .. '/src'}}, "
          "  {format='gzip'})) "
          "assert(r.entries == 2, r.entries) return true");
}

/* A mount inside a tree being archived (a bind mount an app cannot make,
   a host can) is not the tree's: create leaves it out with a warning, so a
   backup never carries the files beneath it. */
DEFINE_TEST(create_leaves_out_a_mount_inside_the_tree) {
  mkdirs(P("host"));
  write_file(P("host/secret"), "host", 4, 0600);
  mkdirs(P("src/mnt"));
  write_file(P("src/f"), "data", 4, 0644);
  if (mount(P("host"), P("src/mnt"), NULL, MS_BIND, NULL) != 0) {
    char why[200];
    snprintf(why, sizeof why, "cannot bind-mount (%s%s)", strerror(errno), geteuid() != 0 ? ", not root" : "");
    t_skip(why);
  }
  snprintf(mounted, sizeof mounted, "%s", P("src/mnt"));
  atexit(unmount_small);
  LUA_FMT("ok(A.create(T .. '/m.tar', {{name='s', path=T .. '/src'}}, {format='none'})) "
          "local names = {} for _, e in ipairs(ok(A.list(T .. '/m.tar'))) do names[#names + 1] = e.name end "
          "table.sort(names) assert(table.concat(names, ' ') == 's/ s/f', table.concat(names, ' ')) "
          "return true");
  unmount_small();
}

/* An app can make a path in its own tree longer than PATH_MAX (mkdirat one
   level at a time). A backup leaves such an entry out, as it leaves out what
   an app swapped or removed: failing would let any app stop the operator's
   backups (and every upgrade, which backs up first), and a longer name could
   not be restored anyway. */
DEFINE_TEST(create_leaves_out_a_path_too_long_for_the_host) {
  mkdirs(P("src"));
  write_file(P("src/f"), "data", 4, 0644);
  int fd = open(P("src"), O_RDONLY | O_DIRECTORY);
  T_ASSERT(fd >= 0);
  char comp[201];
  memset(comp, 'd', 200);
  comp[200] = '\0';
  for (int i = 0; i < 25; i++) { /* 5000 bytes of names */
    T_ASSERT(mkdirat(fd, comp, 0755) == 0);
    int next = openat(fd, comp, O_RDONLY | O_DIRECTORY);
    T_ASSERT(next >= 0);
    close(fd);
    fd = next;
  }
  int leaf = openat(fd, "deep", O_WRONLY | O_CREAT, 0644);
  T_ASSERT(leaf >= 0);
  close(leaf);
  close(fd);
  LUA_FMT("local r = ok(A.create(T .. '/deep.tar', {{name='s', path=T .. '/src'}}, {format='none'})) "
          "local names = {} for _, e in ipairs(ok(A.list(T .. '/deep.tar'))) do names[e.name] = true end "
          "assert(names['s/f'], 'the rest of the tree is archived') "
          "for n in pairs(names) do assert(#n < 4096, 'no name past PATH_MAX: ' .. #n) end "
          "return true");
  rmtree(P("src"));
}

/* An app names files in its writable layer as it likes, ".wh.<x>" and
   ".wh.." included (overlayfs reserves no name; its whiteouts are 0:0
   devices). In OCI form such a name would read back as a whiteout: of "x",
   which its own file "x" then collides with, or of no name at all, and
   either refused the whole restore of every backup holding that layer. A
   backup leaves those names out; the app's other files and real whiteouts
   come back. */
DEFINE_TEST(create_oci_leaves_out_an_app_file_named_like_a_whiteout) {
  if (geteuid() != 0) t_skip("mknod of a whiteout needs root");
  mkdirs(P("up/sub"));
  write_file(P("up/x"), "mine", 4, 0644);
  write_file(P("up/.wh.x"), "", 0, 0644);
  write_file(P("up/.wh.."), "", 0, 0644);
  write_file(P("up/.wh."), "", 0, 0644);
  write_file(P("up/sub/.wh..wh..opq"), "", 0, 0644);
  write_file(P("up/sub/keep"), "k", 1, 0644);
  T_ASSERT(mknod(P("up/gone"), S_IFCHR | 0600, makedev(0, 0)) == 0);
  mkdirs(P("restore"));
  LUA_FMT("ok(A.create(T .. '/up.tar', {{name='u', path=T .. '/up', whiteouts='oci'}}, {format='none'})) "
          "ok(A.extract(T .. '/up.tar', T .. '/restore', "
          "  {preserve=true, special='skip', whiteouts='overlay'})) "
          "local f = io.open(T .. '/restore/u/x', 'rb') assert(f, 'the app file x is restored') "
          "assert(f:read('a') == 'mine') f:close() "
          "assert(io.open(T .. '/restore/u/sub/keep', 'rb'), 'sub/keep is restored') "
          "return true");
  struct stat st;
  T_ASSERT(lstat(P("restore/u/gone"), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
  T_ASSERT(lstat(P("restore/u/x"), &st) == 0 && S_ISREG(st.st_mode));
  rmtree(P("up"));
  rmtree(P("restore"));
}

/* list reads every format extract reads, and the bytes of the files named
   in `read` (a hard link has none of its own), up to a limit. */
DEFINE_TEST(list_and_read) {
  struct member m[] = {{.name = "./manifest.json", .type = 'f', .mode = 0644},
                       {.name = "app/", .type = 'd', .mode = 0750},
                       {.name = "app/copy.json", .type = 'h', .link = "./manifest.json"},
                       {.name = "app/link", .type = 'l', .link = "../manifest.json"},
                       {.name = "app/big", .type = 'f', .size = 5000}};
  MAKE_ARCHIVE(P("pkg.tar"), "none", m);
  MAKE_ARCHIVE(P("pkg.tar.gz"), "gzip", m);
  MAKE_ARCHIVE(P("pkg.tar.zst"), "zstd", m);
  MAKE_ARCHIVE(P("pkg.tar.xz"), "xz", m);
  MAKE_ARCHIVE(P("pkg.tar.bz2"), "bzip2", m);
  LUA_FMT(
      "local want = 'content of ./manifest.json\\n' "
      "for _, f in ipairs{'pkg.tar', 'pkg.tar.gz', 'pkg.tar.zst', 'pkg.tar.xz', 'pkg.tar.bz2'} do "
      "  local p = T .. '/' .. f "
      "  local l = ok(A.list(p, {read = {['manifest.json'] = 1000, ['app/copy.json'] = 1000, "
      "    ['app/big'] = 5000, app = 10, ['app/link'] = 10}})) "
      "  assert(#l == 5) "
      "  assert(l[1].name == './manifest.json' and l[1].type == 'file') "
      "  assert(l[1].data == want, f) "
      "  assert(l[2].name == 'app/' and l[2].type == 'dir' and not l[2].data) "
      "  assert(l[3].type == 'hardlink' and l[3].link == './manifest.json' and not l[3].data) "
      "  assert(l[4].type == 'link' and l[4].link == '../manifest.json' and not l[4].data) "
      "  assert(l[5].type == 'file' and #l[5].data == 5000) "
      "  local _, e = refused({'app/big: 5000 bytes, more than the limit of 4999'}, "
      "    A.list(p, {read = {['app/big'] = 4999}})) "
      "  assert(e == E.EFBIG) "
      "  local n = 0 "
      "  l = ok(A.list(p, {stop = function(entry) n = n + 1 return entry.type == 'dir' end})) "
      "  assert(#l == 2 and n == 2) "
      "end return true");
}

DEFINE_TEST(list_shows_special_files_without_extracting_them) {
  struct member m[] = {{.name = "dev/null", .type = 'c'},
                       {.name = "dev/sda", .type = 'b'},
                       {.name = "run/pipe", .type = 'p'}};
  MAKE_ARCHIVE(P("special.tar"), "none", m);
  LUA_FMT("local l = ok(A.list(T .. '/special.tar')) "
          "assert(l[1].type == 'char' and l[2].type == 'block' and l[3].type == 'fifo') "
          "return true");
}

DEFINE_TEST(list_digests_stream_every_file) {
  lua_State *L = t_state();
  lua_pushstring(L, t_tmpdir());
  lua_setglobal(L, "T");
  T_LUA(L, "local ct = require('ct') "
           "assert(ct.fs.mkdir(T .. '/d/sub', 493, true)) "
           "local big = string.rep('0123456789abcdef', 400000) "
           "assert(ct.fs.write_atomic(T .. '/d/sub/big', big)) "
           "assert(ct.fs.write_atomic(T .. '/d/empty', '')) "
           "assert(ct.fs.symlink('sub/big', T .. '/d/link')) "
           "assert(ct.fs.link(T .. '/d/sub/big', T .. '/d/hard')) "
           "assert(ct.archive.create(T .. '/a.tar.zst', {{name = 'p', path = T .. '/d'}})) "
           "local seen = {} "
           "for _, e in ipairs(assert(ct.archive.list(T .. '/a.tar.zst', {digests = true}))) do "
           "  seen[e.name] = e end "
           "assert(seen['p/hard'].sha256 == ct.hash.sha256(big)) "
           "assert(seen['p/sub/big'].type == 'hardlink' and seen['p/sub/big'].link == 'p/hard') "
           "assert(seen['p/empty'].sha256 == ct.hash.sha256('')) "
           "for _, e in pairs(seen) do assert((e.sha256 ~= nil) == (e.type == 'file'), e.name) end "
           "local plain = assert(ct.archive.list(T .. '/a.tar.zst')) "
           "for _, e in ipairs(plain) do assert(e.sha256 == nil) end "
           "assert(not pcall(ct.archive.list, T .. '/a.tar.zst', 5)) "
           "return true");
}
