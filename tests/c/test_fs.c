/* ct.fs: every function against the real filesystem of a temp dir. */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

/* T_tmpdir()/rel in one of a few rotating buffers. */
static const char *tp(const char *rel) {
  static char bufs[4][PATH_MAX];
  static int next;
  char *b = bufs[next++ % 4];
  snprintf(b, PATH_MAX, "%s/%s", t_tmpdir(), rel);
  return b;
}

static void set_errno_const(lua_State *L, const char *name, int value) {
  lua_pushinteger(L, value);
  lua_setfield(L, -2, name);
}

/* A state with globals: fs, T (the temp dir), P(rel), E (errno values),
   W(path, data), R(path), and fails(path, errno|nil, ok, msg, code) which
   checks the nil, msg, errno shape with the path in the message. */
static lua_State *fs_state(void) {
  lua_State *L = t_state();
  lua_pushstring(L, t_tmpdir());
  lua_setglobal(L, "T");
  lua_newtable(L);
  set_errno_const(L, "ENOENT", ENOENT);
  set_errno_const(L, "EEXIST", EEXIST);
  set_errno_const(L, "ENOTDIR", ENOTDIR);
  set_errno_const(L, "EISDIR", EISDIR);
  set_errno_const(L, "EINVAL", EINVAL);
  set_errno_const(L, "EFBIG", EFBIG);
  set_errno_const(L, "EBUSY", EBUSY);
  set_errno_const(L, "ENOTEMPTY", ENOTEMPTY);
  set_errno_const(L, "ESTALE", ESTALE);
  lua_setglobal(L, "E");
  T_LUA(L, "fs = require('ct').fs "
           "function P(rel) return T .. '/' .. rel end "
           "function W(p, s) local f = assert(io.open(p, 'wb')) f:write(s) f:close() end "
           "function R(p) local f = assert(io.open(p, 'rb')) local s = f:read('a') f:close() return s end "
           "function fails(path, want, ok, msg, code) "
           "  assert(ok == nil, 'expected a failure, got ' .. tostring(ok)) "
           "  assert(type(msg) == 'string' and msg:find(path, 1, true), "
           "         'message does not name ' .. path .. ': ' .. tostring(msg)) "
           "  assert(math.type(code) == 'integer', 'no errno') "
           "  if want then assert(code == want, msg .. ' (errno ' .. code .. ', wanted ' .. want .. ')') end "
           "end "
           "function raises(f, ...) local ok = pcall(f, ...) assert(not ok, 'expected an error') end "
           "return true");
  return L;
}

/* ---- stat, exists, mkdir ---------------------------------------------- */

DEFINE_TEST(stat_and_lstat_report_types_and_modes) {
  lua_State *L = fs_state();
  T_ASSERT(mkfifo(tp("fifo"), 0600) == 0);
  T_LUA(L, "W(P('f'), 'hello') assert(fs.chmod(P('f'), tonumber('4751', 8))) "
           "assert(fs.mkdir(P('d'), tonumber('750', 8))) "
           "assert(fs.symlink('f', P('l'))) "
           "local s = assert(fs.stat(P('f'))) "
           "assert(s.type == 'file' and s.mode == tonumber('4751', 8) and s.size == 5, s.mode) "
           "assert(s.uid == 0 or s.uid > 0) assert(math.type(s.gid) == 'integer') "
           "assert(math.abs(s.mtime - os.time()) < 60 and math.type(s.mtime) == 'integer') "
           "assert(s.ino > 0 and math.type(s.dev) == 'integer' and s.nlink == 1) "
           "assert(fs.stat(P('d')).type == 'dir' and fs.stat(P('d')).mode == tonumber('750', 8)) "
           "assert(fs.lstat(P('l')).type == 'link' and fs.lstat(P('l')).size == 1) "
           "assert(fs.stat(P('l')).type == 'file' and fs.stat(P('l')).ino == s.ino) "
           "assert(fs.lstat(P('fifo')).type == 'fifo') "
           "assert(fs.stat('/dev/null').type == 'char') "
           "fails(P('missing'), E.ENOENT, fs.stat(P('missing'))) "
           "fails(P('missing'), E.ENOENT, fs.lstat(P('missing'))) "
           "return true");
}

DEFINE_TEST(stat_of_a_socket) {
  lua_State *L = fs_state();
  T_ASSERT(mknod(tp("sock"), S_IFSOCK | 0600, 0) == 0);
  T_LUA(L, "assert(fs.lstat(P('sock')).type == 'socket') return true");
}

DEFINE_TEST(exists_sees_dangling_symlinks) {
  lua_State *L = fs_state();
  T_LUA(L, "assert(fs.exists(T) == true) "
           "assert(fs.exists(P('nope')) == false) "
           "assert(fs.exists(P('nope/deeper')) == false) "
           "assert(fs.symlink('nowhere', P('dangling'))) "
           "assert(fs.exists(P('dangling')) == true) "
           "W(P('file'), '') assert(fs.exists(P('file/x')) == false) "
           "return true");
}

DEFINE_TEST(mkdir_mode_is_exact_and_parents_work) {
  umask(077);
  lua_State *L = fs_state();
  T_LUA(L, "assert(fs.mkdir(P('a')) == true) "
           "assert(fs.stat(P('a')).mode == tonumber('755', 8), 'default 0755 despite umask') "
           "assert(fs.mkdir(P('b'), tonumber('2775', 8))) "
           "assert(fs.stat(P('b')).mode == tonumber('2775', 8)) "
           "fails(P('a'), E.EEXIST, fs.mkdir(P('a'))) "
           "fails(P('x/y/z'), E.ENOENT, fs.mkdir(P('x/y/z'))) "
           "assert(fs.mkdir(P('x/y/z'), tonumber('700', 8), true)) "
           "assert(fs.stat(P('x')).mode == tonumber('700', 8)) "
           "assert(fs.stat(P('x/y/z')).type == 'dir') "
           "assert(fs.mkdir(P('x/y/z'), nil, true), 'existing dir is fine with parents') "
           "assert(fs.mkdir(P('x//y/z/'), nil, true)) "
           "W(P('file'), 'x') "
           "fails(P('file'), E.EEXIST, fs.mkdir(P('file'), nil, true)) "
           "fails(P('file'), E.ENOTDIR, fs.mkdir(P('file/sub'), nil, true)) "
           "assert(fs.symlink('a', P('link-to-dir'))) "
           "assert(fs.mkdir(P('link-to-dir/new'), nil, true)) "
           "assert(fs.stat(P('a/new')).type == 'dir') "
           "return true");
}

/* ---- rmtree ------------------------------------------------------------ */

