/* ct.archive.extract of OCI layers and the overlay mounts: real layer tars (built here with
   libarchive) extracted with and without an id mapping, hostile entries
   refused with nothing written outside dest, and two extracted layers plus
   an upper mounted with overlayfs show the merged view OCI defines. Each
   case runs in a mount namespace of its own, so a failing case leaves no
   mount behind on the host; the cases still unmount and check. */
#include "harness.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

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

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  if (system(cmd) != 0) t_fail(__FILE__, __LINE__, "%s failed", cmd);
}

/* Root, for chown, mknod and mount; a namespace of our own for the mounts. */
static void need_root(void) {
  if (geteuid() != 0) t_skip("needs root (chown, mknod, trusted.* xattrs, mount)");
  if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0)
    t_skip("cannot make a private mount namespace");
}

/* A layer member: 'f' file ("data of <name>"), 'd' dir, 'l' symlink, 'h' hard
   link, 'c' char device 1:3, 'p' fifo. */
struct m {
  const char *name;
  char type;
  unsigned mode;
  const char *link;
  long long id;
};

static void layer(const char *path, const char *filter, const struct m *m, size_t n) {
  struct archive *a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (!strcmp(filter, "gzip"))
    archive_write_add_filter_gzip(a);
  else if (!strcmp(filter, "zstd"))
    archive_write_add_filter_zstd(a);
  else
    archive_write_add_filter_none(a);
  if (archive_write_open_filename(a, path) != ARCHIVE_OK)
    t_fail(__FILE__, __LINE__, "cannot write %s", path);
  for (size_t i = 0; i < n; i++) {
    struct archive_entry *e = archive_entry_new();
    char data[600];
    snprintf(data, sizeof data, "data of %s", m[i].name);
    archive_entry_set_pathname(e, m[i].name);
    archive_entry_set_mtime(e, 1600000000, 0);
    archive_entry_set_uid(e, m[i].id);
    archive_entry_set_gid(e, m[i].id);
    size_t size = 0;
    switch (m[i].type) {
    case 'f':
      archive_entry_set_filetype(e, AE_IFREG);
      size = strlen(data);
      break;
    case 'd': archive_entry_set_filetype(e, AE_IFDIR); break;
    case 'l':
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_set_symlink(e, m[i].link);
      break;
    case 'h':
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_hardlink(e, m[i].link);
      break;
    case 'c':
      archive_entry_set_filetype(e, AE_IFCHR);
      archive_entry_set_rdev(e, makedev(1, 3));
      break;
    case 'p': archive_entry_set_filetype(e, AE_IFIFO); break;
    }
    archive_entry_set_perm(e, m[i].mode ? m[i].mode : m[i].type == 'd' ? 0755 : 0644);
    archive_entry_set_size(e, (la_int64_t)size);
    if (archive_write_header(a, e) != ARCHIVE_OK)
      t_fail(__FILE__, __LINE__, "header %s: %s", m[i].name, archive_error_string(a));
    if (size) archive_write_data(a, data, size);
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}
#define LAYER(path, filter, m) layer(path, filter, m, sizeof(m) / sizeof((m)[0]))

static lua_State *S(void) {
  lua_State *L = t_state();
  lua_pushstring(L, t_tmpdir());
  lua_setglobal(L, "T");
  T_LUA(L, "ct = require('ct')\n"
           "function ok(r, msg) if not r then error(msg, 2) end return r end\n"
           "function refused(needle, r, msg, err)\n"
           "  assert(r == nil, 'expected a failure')\n"
           "  assert(type(msg) == 'string' and msg:find(needle, 1, true), tostring(msg))\n"
           "  assert(math.type(err) == 'integer' and err > 0, 'no errno')\n"
           "end\n"
           "function st(p) return ok(ct.fs.lstat(p)) end\n"
           /* a layer as ctcli.store.layers extracts or applies it */
           "local function with(o, wh) o = o or {} o.preserve, o.whiteouts = true, wh return o end\n"
           "layer = {extract = function(s, d, o) return ct.archive.extract(s, d, with(o, 'overlay')) end,\n"
           "  apply = function(s, d, o) return ct.archive.extract(s, d, with(o, 'apply')) end}\n");
  return L;
}

static void lua_at(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void lua_at(int line, const char *fmt, ...) {
  char code[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(code, sizeof code, fmt, ap);
  va_end(ap);
  t_lua(S(), code, __FILE__, line);
}
#define LUA(...) lua_at(__LINE__, __VA_ARGS__)

static int is_whiteout(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

static int is_opaque(const char *path) {
  char v[4];
  return lgetxattr(path, "trusted.overlay.opaque", v, sizeof v) == 1 && v[0] == 'y';
}

static const struct m BASE[] = {
    {"./", 'd', 0, NULL, 0},
    {"bin/", 'd', 0, NULL, 0},
    {"bin/su", 'f', 04755, NULL, 0},
    {"bin/su-again", 'h', 0, "bin/su", 0},
    {"bin/sh", 'l', 0, "/bin/busybox", 0},
    {"home/app/", 'd', 0750, NULL, 1000},
    {"home/app/notes", 'f', 0600, NULL, 1000},
    {"a/", 'd', 0, NULL, 0},
    {"a/keep", 'f', 0, NULL, 0},
    {"a/gone", 'f', 0, NULL, 0},
    {"opq/", 'd', 0, NULL, 0},
    {"opq/old", 'f', 0, NULL, 0},
    {"dev/", 'd', 0, NULL, 0},
    {"dev/null", 'c', 0666, NULL, 0},
    {"run/fifo", 'p', 0, NULL, 0},
};

static const struct m TOP[] = {
    {"a/", 'd', 0, NULL, 0},
    {"a/.wh.gone", 'f', 0, NULL, 0},
    {"opq/", 'd', 0, NULL, 0},
    {"opq/.wh..wh..opq", 'f', 0, NULL, 0},
    {"opq/new", 'f', 0, NULL, 0},
    {"added", 'f', 0, NULL, 0},
};

/* d "/" rel, d absolute, in one of a few rotating buffers. */
static const char *J(const char *d, const char *rel) {
  static char bufs[4][1024];
  static int next;
  char *b = bufs[next++ % 4];
  snprintf(b, sizeof bufs[0], "%s/%s", d, rel);
  return b;
}

static void check_base(const char *d, uid_t shift) {
  struct stat su, again, home;
  T_ASSERT(lstat(J(d, "bin/su"), &su) == 0);
  T_ASSERT((su.st_mode & 07777) == 04755);
  T_ASSERT(su.st_uid == shift && su.st_gid == shift);
  T_ASSERT(lstat(J(d, "bin/su-again"), &again) == 0 && again.st_ino == su.st_ino);
  T_ASSERT(lstat(J(d, "home/app"), &home) == 0 && (home.st_mode & 07777) == 0750);
  T_ASSERT(home.st_uid == shift + 1000);
  char target[64] = "";
  T_ASSERT(readlink(J(d, "bin/sh"), target, sizeof target - 1) > 0);
  T_ASSERT_STR(target, "/bin/busybox");
  T_ASSERT(access(J(d, "dev/null"), F_OK) != 0 && access(J(d, "run/fifo"), F_OK) != 0);
  T_ASSERT(access(J(d, "run"), F_OK) != 0); /* a skipped entry makes nothing, not even its parent */
}

DEFINE_TEST(extract_gzip_zstd_plain) {
  need_root();
  const char *filters[] = {"gzip", "zstd", "none"};
  for (int i = 0; i < 3; i++) {
    LAYER(P("base.%s", filters[i]), filters[i], BASE);
    sh("mkdir -p %s", P("x-%s", filters[i]));
    LUA("local r = ok(layer.extract(T .. '/base.%s', T .. '/x-%s', {special = 'skip'}))\n"
        "assert(r.entries == 12, r.entries)\n"
        "assert(r.bytes > 0)\n"
        "table.sort(r.skipped)\n"
        "assert(#r.skipped == 2 and r.skipped[1] == 'dev/null' and r.skipped[2] == 'run/fifo')\n"
        "return true",
        filters[i], filters[i]);
    check_base(P("x-%s", filters[i]), 0);
  }
  LAYER(P("top.tar"), "none", TOP);
  sh("mkdir -p %s", P("top"));
  LUA("local r = ok(layer.extract(T .. '/top.tar', T .. '/top')) assert(r.whiteouts == 1) return true");
  T_ASSERT(is_whiteout(P("top/a/gone")));
  T_ASSERT(is_opaque(P("top/opq")) && !is_opaque(P("top/a")));
  T_ASSERT(access(P("top/opq/.wh..wh..opq"), F_OK) != 0 && access(P("top/opq/new"), F_OK) == 0);
  /* over what is there: refused */
  LUA("refused('refusing to replace', layer.extract(T .. '/base.none', T .. '/x-none', {special = 'skip'}))\n"
      "return true");
}

/* Special files are the caller's policy: refused unless it says skip. */
DEFINE_TEST(extract_refuses_special_files_by_default) {
  need_root();
  LAYER(P("base.tar"), "none", BASE);
  sh("mkdir -p %s %s", P("r1"), P("r2"));
  LUA("refused('refusing a device node', layer.extract(T .. '/base.tar', T .. '/r1'))\n"
      "refused('refusing a device node', layer.apply(T .. '/base.tar', T .. '/r2', {special = 'refuse'}))\n"
      "return true");
}

DEFINE_TEST(extract_with_idmap) {
  need_root();
  LAYER(P("base.tar.gz"), "gzip", BASE);
  sh("mkdir -p %s", P("x"));
  LUA("ok(layer.extract(T .. '/base.tar.gz', T .. '/x', {special = 'skip', idmap = {\n"
      "  outside = 200000, size = 65536}}))\n"
      "return true");
  check_base(P("x"), 200000);
  struct stat sh_st;
  T_ASSERT(lstat(P("x/bin/sh"), &sh_st) == 0 && sh_st.st_uid == 200000); /* the link itself */
  /* an owner no segment maps is refused */
  static const struct m STRAY[] = {{"f", 'f', 0, NULL, 70000}};
  LAYER(P("stray.tar"), "none", STRAY);
  sh("mkdir -p %s", P("y"));
  LUA("refused('outside the id mapping', layer.extract(T .. '/stray.tar', T .. '/y',\n"
      "  {idmap = {outside = 200000, size = 65536}})) return true");
}

DEFINE_TEST(extract_refuses_escapes) {
  need_root();
  sh("mkdir -p %s %s", P("outside"), P("box"));
  static const struct m DOTDOT[] = {{"a/../../outside/x", 'f', 0, NULL, 0}};
  static const struct m ABS[] = {{"/etc/evil", 'f', 0, NULL, 0}};
  char out[600];
  snprintf(out, sizeof out, "%s", P("outside"));
  const struct m SYMESC[] = {{"esc", 'l', 0, out, 0}, {"esc/x", 'f', 0, NULL, 0}};
  const struct m SYMREL[] = {{"esc", 'l', 0, "../outside", 0}, {"esc/x", 'f', 0, NULL, 0}};
  static const struct m HARDOUT[] = {{"h", 'h', 0, "../outside/secret", 0}};
  const struct m HARDSYM[] = {{"esc", 'l', 0, out, 0}, {"h", 'h', 0, "esc/secret", 0}};
  static const struct m DUP[] = {{"a", 'f', 0, NULL, 0}, {"./a", 'f', 0, NULL, 0}};
  static const struct m WHDOT[] = {{".wh...", 'f', 0, NULL, 0}};
  sh("echo secret > %s", P("outside/secret"));
  struct {
    const char *tar, *needle;
    const struct m *m;
    size_t n;
  } cases[] = {
      {"dotdot", "'..'", DOTDOT, 1}, {"abs", "absolute", ABS, 1},
      {"symesc", "symlink", SYMESC, 2}, {"symrel", "symlink", SYMREL, 2},
      {"hardout", "'..'", HARDOUT, 1}, {"hardsym", "symlink", HARDSYM, 2},
      {"dup", "second entry", DUP, 2}, {"whdot", "whiteout", WHDOT, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    layer(P("%s.tar", cases[i].tar), "none", cases[i].m, cases[i].n);
    for (int apply = 0; apply < 2; apply++) {
      sh("rm -rf %s && mkdir %s", P("box/d"), P("box/d"));
      LUA("refused('%s', layer.%s(T .. '/%s.tar', T .. '/box/d')) return true", cases[i].needle,
          apply ? "apply" : "extract", cases[i].tar);
    }
    /* outside holds only what the test put there */
    LUA("local n = ok(ct.fs.dir(T .. '/outside')) assert(#n == 1 and n[1] == 'secret', table.concat(n, ' '))\n"
        "local b = ok(ct.fs.dir(T .. '/box')) assert(#b == 1) return true");
  }
}

DEFINE_TEST(extract_limits_and_progress) {
  need_root();
  LAYER(P("base.tar"), "none", BASE);
  sh("mkdir -p %s %s %s", P("a"), P("b"), P("c"));
  LUA("refused('max_entries', layer.extract(T .. '/base.tar', T .. '/a', {special = 'skip', max_entries = 5}))\n"
      "refused('max_bytes', layer.extract(T .. '/base.tar', T .. '/b', {special = 'skip', max_bytes = 10}))\n"
      "local calls, last = 0, 0\n"
      "local r = ok(layer.extract(T .. '/base.tar', T .. '/c', {special = 'skip', check_space = true,\n"
      "  progress = function(done) calls = calls + 1 last = done end}))\n"
      "assert(calls >= 1 and last == r.bytes, last)\n"
      "return true");
}

/* Two layers and an upper under overlayfs, in `at` (a directory of the
   temp dir, or a tmpfs mounted there). */
static void overlay_case(const char *at) {
  LAYER(P("base.tar.zst"), "zstd", BASE);
  LAYER(P("top.tar.gz"), "gzip", TOP);
  sh("mkdir -p %s/l1 %s/l2 %s/upper %s/work %s/merged", at, at, at, at, at);
  LUA("local at = [[%s]]\n"
      "ok(layer.extract(T .. '/base.tar.zst', at .. '/l1', {special = 'skip'}))\n"
      "ok(layer.extract(T .. '/top.tar.gz', at .. '/l2'))\n"
      "assert(not ct.fs.mounted(at .. '/merged'))\n"
      "ok(require('ctcli.store.layers').mount_overlay{lower = {at .. '/l2', at .. '/l1'}, upper = at .. '/upper',\n"
      "  work = at .. '/work', target = at .. '/merged'})\n"
      "assert(ct.fs.mounted(at .. '/merged'))\n"
      "local m = at .. '/merged'\n"
      "assert(not ct.fs.exists(m .. '/a/gone'), 'a whited-out file shows')\n"
      "assert(ct.fs.exists(m .. '/a/keep') and ct.fs.exists(m .. '/added'))\n"
      "assert(not ct.fs.exists(m .. '/opq/old'), 'the opaque dir shows the lower content')\n"
      "assert(ct.fs.exists(m .. '/opq/new'))\n"
      "assert(st(m .. '/bin/su').mode == 2541)\n" /* 04755 */
      "ok(ct.fs.write_atomic(m .. '/written', 'hello'))\n"
      "ok(ct.fs.unlink(m .. '/a/keep'))\n"
      "return true",
      at);
  char path[1024];
  snprintf(path, sizeof path, "%s/upper/written", at);
  T_ASSERT(access(path, F_OK) == 0);
  snprintf(path, sizeof path, "%s/upper/a/keep", at);
  T_ASSERT(is_whiteout(path));
  snprintf(path, sizeof path, "%s/l1/a/keep", at);
  T_ASSERT(access(path, F_OK) == 0); /* the lower is untouched */
  LUA("local at = [[%s]]\n"
      "ok(ct.fs.umount(at .. '/merged'))\n"
      "assert(not ct.fs.mounted(at .. '/merged'))\n"
      "refused('umount', ct.fs.umount(at .. '/merged'))\n"
      "assert(#ok(ct.fs.dir(at .. '/merged')) == 0)\n"
      "return true",
      at);
}

DEFINE_TEST(overlay_merged_view) {
  need_root();
  overlay_case(P("ovl"));
}

DEFINE_TEST(overlay_on_tmpfs) {
  need_root();
  sh("mkdir -p %s", P("tmpfs"));
  if (mount("tmpfs", P("tmpfs"), "tmpfs", 0, "size=16m") != 0) t_fail(__FILE__, __LINE__, "mount tmpfs");
  overlay_case(P("tmpfs"));
  LUA("ok(ct.fs.umount(T .. '/tmpfs')) assert(not ct.fs.mounted(T .. '/tmpfs')) return true");
}

/* Lowers whose absolute paths overflow mount(2)'s page go relative. */
DEFINE_TEST(overlay_many_long_lowers) {
  need_root();
  LUA("local dir = T .. '/' .. string.rep('d', 100)\n"
      "ok(ct.fs.mkdir(dir))\n"
      "local lower = {}\n"
      "for i = 1, 40 do\n"
      "  local l = string.format('%%s/%%03d%%s', dir, i, string.rep('x', 80))\n"
      "  ok(ct.fs.mkdir(l)) ok(ct.fs.write_atomic(l .. '/f' .. i, tostring(i)))\n"
      "  lower[#lower + 1] = l\n"
      "end\n"
      "assert(#table.concat(lower, ':') > 4096)\n"
      "for _, d in ipairs({'u', 'w', 'm'}) do ok(ct.fs.mkdir(T .. '/' .. d)) end\n"
      "local cwd = io.popen('pwd'):read('l')\n"
      "ok(require('ctcli.store.layers').mount_overlay{lower = lower, upper = T .. '/u', work = T .. '/w',\n"
      "  target = T .. '/m'})\n"
      "assert(io.popen('pwd'):read('l') == cwd)\n"
      "assert(ct.fs.exists(T .. '/m/f1') and ct.fs.exists(T .. '/m/f40'))\n"
      "ok(ct.fs.umount(T .. '/m', {detach = true}))\n"
      "assert(not ct.fs.mounted(T .. '/m'))\n"
      "refused('cannot carry', require('ctcli.store.layers').mount_overlay{lower = {T .. '/a,b'}, upper = T .. '/u',\n"
      "  work = T .. '/w', target = T .. '/m'})\n"
      "return true");
}

/* The no-overlay copy: layers applied in order give the merged view. */
DEFINE_TEST(apply_layers_in_order) {
  need_root();
  LAYER(P("base.tar"), "none", BASE);
  LAYER(P("top.tar"), "none", TOP);
  /* opaque marker after an entry of its own layer: that entry stays */
  static const struct m LATE[] = {
      {"opq/late", 'f', 0, NULL, 0},  {"opq/.wh..wh..opq", 'f', 0, NULL, 0},
      {"a", 'f', 0, NULL, 0}, /* a file replaces the directory a */
      {"added/", 'd', 0700, NULL, 0}, /* a directory replaces the file added */
      {"bin/", 'd', 0711, NULL, 0},   /* a directory on a directory: kept, mode updated */
      {"home/.wh.app", 'f', 0, NULL, 0}, /* a whiteout of a tree */
      {"nowhere/.wh.x", 'f', 0, NULL, 0}, /* hides nothing, makes nothing */
  };
  LAYER(P("late.tar"), "none", LATE);
  sh("mkdir -p %s", P("root"));
  LUA("ok(layer.apply(T .. '/base.tar', T .. '/root', {special = 'skip'}))\n"
      "local r = ok(layer.apply(T .. '/top.tar', T .. '/root'))\n"
      "assert(r.whiteouts == 1 and #r.skipped == 0)\n"
      "local d = T .. '/root'\n"
      "assert(not ct.fs.exists(d .. '/a/gone') and ct.fs.exists(d .. '/a/keep'))\n"
      "assert(not ct.fs.exists(d .. '/opq/old') and ct.fs.exists(d .. '/opq/new'))\n"
      "assert(ct.fs.exists(d .. '/added') and ct.fs.exists(d .. '/bin/su'))\n"
      "ok(layer.apply(T .. '/late.tar', d))\n"
      "local names = ok(ct.fs.dir(d .. '/opq'))\n"
      "assert(#names == 1 and names[1] == 'late', table.concat(names, ' '))\n"
      "assert(st(d .. '/a').type == 'file' and st(d .. '/added').type == 'dir')\n"
      "assert(st(d .. '/bin').mode == tonumber('711', 8) and ct.fs.exists(d .. '/bin/su'))\n"
      "assert(st(d .. '/bin/su').mode == tonumber('4755', 8))\n"
      "assert(not ct.fs.exists(d .. '/home/app') and ct.fs.exists(d .. '/home'))\n"
      "assert(not ct.fs.exists(d .. '/nowhere'))\n"
      "return true");
}

/* A tree an app wrote may hold symlinks anywhere: apply never follows one. */
DEFINE_TEST(apply_never_follows_dest_symlinks) {
  need_root();
  sh("mkdir -p %s %s/sub && echo keep > %s/sub/file", P("root"), P("outside"), P("outside"));
  char out[600];
  snprintf(out, sizeof out, "%s", P("outside"));
  if (symlink(out, P("root/etc")) != 0 || symlink(out, P("root/gone")) != 0 ||
      symlink(out, P("root/dir")) != 0 || symlink(out, P("root/file")) != 0)
    t_fail(__FILE__, __LINE__, "symlink");
  static const struct m THROUGH[] = {{"etc/passwd", 'f', 0, NULL, 0}};
  static const struct m REPLACE[] = {
      {".wh.gone", 'f', 0, NULL, 0}, /* removes the link, not outside */
      {"dir/", 'd', 0, NULL, 0},     /* a real directory instead of the link */
      {"dir/x", 'f', 0, NULL, 0},
      {"file", 'f', 0, NULL, 0},     /* a file instead of the link, not written through it */
  };
  static const struct m OPQ_THROUGH[] = {{"etc/.wh..wh..opq", 'f', 0, NULL, 0}};
  static const struct m WH_THROUGH[] = {{"etc/.wh.sub", 'f', 0, NULL, 0}};
  LAYER(P("through.tar"), "none", THROUGH);
  LAYER(P("replace.tar"), "none", REPLACE);
  LAYER(P("opq.tar"), "none", OPQ_THROUGH);
  LAYER(P("wh.tar"), "none", WH_THROUGH);
  LUA("local d = T .. '/root'\n"
      "refused('symlink', layer.apply(T .. '/through.tar', d))\n"
      "refused('symlink', layer.apply(T .. '/opq.tar', d))\n"
      "refused('symlink', layer.apply(T .. '/wh.tar', d))\n"
      "ok(layer.apply(T .. '/replace.tar', d))\n"
      "assert(not ct.fs.exists(d .. '/gone'))\n"
      "assert(st(d .. '/dir').type == 'dir' and st(d .. '/file').type == 'file')\n"
      "local n = ok(ct.fs.dir(T .. '/outside'))\n"
      "assert(#n == 1 and n[1] == 'sub', table.concat(n, ' '))\n"
      "assert(ok(ct.fs.read(T .. '/outside/sub/file')) == 'keep\\n')\n"
      "return true");
}

/* The layers under overlayfs and the same layers applied in order are one
   tree to tree_digest; a change of content, mode or opaque flag is not. */
DEFINE_TEST(tree_digest_merged_equals_applied) {
  need_root();
  LAYER(P("base.tar"), "none", BASE);
  LAYER(P("top.tar"), "none", TOP);
  sh("mkdir -p %s %s %s %s", P("l1"), P("l2"), P("copy"), P("m"));
  LUA("ok(layer.extract(T .. '/base.tar', T .. '/l1', {special = 'skip'}))\n"
      "ok(layer.extract(T .. '/top.tar', T .. '/l2'))\n"
      "ok(layer.apply(T .. '/base.tar', T .. '/copy', {special = 'skip'}))\n"
      "ok(layer.apply(T .. '/top.tar', T .. '/copy'))\n"
      "ok(require('ctcli.store.layers').mount_overlay{lower = {T .. '/l2', T .. '/l1'}, target = T .. '/m'})\n"
      "local merged = ok(ct.fs.tree_digest(T .. '/m'))\n"
      "ok(ct.fs.umount(T .. '/m'))\n"
      "local copy = ok(ct.fs.tree_digest(T .. '/copy'))\n"
      "assert(merged:match('^sha256:%%x+$') and #merged == 71, merged)\n"
      "assert(merged == copy, merged .. ' ~= ' .. copy)\n"
      "assert(ok(ct.fs.tree_digest(T .. '/copy')) == copy)\n"
      "local l2 = ok(ct.fs.tree_digest(T .. '/l2'))\n"
      "ok(ct.fs.write_atomic(T .. '/copy/a/keep', 'changed'))\n"
      "local c2 = ok(ct.fs.tree_digest(T .. '/copy'))\n"
      "assert(c2 ~= copy)\n"
      "ok(ct.fs.chmod(T .. '/copy/a/keep', tonumber('600', 8)))\n"
      "assert(ok(ct.fs.tree_digest(T .. '/copy')) ~= c2)\n"
      "return l2");
  lua_State *L = S();
  char before[80];
  snprintf(before, sizeof before, "%s", lua_tostring(L, -1));
  lua_pop(L, 1);
  T_ASSERT(lremovexattr(P("l2/opq"), "trusted.overlay.opaque") == 0);
  LUA("assert(ok(ct.fs.tree_digest(T .. '/l2')) ~= '%s') return true", before);
  LUA("refused('No such file', ct.fs.tree_digest(T .. '/missing')) return true");
}

/* extract's tree_digest (each file hashed as written) is ct.fs.tree_digest
   of what it made: hard links, owners, setuid bits, symlinks, whiteouts,
   opaque directories, a sparse file (its holes hashed as the zeros they
   read as), and layers applied in order (names replaced, inodes reused). */
DEFINE_TEST(extract_tree_digest_is_the_walks) {
  need_root();
  LAYER(P("base.tar"), "none", BASE);
  LAYER(P("top.tar"), "none", TOP);
  struct archive *a = archive_write_new();
  archive_write_set_format_pax(a);
  archive_write_add_filter_none(a);
  T_ASSERT(archive_write_open_filename(a, P("sparse.tar")) == ARCHIVE_OK);
  struct archive_entry *e = archive_entry_new();
  archive_entry_set_pathname(e, "holes");
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0644);
  archive_entry_set_size(e, 3 << 20);
  archive_entry_sparse_add_entry(e, 1 << 20, 4);
  T_ASSERT(archive_write_header(a, e) == ARCHIVE_OK);
  T_ASSERT(archive_write_data(a, "data", 4) == 4);
  archive_entry_clear(e);
  archive_entry_set_pathname(e, "holes-again"); /* a hard link to a file whose digest is remembered */
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0644);
  archive_entry_set_hardlink(e, "holes");
  T_ASSERT(archive_write_header(a, e) == ARCHIVE_OK);
  archive_entry_free(e);
  archive_write_close(a);
  archive_write_free(a);
  sh("mkdir -p %s %s %s %s %s", P("l1"), P("l2"), P("s"), P("copy"), P("l2x"));
  LUA("local function same(stats, dir)\n"
      "  local walk = ok(ct.fs.tree_digest(dir))\n"
      "  assert(stats.tree == walk, tostring(stats.tree) .. ' ~= ' .. walk)\n"
      "end\n"
      "same(ok(layer.extract(T .. '/base.tar', T .. '/l1', {special = 'skip', tree_digest = true})), T .. '/l1')\n"
      "same(ok(layer.extract(T .. '/top.tar', T .. '/l2', {tree_digest = true})), T .. '/l2')\n"
      "same(ok(layer.extract(T .. '/sparse.tar', T .. '/s', {tree_digest = true})), T .. '/s')\n"
      "assert(st(T .. '/s/holes').size == 3 << 20 and st(T .. '/s/holes-again').nlink == 2)\n"
      "ok(layer.apply(T .. '/base.tar', T .. '/copy', {special = 'skip'}))\n"
      "same(ok(layer.apply(T .. '/top.tar', T .. '/copy', {tree_digest = true})), T .. '/copy')\n"
      "same(ok(layer.apply(T .. '/base.tar', T .. '/copy', {special = 'skip', tree_digest = true})), T .. '/copy')\n"
      "assert(ok(layer.extract(T .. '/top.tar', T .. '/l2x', {})).tree == nil)\n"
      "return true");
}

/* An upper an app wrote: Dir:walk shows its whiteouts and opaque
   directories; a backup writes them as OCI entries and a restore with
   whiteouts = "overlay" gives the same tree back. */
DEFINE_TEST(upper_walk_and_oci_round_trip) {
  need_root();
  LAYER(P("base.tar"), "none", BASE);
  sh("mkdir -p %s %s %s %s %s", P("l1"), P("upper"), P("work"), P("m"), P("restored"));
  LUA("ok(layer.extract(T .. '/base.tar', T .. '/l1', {special = 'skip'}))\n"
      "ok(require('ctcli.store.layers').mount_overlay{lower = {T .. '/l1'}, upper = T .. '/upper', work = T .. '/work',\n"
      "  target = T .. '/m'})\n"
      "local m = T .. '/m'\n"
      "ok(ct.fs.unlink(m .. '/a/gone'))\n"
      "ok(ct.fs.rmtree(m .. '/opq')) ok(ct.fs.mkdir(m .. '/opq')) ok(ct.fs.write_atomic(m .. '/opq/mine', 'x'))\n"
      "ok(ct.fs.write_atomic(m .. '/new', 'new'))\n"
      "ok(ct.fs.symlink('/etc', m .. '/link'))\n"
      "ok(ct.fs.umount(m))\n"
      "return true");
  /* a device node an app made in its upper: left out of a backup */
  T_ASSERT(mknod(P("upper/dev-null"), S_IFCHR | 0666, makedev(1, 3)) == 0);
  LUA("local d <close> = ok(ct.fs.opendir(T .. '/upper'))\n"
      "local by = {}\n"
      "for _, e in ipairs(ok(d:walk(''))) do by[e.path] = e end\n"
      "assert(by['a/gone'].type == 'char' and by['a/gone'].rdev == 0, 'no whiteout')\n"
      "assert(by['opq'].type == 'dir' and by['opq'].opaque and not by['a'].opaque)\n"
      "assert(by['opq/mine'].type == 'file' and by['opq/mine'].size == 1)\n"
      "assert(by['new'] and by['link'].type == 'link' and not by['link/passwd'])\n"
      "assert(by['new'].mtime == ct.fs.lstat(T .. '/upper/new').mtime and by['new'].mtime_nsec)\n"
      "assert(#ok(d:walk('opq')) == 1 and ok(d:walk('opq'))[1].path == 'mine')\n"
      "refused('not allowed', d:walk('../x'))\n"
      "refused('symlink', d:walk('link'))\n"
      "local want = ok(ct.fs.tree_digest(T .. '/upper'))\n"
      "ok(ct.archive.create(T .. '/upper.tar', {{name = 'upper', path = T .. '/upper',\n"
      "  whiteouts = 'oci'}}, {format = 'none'}))\n"
      "local names = {}\n"
      "for _, e in ipairs(ok(ct.archive.list(T .. '/upper.tar'))) do names[e.name] = e end\n"
      "assert(names['upper/a/.wh.gone'] and names['upper/a/.wh.gone'].type == 'file')\n"
      "assert(names['upper/opq/.wh..wh..opq'] and not names['upper/a/gone'])\n"
      "assert(not names['upper/dev-null'])\n"
      "ok(ct.fs.unlink(T .. '/upper/dev-null'))\n"
      "want = ok(ct.fs.tree_digest(T .. '/upper'))\n"
      "ok(ct.archive.extract(T .. '/upper.tar', T .. '/restored', {preserve = true, whiteouts = 'overlay'}))\n"
      "local got = ok(ct.fs.tree_digest(T .. '/restored/upper'))\n"
      "assert(got == want, got .. ' ~= ' .. want)\n"
      "-- without the option a whiteout stays the OCI file it is in the archive\n"
      "ok(ct.fs.mkdir(T .. '/plain'))\n"
      "ok(ct.archive.extract(T .. '/upper.tar', T .. '/plain', {preserve = true}))\n"
      "assert(st(T .. '/plain/upper/a/.wh.gone').type == 'file')\n"
      "return true");
  T_ASSERT(is_whiteout(P("restored/upper/a/gone")) && is_opaque(P("restored/upper/opq")));
}

/* A file capability (v2, as images carry it) works for the mapped root
   only as v3 with that root's id: extract with an idmap converts it. */
DEFINE_TEST(extract_maps_file_capabilities) {
  need_root();
  struct archive *a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_add_filter_none(a);
  if (archive_write_open_filename(a, P("caps.tar")) != ARCHIVE_OK) t_fail(__FILE__, __LINE__, "open");
  struct archive_entry *e = archive_entry_new();
  archive_entry_set_pathname(e, "ping");
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0755);
  archive_entry_set_size(e, 0);
  /* v2, effective, cap_net_raw (13) permitted */
  unsigned char v2[20] = {0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00};
  archive_entry_xattr_add_entry(e, "security.capability", v2, sizeof v2);
  archive_entry_xattr_add_entry(e, "trusted.overlay.redirect", "/etc", 4);
  archive_entry_xattr_add_entry(e, "user.note", "hi", 2);
  archive_write_header(a, e);
  archive_entry_free(e);
  archive_write_close(a);
  archive_write_free(a);
  sh("mkdir -p %s %s", P("host"), P("mapped"));
  LUA("ok(layer.extract(T .. '/caps.tar', T .. '/host'))\n"
      "ok(layer.extract(T .. '/caps.tar', T .. '/mapped', {idmap = {outside = 300000, size = 65536}}))\n"
      "return true");
  unsigned char got[32];
  T_ASSERT(getxattr(P("host/ping"), "security.capability", got, sizeof got) == 20);
  T_ASSERT(memcmp(got, v2, 20) == 0);
  T_ASSERT(getxattr(P("mapped/ping"), "security.capability", got, sizeof got) == 24);
  T_ASSERT(got[3] == 0x03 && got[0] == 0x01 && got[5] == 0x20);
  unsigned rootid = got[20] | got[21] << 8 | got[22] << 16 | (unsigned)got[23] << 24;
  T_ASSERT(rootid == 300000);
  T_ASSERT(getxattr(P("mapped/ping"), "user.note", got, sizeof got) == 2);
  T_ASSERT(getxattr(P("mapped/ping"), "trusted.overlay.redirect", got, sizeof got) < 0);
}