DEFINE_TEST(rmtree_removes_trees_files_and_missing_paths) {
  lua_State *L = fs_state();
  T_LUA(L, "assert(fs.mkdir(P('t/a/b/c'), nil, true)) "
           "for i = 1, 50 do W(P('t/a/f' .. i), ('x'):rep(i)) end "
           "W(P('t/a/b/c/deep'), 'd') assert(fs.symlink('/', P('t/a/b/root-link'))) "
           "return true");
  T_ASSERT(mkfifo(tp("t/a/fifo"), 0600) == 0);
  T_LUA(L, "assert(fs.rmtree(P('t')) == true) "
           "assert(not fs.exists(P('t'))) "
           "assert(fs.rmtree(P('t')) == true, 'missing is fine') "
           "assert(fs.rmtree(P('no/such/parent')) == true) "
           "W(P('plain'), 'x') assert(fs.rmtree(P('plain'))) assert(not fs.exists(P('plain'))) "
           "assert(fs.mkdir(P('keep/sub'), nil, true)) "
           "fails(P('keep/sub/..'), E.EINVAL, fs.rmtree(P('keep/sub/..'))) "
           "fails(P('keep/.'), E.EINVAL, fs.rmtree(P('keep/.') .. '/')) "
           "assert(fs.exists(P('keep/sub'))) "
           "return true");
}

DEFINE_TEST(rmtree_never_follows_symlinks) {
  lua_State *L = fs_state();
  T_LUA(L, "assert(fs.mkdir(P('outside/sub'), nil, true)) "
           "W(P('outside/keep'), 'precious') W(P('outside/sub/keep2'), 'precious too') "
           "assert(fs.mkdir(P('tree/d'), nil, true)) "
           "assert(fs.symlink(P('outside'), P('tree/abs-link'))) "
           "assert(fs.symlink('../../outside', P('tree/d/rel-link'))) "
           "assert(fs.symlink(P('outside/keep'), P('tree/file-link'))) "
           "assert(fs.rmtree(P('tree'))) "
           "assert(not fs.exists(P('tree'))) "
           "assert(R(P('outside/keep')) == 'precious') "
           "assert(R(P('outside/sub/keep2')) == 'precious too') "
           /* the root itself a symlink (with or without a trailing slash):
              only the link goes */
           "assert(fs.symlink(P('outside'), P('root-link'))) "
           "assert(fs.rmtree(P('root-link'))) "
           "assert(not fs.exists(P('root-link')) and R(P('outside/keep')) == 'precious') "
           "assert(fs.symlink(P('outside'), P('root-link2'))) "
           "assert(fs.rmtree(P('root-link2') .. '/')) "
           "assert(not fs.exists(P('root-link2')) and R(P('outside/keep')) == 'precious') "
           "assert(#fs.dir(P('outside')) == 2) "
           "return true");
}

static void make_read_only_tree(const char *root) {
  char p[PATH_MAX];
  T_ASSERT(mkdir(root, 0755) == 0);
  snprintf(p, sizeof p, "%s/a", root);
  T_ASSERT(mkdir(p, 0755) == 0);
  snprintf(p, sizeof p, "%s/a/b", root);
  T_ASSERT(mkdir(p, 0755) == 0);
  snprintf(p, sizeof p, "%s/a/b/f", root);
  int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0444);
  T_ASSERT(fd >= 0);
  close(fd);
  snprintf(p, sizeof p, "%s/g", root);
  fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0400);
  T_ASSERT(fd >= 0);
  close(fd);
  snprintf(p, sizeof p, "%s/a/b", root);
  T_ASSERT(chmod(p, 0) == 0); /* not even readable */
  snprintf(p, sizeof p, "%s/a", root);
  T_ASSERT(chmod(p, 0500) == 0);
  T_ASSERT(chmod(root, 0555) == 0);
}

static void chown_tree(const char *root, uid_t uid, gid_t gid) {
  char p[PATH_MAX];
  const char *rels[] = {"", "/a", "/a/b", "/a/b/f", "/g"};
  for (size_t i = 0; i < sizeof rels / sizeof rels[0]; i++) {
    snprintf(p, sizeof p, "%s%s", root, rels[i]);
    T_ASSERT(lchown(p, uid, gid) == 0);
  }
}

DEFINE_TEST(rmtree_removes_a_read_only_tree) {
  lua_State *L = fs_state();
  make_read_only_tree(tp("ro"));
  T_LUA(L, "assert(fs.rmtree(P('ro'))) assert(not fs.exists(P('ro'))) return true");
}

/* The same as an unprivileged owner, for whom permissions do apply: a
   child process as nobody removes a tree it owns. */
DEFINE_TEST(rmtree_removes_a_read_only_tree_unprivileged) {
  if (geteuid() != 0) t_skip("needs root to switch to an unprivileged user");
  const char *box = tp("box");
  T_ASSERT(chmod(t_tmpdir(), 0755) == 0);
  T_ASSERT(mkdir(box, 0755) == 0);
  T_ASSERT(chown(box, 65534, 65534) == 0);
  char root[PATH_MAX];
  snprintf(root, sizeof root, "%s/ro", box);
  make_read_only_tree(root);
  chown_tree(root, 65534, 65534);
  fflush(NULL);
  pid_t pid = fork();
  T_ASSERT(pid >= 0);
  if (pid == 0) {
    if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
    if (access(root, W_OK) == 0) _exit(4); /* really without privileges */
    lua_State *C = ct_newstate();
    lua_pushstring(C, root);
    lua_setglobal(C, "ROOT");
    if (luaL_dostring(C, "local fs = require('ct').fs "
                         "local ok, msg = fs.rmtree(ROOT) assert(ok, msg) "
                         "assert(not fs.exists(ROOT), 'still there')") != LUA_OK) {
      fprintf(stderr, "child: %s\n", lua_tostring(C, -1));
      _exit(1);
    }
    _exit(0);
  }
  int status;
  T_ASSERT(waitpid(pid, &status, 0) == pid);
  T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  T_ASSERT(access(root, F_OK) != 0 && errno == ENOENT);
}

/* In a forked child: runs code and exits 0, or 1 with its error on
   stderr; a child blocked past the alarm (a walk that blocks) is killed. */
static _Noreturn void child_runs(lua_State *L, const char *code) {
  alarm(60);
  if (luaL_dostring(L, code) != LUA_OK) {
    fprintf(stderr, "child: %s\n", lua_tostring(L, -1));
    _exit(1);
  }
  _exit(0);
}

/* Runs code in a child with a private mount namespace in which src is
   mounted on target (the mount goes away with the child); skips where
   that cannot be done. */
static void with_mount(lua_State *L, const char *src, const char *target, const char *type,
                       unsigned long flags, const char *data, const char *code) {
  if (geteuid() != 0) t_skip("needs root to mount");
  fflush(NULL);
  pid_t pid = fork();
  T_ASSERT(pid >= 0);
  if (pid == 0) {
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount(src, target, type, flags, data) != 0)
      _exit(77);
    child_runs(L, code);
  }
  int status;
  T_ASSERT(waitpid(pid, &status, 0) == pid);
  T_ASSERT(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) t_skip("cannot mount in a private mount namespace here");
  T_ASSERT(WEXITSTATUS(status) == 0);
}

DEFINE_TEST(rmtree_refuses_to_cross_a_mount_point) {
  lua_State *L = fs_state();
  T_LUA(L, "assert(fs.mkdir(P('m/a/mnt'), nil, true)) W(P('m/a/file'), 'x') return true");
  with_mount(L, "tmpfs", tp("m/a/mnt"), "tmpfs", 0, "size=1m",
             "W(P('m/a/mnt/inside'), 'on the mount') "
             "fails(P('m/a/mnt'), E.EBUSY, fs.rmtree(P('m'))) "
             "local _, msg = fs.rmtree(P('m')) assert(msg:find('mount point'), msg) "
             "assert(R(P('m/a/mnt/inside')) == 'on the mount') "
             "fails(P('m/a/mnt'), E.EBUSY, fs.rmtree(P('m/a/mnt'))) "
             "assert(R(P('m/a/mnt/inside')) == 'on the mount')");
  /* without the mount (the child's namespace is gone) it all goes */
  T_LUA(L, "assert(fs.rmtree(P('m'))) assert(not fs.exists(P('m'))) return true");
}

/* A bind mount of the same filesystem (st_dev tells nothing) is never
   entered: shift re-owns the mount point only, walk and tree_digest list
   it, du counts nothing below it, copytree refuses it. */
DEFINE_TEST(no_walk_enters_a_bind_mount) {
  lua_State *L = fs_state();
  T_LUA(L, "assert(fs.mkdir(P('app/t/mnt'), nil, true)) assert(fs.mkdir(P('host'))) "
           "W(P('app/t/in'), 'in') W(P('host/f'), 'host file') "
           "for _, p in ipairs({'app/t', 'app/t/in', 'host', 'host/f'}) do "
           "  assert(fs.chown(P(p), 1000, 1000)) end "
           "return true");
  T_ASSERT(mknod(tp("host/null"), S_IFCHR | 0666, makedev(1, 3)) == 0);
  with_mount(L, tp("host"), tp("app/t/mnt"), NULL, MS_BIND, NULL,
             "assert(fs.mounted(P('app/t/mnt')) and not fs.mounted(P('app/t')), 'mounted') "
             "assert(not fs.mounted(P('app/t/in')) and not fs.mounted(P('missing')), 'mounted') "
             "local d = assert(fs.opendir(P('app'))) "
             "local seen = {} for _, e in ipairs(assert(d:walk('t'))) do seen[#seen + 1] = e.path end "
             "assert(table.concat(seen, ' ') == 'in mnt', table.concat(seen, ' ')) "
             "local b, n = assert(d:du('t')) assert(b == 2 and n == 1, b .. ' ' .. n) "
             "b, n = assert(fs.du(P('app/t'))) assert(b == 2 and n == 1, b .. ' ' .. n) "
             "local g = assert(fs.tree_digest(P('app/t'))) W(P('host/f'), 'changed') "
             "assert(fs.tree_digest(P('app/t')) == g, 'the digest read beneath the mount') "
             "fails(P('app/t/mnt'), E.EBUSY, fs.copytree(P('app/t'), P('copy'))) "
             "assert(not fs.exists(P('copy'))) "
             "fails('t/mnt', E.EBUSY, d:copytree('t', P('copy'))) "
             "assert(fs.lstat(P('host/null')).type == 'char') "
             "assert(d:shift_tree('t', {uid=1000, gid=1000, size=10}, {uid=5000, gid=5000, size=10}) == 3) "
             "assert(fs.lstat(P('app/t/in')).uid == 5000 and fs.lstat(P('host')).uid == 5000) "
             "assert(fs.lstat(P('host/f')).uid == 1000, 'shift_tree re-owned a file beneath a mount')");
}

/* du's total stops at the largest integer instead of wrapping. */
DEFINE_TEST(du_saturates_instead_of_overflowing) {
  lua_State *L = fs_state();
  T_LUA(L, "assert(fs.mkdir(P('big'))) return true");
  with_mount(L, "tmpfs", tp("big"), "tmpfs", 0, "size=1m",
             "for _, n in ipairs({'a', 'b', 'c'}) do "
             "  local f = assert(io.open(P('big/' .. n), 'w')) "
             "  assert(f:seek('set', math.maxinteger - 1)) f:write('x') f:close() "
             "end "
             "local b, n = assert(fs.du(P('big'))) "
             "assert(b == math.maxinteger and n == 3, b .. ' ' .. n) "
             "b = assert(assert(fs.opendir(P('big'))):du('')) assert(b == math.maxinteger, b)");
}

/* ---- an app swapping entries while a walk runs ------------------------ */

/* A child exchanging dir/x and dir/y (renameat2 RENAME_EXCHANGE) as fast
   as it can until killed: the app's side of a race. */
static pid_t swapper(const char *dir) {
  fflush(NULL);
  pid_t pid = fork();
  T_ASSERT(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int d = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    for (;;) renameat2(d, "x", d, "y", RENAME_EXCHANGE);
  }
  return pid;
}

/* Runs code in a child while swapper(dir) runs; a child blocked past the
   alarm is killed and fails the test. */
static void while_swapping(lua_State *L, const char *dir, const char *code) {
  pid_t sw = swapper(dir);
  pid_t pid = fork();
  T_ASSERT(pid >= 0);
  if (pid == 0) {
    child_runs(L, code);
  }
  int status;
  T_ASSERT(waitpid(pid, &status, 0) == pid);
  kill(sw, SIGKILL);
  T_ASSERT(waitpid(sw, NULL, 0) == sw);
  if (WIFSIGNALED(status)) t_fail(__FILE__, __LINE__, "the walk was killed by signal %d", WTERMSIG(status));
  T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* A FIFO swapped in for a file between the walk's stat and its open is
   never opened (open(2) would block in it for good). */
DEFINE_TEST(copytree_never_opens_a_fifo_swapped_in) {
  lua_State *L = fs_state();
  T_LUA(L, "assert(fs.mkdir(P('src'))) W(P('src/x'), 'data') return true");
  T_ASSERT(mkfifo(tp("src/y"), 0600) == 0);
  while_swapping(L, tp("src"),
                 "local d = assert(fs.opendir(T)) "
                 "for i = 1, 1000 do "
                 "  local ok, msg, code "
                 "  if i % 2 == 0 then ok, msg, code = d:copytree('src', P('c')) "
                 "  else ok, msg, code = fs.copytree(P('src'), P('c')) end "
                 "  assert(ok or code == E.ESTALE, msg) "
                 "  assert(fs.rmtree(P('c'))) "
                 "end");
}

/* A directory swapped between the walk's stat and its open is reported
   (ESTALE), never walked as if it were the one stat saw. */
DEFINE_TEST(walks_report_a_directory_swapped_in) {
  lua_State *L = fs_state();
  T_LUA(L, "assert(fs.mkdir(P('sw/x'), nil, true)) assert(fs.mkdir(P('sw/y/z'), nil, true)) return true");
  while_swapping(L, tp("sw"),
                 "local d = assert(fs.opendir(P('sw'))) "
                 "local far = {uid = 3000000, gid = 3000000, size = 10} "
                 "local near = {uid = 3000100, gid = 3000100, size = 10} "
                 "for name, f in pairs({ "
                 "  du = function() return fs.du(P('sw')) end, "
                 "  dir_du = function() return d:du('') end, "
                 "  shift_tree = function() return d:shift_tree('', far, near) end}) do "
                 "  local stale, n, t0 = false, 0, require('ct').time.monotonic() "
                 "  while not stale and require('ct').time.monotonic() - t0 < 10 do "
                 "    local ok, msg, code = f() n = n + 1 "
                 "    if not ok then assert(code == E.ESTALE, msg) stale = true end "
                 "  end "
                 "  assert(stale, name .. ' never noticed the swap in ' .. n .. ' walks') "
                 "end");
}

/* ---- deep trees: longer paths than PATH_MAX, more levels than fds ------ */

#define DEEP_LEVELS 120
#define DEEP_NAME "directory-level-with-a-rather-long-name-0123456789"

/* root/DEEP_NAME/... DEEP_LEVELS deep, with "leaf" (content "bottom") at
   the bottom and "top" at the root hard-linked to it. */
static void make_deep_tree(const char *root) {
  T_ASSERT(mkdir(root, 0755) == 0);
  int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  T_ASSERT(fd >= 0);
  int rootfd = dup(fd);
  for (int i = 0; i < DEEP_LEVELS; i++) {
    T_ASSERT(mkdirat(fd, DEEP_NAME, 0755) == 0);
    int next = openat(fd, DEEP_NAME, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    T_ASSERT(next >= 0);
    close(fd);
    fd = next;
  }
  int f = openat(fd, "leaf", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  T_ASSERT(f >= 0 && write(f, "bottom", 6) == 6);
  close(f);
  T_ASSERT(linkat(fd, "leaf", rootfd, "top", 0) == 0);
  close(fd);
  close(rootfd);
}

/* The content of root/<DEEP_NAME x DEEP_LEVELS>/leaf, into buf. */
static void read_deep_leaf(const char *root, char *buf, size_t len) {
  int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  T_ASSERT(fd >= 0);
  for (int i = 0; i < DEEP_LEVELS; i++) {
    int next = openat(fd, DEEP_NAME, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    T_ASSERT(next >= 0);
    close(fd);
    fd = next;
  }
  int f = openat(fd, "leaf", O_RDONLY | O_CLOEXEC);
  T_ASSERT(f >= 0);
  ssize_t n = read(f, buf, len - 1);
  T_ASSERT(n >= 0);
  buf[n] = '\0';
  close(f);
  close(fd);
}

/* Open descriptors of this process. */
static int count_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  T_ASSERT(d != NULL);
  while (readdir(d)) n++;
  closedir(d);
  return n - 3; /* ".", "..", the DIR's own */
}

DEFINE_TEST(deep_trees_are_walked_copied_and_removed) {
  lua_State *L = fs_state();
  make_deep_tree(tp("deep"));
  /* a walk keeps a bounded number of levels open: 120 levels of copytree
     (two descriptors each) would not fit in 100 */
  struct rlimit rl = {100, 100};
  T_ASSERT(setrlimit(RLIMIT_NOFILE, &rl) == 0);
  int fds = count_fds();
  T_LUA(L, "local bytes, files = assert(fs.du(P('deep'))) "
           "assert(bytes == 6 and files == 1, bytes .. ' ' .. files) "
           "assert(fs.copytree(P('deep'), P('copy'))) "
           "local b2, f2 = assert(fs.du(P('copy'))) "
           /* the first copy's path is too long to link to: an own copy */
           "assert(b2 == 12 and f2 == 2, b2 .. ' ' .. f2) "
           "assert(R(P('copy/top')) == 'bottom') "
           "return true");
  char buf[32];
  read_deep_leaf(tp("copy"), buf, sizeof buf);
  T_ASSERT_STR(buf, "bottom");
  T_LUA(L, "assert(fs.rmtree(P('deep'))) assert(fs.rmtree(P('copy'))) "
           "assert(not fs.exists(P('deep')) and not fs.exists(P('copy'))) return true");
  T_ASSERT(count_fds() == fds);
}

DEFINE_TEST(no_descriptor_is_left_open) {
  lua_State *L = fs_state();
  int fds = count_fds();
  T_LUA(L, "assert(fs.mkdir(P('t/a/b'), nil, true)) W(P('t/a/f'), 'x') W(P('t/a/b/g'), 'y') "
           "assert(fs.link(P('t/a/f'), P('t/h'))) assert(fs.symlink('a', P('t/l'))) "
           "assert(fs.copytree(P('t'), P('c'))) assert(fs.du(P('c'))) "
           "assert(not fs.copytree(P('t'), P('c'))) assert(not fs.copytree(P('t'), P('t/a/in'))) "
           "assert(fs.copyfile(P('t/a/f'), P('cf'))) assert(not fs.copyfile(T, P('cf'))) "
           "assert(fs.read(P('cf'))) assert(not fs.read(T)) assert(fs.read('/proc/self/stat')) "
           "assert(fs.write_atomic(P('wa'), 'x')) assert(not fs.write_atomic(P('t'), 'x')) "
           "assert(fs.open(P('ap'), {write=true, create=true})):close() assert(fs.dir(T)) "
           "local d = assert(fs.opendir(T)) "
           "assert(d:read('cf')) assert(not d:read('t')) assert(not d:read('cf', 0)) "
           "W(P('wb'), 'x') "
           "assert(d:copyfile('wb', P('cb'))) assert(not d:copyfile('t', P('cb'))) d:close() "
           "assert(fs.fsync(P('cb'))) assert(fs.syncfs(T)) "
           "assert(fs.rmtree(P('c'))) assert(fs.rmtree(P('t'))) "
           "return true");
  T_ASSERT(count_fds() == fds);
}

/* ---- copytree ---------------------------------------------------------- */

DEFINE_TEST(copytree_keeps_links_modes_owners_times_xattrs) {
  if (geteuid() != 0) t_skip("copying owners and device nodes needs root");
  lua_State *L = fs_state();
  T_LUA(L, "assert(fs.mkdir(P('src/etc/sub'), nil, true)) "
           "W(P('src/etc/passwd'), 'root:x:0:0') "
           "W(P('src/bin'), ('\\0\\1binary'):rep(5000)) "
           "assert(fs.chmod(P('src/bin'), tonumber('4755', 8))) "
           "assert(fs.link(P('src/bin'), P('src/etc/sub/bin-hardlink'))) "
           "W(P('src/empty'), '') "
           "assert(fs.symlink('etc/passwd', P('src/rel-link'))) "
           "assert(fs.symlink('/etc/shadow', P('src/abs-link'))) "
           "assert(fs.symlink('nowhere', P('src/dangling'))) "
           "assert(fs.chmod(P('src/etc/sub'), tonumber('1750', 8))) "
           "assert(fs.chmod(P('src/etc'), tonumber('555', 8))) "
           "assert(fs.chown(P('src/etc/passwd'), 1234, 5678)) "
           "assert(fs.lchown(P('src/rel-link'), 4321, 8765)) "
           "return true");
  T_ASSERT(mkfifo(tp("src/fifo"), 0640) == 0);
  T_ASSERT(mknod(tp("src/null"), S_IFCHR | 0666, makedev(1, 3)) == 0);
  T_ASSERT(chmod(tp("src/null"), 0666) == 0);
  T_ASSERT(setxattr(tp("src/etc/passwd"), "user.ct", "hello", 5, 0) == 0);
  T_ASSERT(setxattr(tp("src/etc/sub"), "user.dir", "d", 1, 0) == 0);
  int link_xattr = lsetxattr(tp("src/rel-link"), "trusted.ct", "lnk", 3, 0) == 0;
  struct timespec ts[2] = {{1000000000, 123456789}, {1200000000, 987654321}};
  T_ASSERT(utimensat(AT_FDCWD, tp("src/etc/passwd"), ts, AT_SYMLINK_NOFOLLOW) == 0);
  T_ASSERT(utimensat(AT_FDCWD, tp("src/rel-link"), ts, AT_SYMLINK_NOFOLLOW) == 0);
  T_ASSERT(utimensat(AT_FDCWD, tp("src/etc/sub"), ts, AT_SYMLINK_NOFOLLOW) == 0);
  T_ASSERT(utimensat(AT_FDCWD, tp("src/fifo"), ts, AT_SYMLINK_NOFOLLOW) == 0);

  T_LUA(L, "assert(fs.copytree(P('src'), P('dst')) == true) return true");
  /* times first: reading the copies below moves their atimes */
  struct stat st;
  T_ASSERT(lstat(tp("dst/etc/passwd"), &st) == 0);
  T_ASSERT(st.st_mtim.tv_sec == 1200000000 && st.st_mtim.tv_nsec == 987654321);
  T_ASSERT(st.st_atim.tv_sec == 1000000000 && st.st_atim.tv_nsec == 123456789);
  T_ASSERT(lstat(tp("dst/rel-link"), &st) == 0);
  T_ASSERT(st.st_mtim.tv_sec == 1200000000 && st.st_mtim.tv_nsec == 987654321);
  T_ASSERT(lstat(tp("dst/etc/sub"), &st) == 0);
  T_ASSERT(st.st_mtim.tv_sec == 1200000000 && st.st_mtim.tv_nsec == 987654321);
  T_LUA(L, "local function same(rel, fields) "
           "  local a, b = assert(fs.lstat(P('src/' .. rel))), assert(fs.lstat(P('dst/' .. rel))) "
           "  for f in fields:gmatch('%a+') do "
           "    assert(a[f] == b[f], rel .. ': ' .. f .. ' ' .. tostring(a[f]) .. ' vs ' .. tostring(b[f])) "
           "  end "
           "  assert(a.ino ~= b.ino, rel .. ' is the same inode') "
           "  return a, b "
           "end "
           "same('etc/passwd', 'type mode size uid gid mtime') "
           "same('bin', 'type mode size uid gid mtime nlink') "
           "same('empty', 'type mode size') "
           "same('etc', 'type mode uid gid') "
           "same('etc/sub', 'type mode uid gid mtime') "
           "same('rel-link', 'type uid gid mtime size') "
           "same('abs-link', 'type size') same('dangling', 'type') "
           "same('fifo', 'type mode mtime') same('null', 'type mode') "
           "assert(fs.readlink(P('dst/rel-link')) == 'etc/passwd') "
           "assert(fs.readlink(P('dst/abs-link')) == '/etc/shadow') "
           "assert(fs.readlink(P('dst/dangling')) == 'nowhere') "
           "assert(R(P('dst/etc/passwd')) == 'root:x:0:0') "
           "assert(R(P('dst/bin')) == R(P('src/bin'))) "
           "assert(fs.lstat(P('dst/bin')).mode == tonumber('4755', 8), 'setuid kept') "
           "local h1, h2 = fs.stat(P('dst/bin')), fs.stat(P('dst/etc/sub/bin-hardlink')) "
           "assert(h1.ino == h2.ino and h1.nlink == 2, 'hard links stay linked') "
           "assert(h1.ino ~= fs.stat(P('src/bin')).ino) "
           "assert(fs.stat(P('dst/etc/passwd')).uid == 1234) "
           "assert(fs.lstat(P('dst/rel-link')).uid == 4321 and fs.lstat(P('dst/rel-link')).gid == 8765) "
           "local a, b = fs.dir(P('src')), fs.dir(P('dst')) "
           "assert(table.concat(a, ',') == table.concat(b, ','), table.concat(b, ',')) "
           "return true");
  char buf[16];
  ssize_t n = getxattr(tp("dst/etc/passwd"), "user.ct", buf, sizeof buf);
  T_ASSERT(n == 5 && memcmp(buf, "hello", 5) == 0);
  n = getxattr(tp("dst/etc/sub"), "user.dir", buf, sizeof buf);
  T_ASSERT(n == 1 && buf[0] == 'd');
  if (link_xattr) {
    n = lgetxattr(tp("dst/rel-link"), "trusted.ct", buf, sizeof buf);
    T_ASSERT(n == 3 && memcmp(buf, "lnk", 3) == 0);
  }
  T_ASSERT(lstat(tp("dst/null"), &st) == 0);
  T_ASSERT(S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3));
}

DEFINE_TEST(copytree_refuses_an_existing_or_nested_destination) {
  lua_State *L = fs_state();
  T_LUA(L, "assert(fs.mkdir(P('src/a'), nil, true)) W(P('src/a/f'), 'x') "
           "assert(fs.mkdir(P('there'))) W(P('there/mine'), 'keep') "
           "fails(P('there'), E.EEXIST, fs.copytree(P('src'), P('there'))) "
           "assert(R(P('there/mine')) == 'keep') "
           "fails(P('missing'), E.ENOENT, fs.copytree(P('missing'), P('new'))) "
           "assert(not fs.exists(P('new'))) "
           "fails(P('src/a/f'), E.ENOTDIR, fs.copytree(P('src/a/f'), P('new'))) "
           "assert(fs.symlink('src', P('src-link'))) "
           "fails(P('src-link'), E.ENOTDIR, fs.copytree(P('src-link'), P('new'))) "
           "fails(P('missing/new'), E.ENOENT, fs.copytree(P('src'), P('missing/new'))) "
           /* into itself: refused, and the half copy is removed */
           "fails(P('src'), E.EINVAL, fs.copytree(P('src'), P('src/a/inner'))) "
           "assert(not fs.exists(P('src/a/inner'))) "
           "assert(R(P('src/a/f')) == 'x') "
           "return true");
}

/* ---- single files ------------------------------------------------------ */

DEFINE_TEST(copyfile_copies_content_and_mode_via_a_temp) {
  lua_State *L = fs_state();
  T_LUA(L, "W(P('a'), ('abc'):rep(100000)) assert(fs.chmod(P('a'), tonumber('4751', 8))) "
           "assert(fs.copyfile(P('a'), P('b')) == true) "
           "assert(R(P('b')) == R(P('a'))) "
           "assert(fs.stat(P('b')).mode == tonumber('751', 8), 'setuid not copied by default') "
           "assert(fs.copyfile(P('a'), P('b'), tonumber('600', 8))) "
           "assert(fs.stat(P('b')).mode == tonumber('600', 8)) "
           "W(P('empty'), '') assert(fs.copyfile(P('empty'), P('empty2'))) "
           "assert(R(P('empty2')) == '') "
           "fails(P('missing'), E.ENOENT, fs.copyfile(P('missing'), P('c'))) "
           "fails(T, E.EISDIR, fs.copyfile(T, P('c'))) "
           "fails(P('no/dir/c'), E.ENOENT, fs.copyfile(P('a'), P('no/dir/c'))) "
           "local names = fs.dir(T) "
           "assert(table.concat(names, ',') == 'a,b,empty,empty2', table.concat(names, ',')) "
           "return true");
}

DEFINE_TEST(rename_and_exchange) {
  lua_State *L = fs_state();
  T_LUA(L, "W(P('a'), 'A') assert(fs.rename(P('a'), P('b')) == true) "
           "assert(R(P('b')) == 'A' and not fs.exists(P('a'))) "
           "fails(P('a'), E.ENOENT, fs.rename(P('a'), P('c'))) "
           "local _, msg = fs.rename(P('a'), P('c')) assert(msg:find(P('c'), 1, true), msg) "
           /* exchange swaps two symlinks atomically */
           "assert(fs.mkdir(P('v1'))) assert(fs.mkdir(P('v2'))) "
           "assert(fs.symlink('v1', P('current'))) assert(fs.symlink('v2', P('next'))) "
           "assert(fs.exchange(P('current'), P('next')) == true) "
           "assert(fs.readlink(P('current')) == 'v2' and fs.readlink(P('next')) == 'v1') "
           "assert(fs.lstat(P('v1')).type == 'dir', 'targets untouched') "
           /* a file and a directory too */
           "W(P('f'), 'file') assert(fs.exchange(P('f'), P('v1'))) "
           "assert(fs.lstat(P('f')).type == 'dir' and R(P('v1')) == 'file') "
           "fails(P('missing'), E.ENOENT, fs.exchange(P('current'), P('missing'))) "
           "assert(fs.readlink(P('current')) == 'v2') "
           "return true");
}

DEFINE_TEST(symlink_readlink_realpath_link_unlink_rmdir) {
  lua_State *L = fs_state();
  T_LUA(L, "local long = ('x'):rep(3000) "
           "assert(fs.symlink(long, P('long')) == true) assert(fs.readlink(P('long')) == long) "
           "fails(P('long'), E.EEXIST, fs.symlink('t', P('long'))) "
           "fails(P('missing'), E.ENOENT, fs.readlink(P('missing'))) "
           "W(P('f'), 'x') fails(P('f'), E.EINVAL, fs.readlink(P('f'))) "
           "assert(fs.mkdir(P('d'))) assert(fs.symlink('d/../f', P('l'))) "
           "local real = assert(fs.realpath(P('l'))) "
           "assert(real:sub(1, 1) == '/' and real:sub(-2) == '/f' and not real:find('/d/', 1, true), real) "
           "assert(fs.realpath(P('d/../d/.')) == fs.realpath(P('d'))) "
           "fails(P('missing/x'), E.ENOENT, fs.realpath(P('missing/x'))) "
           "assert(fs.link(P('f'), P('f2')) == true) "
           "assert(fs.stat(P('f')).nlink == 2 and fs.stat(P('f2')).ino == fs.stat(P('f')).ino) "
           "fails(P('f2'), E.EEXIST, fs.link(P('f'), P('f2'))) "
           "assert(fs.unlink(P('f2')) == true) assert(fs.stat(P('f')).nlink == 1) "
           "fails(P('f2'), E.ENOENT, fs.unlink(P('f2'))) "
           "fails(P('d'), E.EISDIR, fs.unlink(P('d'))) "
           "W(P('d/x'), '') fails(P('d'), E.ENOTEMPTY, fs.rmdir(P('d'))) "
           "assert(fs.unlink(P('d/x'))) assert(fs.rmdir(P('d')) == true) "
           "assert(not fs.exists(P('d'))) "
           "return true");
}

DEFINE_TEST(dir_lists_sorted_names) {
  lua_State *L = fs_state();
  T_LUA(L, "for _, n in ipairs{'b', 'a', 'C', '.hidden', 'z z'} do W(P(n), '') end "
           "assert(fs.mkdir(P('sub'))) "
           "local names = assert(fs.dir(T)) "
           "assert(table.concat(names, '|') == '.hidden|C|a|b|sub|z z', table.concat(names, '|')) "
           "assert(#fs.dir(P('sub')) == 0) "
           "fails(P('missing'), E.ENOENT, fs.dir(P('missing'))) "
           "fails(P('a'), E.ENOTDIR, fs.dir(P('a'))) "
           "return true");
}

DEFINE_TEST(read_whole_files_up_to_a_limit) {
  lua_State *L = fs_state();
  T_LUA(L, "W(P('f'), '0123456789') "
           "assert(fs.read(P('f')) == '0123456789') "
           "assert(fs.read(P('f'), 10) == '0123456789') "
           "fails(P('f'), E.EFBIG, fs.read(P('f'), 9)) "
           "local big = ('y'):rep(300000) .. 'end' W(P('big'), big) "
           "assert(fs.read(P('big')) == big) "
           "W(P('empty'), '') assert(fs.read(P('empty')) == '') assert(fs.read(P('empty'), 0) == '') "
           /* files whose size stat does not know, a symlink followed by name */
           "local cmd = assert(fs.read('/proc/self/cmdline')) "
           "assert(cmd:find('read_whole_files_up_to_a_limit', 1, true)) "
           "fails('/proc/self/status', E.EFBIG, fs.read('/proc/self/status', 5)) "
           "assert(fs.symlink('f', P('l'))) assert(fs.read(P('l')) == '0123456789') "
           "fails(P('missing'), E.ENOENT, fs.read(P('missing'))) "
           "fails(T, E.EISDIR, fs.read(T)) "
           "return true");
}

DEFINE_TEST(write_atomic_writes_exact_content_and_mode) {
  umask(077);
  lua_State *L = fs_state();
  T_LUA(L, "assert(fs.mkdir(P('d'))) "
           "local data = 'a\\0b' .. ('z'):rep(100000) "
           "assert(fs.write_atomic(P('d/f'), data) == true) "
           "assert(R(P('d/f')) == data) "
           "assert(fs.stat(P('d/f')).mode == tonumber('644', 8), 'default 0644 despite umask') "
           "assert(fs.write_atomic(P('d/f'), 'new', tonumber('640', 8))) "
           "assert(R(P('d/f')) == 'new' and fs.stat(P('d/f')).mode == tonumber('640', 8)) "
           "assert(fs.write_atomic(P('d/e'), '')) assert(R(P('d/e')) == '') "
           "local names = fs.dir(P('d')) "
           "assert(table.concat(names, ',') == 'e,f', 'temp left: ' .. table.concat(names, ',')) "
           /* a symlink in the way is replaced, its target untouched */
           "W(P('target'), 'keep') assert(fs.symlink(P('target'), P('d/link'))) "
           "assert(fs.write_atomic(P('d/link'), 'replaced')) "
           "assert(R(P('target')) == 'keep' and fs.lstat(P('d/link')).type == 'file') "
           "assert(R(P('d/link')) == 'replaced') "
           /* failures: the path in the message, no temp left behind */
           "fails(P('nodir/f'), E.ENOENT, fs.write_atomic(P('nodir/f'), 'x')) "
           "assert(fs.mkdir(P('d/sub'))) "
           "fails(P('d/sub'), E.EISDIR, fs.write_atomic(P('d/sub'), 'x')) "
           "fails(P('d/f'), E.EISDIR, fs.write_atomic(P('d/f') .. '/', 'x')) "
           "names = fs.dir(P('d')) "
           "assert(table.concat(names, ',') == 'e,f,link,sub', 'temp left: ' .. table.concat(names, ',')) "
           "local long = ('n'):rep(255) "
           "assert(fs.write_atomic(P(long), 'long name')) assert(R(P(long)) == 'long name') "
           "return true");
}

DEFINE_TEST(open_by_name_creates_and_appends) {
  umask(022);
  lua_State *L = fs_state();
  T_LUA(L, "local function append(p, s, mode) "
           "  local f, err, e = fs.open(p, {write=true, create=true, append=true, mode=mode}) "
           "  if not f then return f, err, e end "
           "  local ok = f:write(s) f:close() return ok end "
           "assert(append(P('log'), 'one\\n', 420) == true) "
           "assert(append(P('log'), 'two\\n')) "
           "assert(R(P('log')) == 'one\\ntwo\\n') "
           "assert(fs.stat(P('log')).mode == tonumber('644', 8)) "
           "assert(append(P('log2'), 'x', tonumber('600', 8))) "
           "assert(fs.stat(P('log2')).mode == tonumber('600', 8)) "
           "fails(P('no/log'), E.ENOENT, append(P('no/log'), 'x')) "
           "return true");
}

DEFINE_TEST(dir_copyfile_copies_a_file_out) {
  lua_State *L = fs_state();
  T_LUA(L, "assert(fs.mkdir(P('root/etc'), nil, true)) local d = assert(fs.opendir(P('root'))) "
           "W(P('root/etc/conf'), 'conf data') assert(fs.chmod(P('root/etc/conf'), tonumber('4640', 8))) "
           "assert(d:copyfile('etc/conf', P('out')) == true) "
           "assert(R(P('out')) == 'conf data') "
           "assert(fs.stat(P('out')).mode == tonumber('640', 8)) "
           "assert(fs.symlink('/etc/passwd', P('root/evil'))) "
           "fails('evil', E.ELOOP, d:copyfile('evil', P('out2'))) "
           "assert(not fs.exists(P('out2'))) "
           "fails('../etc', E.EINVAL, d:copyfile('../etc/conf', P('out3'))) "
           "fails('etc', E.EINVAL, d:copyfile('etc', P('out4'))) "
           "fails(P('no/dir/x'), E.ENOENT, d:copyfile('etc/conf', P('no/dir/x'))) "
           "return true");
  T_ASSERT(mkfifo(tp("root/fifo"), 0600) == 0);
  T_LUA(L, "local d = assert(fs.opendir(P('root'))) "
           "fails('fifo', E.EINVAL, d:copyfile('fifo', P('o'))) return true");
}

/* ---- permissions, temp dirs, sizes, syncing ---------------------------- */

DEFINE_TEST(chmod_chown_lchown) {
  lua_State *L = fs_state();
  T_LUA(L, "W(P('f'), '') assert(fs.chmod(P('f'), tonumber('2640', 8)) == true) "
           "assert(fs.stat(P('f')).mode == tonumber('2640', 8)) "
           "fails(P('missing'), E.ENOENT, fs.chmod(P('missing'), 0)) "
           "assert(fs.symlink('f', P('l'))) "
           "local me = fs.stat(P('f')) "
           "assert(fs.chown(P('f'), me.uid, me.gid) == true) "
           "assert(fs.lchown(P('l'), me.uid, me.gid) == true) "
           "assert(fs.chown(P('f'), -1, -1)) "
           "fails(P('missing'), E.ENOENT, fs.chown(P('missing'), 0, 0)) "
           "fails(P('missing'), E.ENOENT, fs.lchown(P('missing'), 0, 0)) "
           "return true");
  if (geteuid() == 0)
    T_LUA(L, "assert(fs.chown(P('l'), 1001, 1002)) "
             "assert(fs.stat(P('f')).uid == 1001 and fs.lstat(P('l')).uid ~= 1001) "
             "assert(fs.lchown(P('l'), 1003, -1)) "
             "assert(fs.lstat(P('l')).uid == 1003 and fs.stat(P('f')).uid == 1001) "
             "assert(fs.stat(P('f')).gid == 1002) "
             "return true");
}

DEFINE_TEST(mkdtemp_creates_a_private_directory) {
  lua_State *L = fs_state();
  T_LUA(L, "local d = assert(fs.mkdtemp(P('work-XXXXXX'))) "
           "assert(d:match('/work%-......$') and not d:find('XXXXXX'), d) "
           "local s = fs.stat(d) assert(s.type == 'dir' and s.mode == tonumber('700', 8)) "
           "local d2 = assert(fs.mkdtemp(P('work-XXXXXX'))) assert(d2 ~= d) "
           "fails(P('bad'), E.EINVAL, fs.mkdtemp(P('bad'))) "
           "fails(P('no/dir-XXXXXX'), E.ENOENT, fs.mkdtemp(P('no/dir-XXXXXX'))) "
           "return true");
}

DEFINE_TEST(du_counts_apparent_sizes_once) {
  lua_State *L = fs_state();
  T_LUA(L, "assert(fs.mkdir(P('t/sub'), nil, true)) assert(fs.mkdir(P('outside'))) "
           "W(P('outside/huge'), ('h'):rep(100000)) "
           "W(P('t/a'), ('a'):rep(1000)) W(P('t/sub/b'), ('b'):rep(234)) "
           "assert(fs.link(P('t/a'), P('t/sub/a-again'))) "
           "assert(fs.symlink(P('outside'), P('t/sub/out'))) "
           "local linklen = #P('outside') "
           "local bytes, files = fs.du(P('t')) "
           "assert(bytes == 1000 + 234 + linklen, bytes) "
           "assert(files == 3, files) "
           "assert(select(1, fs.du(P('t/a'))) == 1000) "
           "assert(select(2, fs.du(P('t/a'))) == 1) "
           "assert(fs.du(P('t/sub/out')) == linklen, 'a symlink is not followed') "
           "fails(P('missing'), E.ENOENT, fs.du(P('missing'))) "
           "return true");
}

DEFINE_TEST(statvfs_fsync_syncfs) {
  lua_State *L = fs_state();
  T_LUA(L, "local v = assert(fs.statvfs(T)) "
           "for _, k in ipairs{'size', 'free', 'avail', 'files', 'ffree'} do "
           "  assert(math.type(v[k]) == 'integer', k) end "
           "assert(v.size > 0 and v.free <= v.size and v.avail <= v.free) "
           "fails(P('missing'), E.ENOENT, fs.statvfs(P('missing'))) "
           "W(P('f'), '12345') "
           "assert(fs.fsync(P('f')) == true) assert(fs.fsync(T) == true) "
           "fails(P('missing'), E.ENOENT, fs.fsync(P('missing'))) "
           "assert(fs.syncfs(T) == true) assert(fs.syncfs(P('f')) == true) "
           "fails(P('missing'), E.ENOENT, fs.syncfs(P('missing'))) "
           "return true");
}

/* ---- programmer errors raise ------------------------------------------- */

DEFINE_TEST(wrong_argument_types_raise) {
  lua_State *L = fs_state();
  T_LUA(L, "W(P('f'), 'x') local f = P('f') "
           "for _, name in ipairs{'stat', 'lstat', 'exists', 'mkdir', 'rmtree', 'readlink', "
           "    'realpath', 'unlink', 'rmdir', 'dir', 'read', 'mkdtemp', 'du', 'statvfs', "
           "    'fsync', 'syncfs'} do "
           "  raises(fs[name]) raises(fs[name], {}) raises(fs[name], nil) "
           "end "
           "for _, name in ipairs{'copytree', 'copyfile', 'rename', 'exchange', 'symlink', "
           "    'link', 'write_atomic'} do "
           "  raises(fs[name], f) raises(fs[name], f, {}) raises(fs[name], true, f) "
           "end "
           "raises(fs.mkdir, P('m'), 'rwx') raises(fs.mkdir, P('m'), -1) "
           "raises(fs.mkdir, P('m'), 1.5) raises(fs.mkdir, P('m'), 493, 'yes') "
           "raises(fs.chmod, f) raises(fs.chmod, f, 'x') raises(fs.chmod, f, 65536) "
           "raises(fs.chown, f, 0) raises(fs.chown, f, 'a', 0) raises(fs.chown, f, 0, -2) "
           "raises(fs.lchown, f, {}, 0) "
           "raises(fs.read, f, 'x') raises(fs.read, f, -1) "
           "raises(fs.write_atomic, f, 'x', 'rw') raises(fs.write_atomic, f, 'x', 99999) "
           "raises(fs.open, f, 'x') raises(fs.open, f, {write=1}) "
           "raises(fs.copyfile, f, P('g'), 'x') "
           "assert(not fs.exists(P('m')) and R(f) == 'x') "
           "return true");
}

DEFINE_TEST(every_documented_function_is_there) {
  lua_State *L = fs_state();
  T_LUA(L, "local want = {'stat', 'lstat', 'exists', 'mkdir', 'rmtree', 'copytree', 'copyfile', "
           "  'rename', 'exchange', 'symlink', 'readlink', 'realpath', 'link', 'unlink', 'rmdir', "
           "  'dir', 'read', 'write_atomic', 'open', "
           "  'chmod', 'chown', 'lchown', 'mkdtemp', 'du', 'statvfs', 'fsync', "
           "  'syncfs', 'opendir', "
           "  'mount', 'umount', 'mounted', 'tree_digest'} "
           "local n = 0 for k in pairs(fs) do if k ~= 'errno' then n = n + 1 end end "
           "for _, k in ipairs(want) do assert(type(fs[k]) == 'function', k) end "
           "assert(n == #want, 'unexpected extra functions: ' .. n) "
           "assert(fs.errno.ENOENT == 2 and fs.errno.EOPNOTSUPP == 95 and fs.errno.ELOOP == 40) "
           "return true");
}
