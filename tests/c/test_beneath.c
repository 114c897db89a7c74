/* ct.fs.opendir: the confined Dir/File API, attacked as an app would.

   Every case runs twice in one process: once resolving with openat2 and once
   with the O_NOFOLLOW component walk (the fallback for kernels before 5.6),
   each in a fresh directory. After each run, the process must hold exactly
   the descriptors it held before (no leak on any path, error paths included). */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "int.h"

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  T_ASSERT(d != NULL);
  int n = 0;
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

static void set_errno_const(lua_State *L, const char *name, int value) {
  lua_pushinteger(L, value);
  lua_setfield(L, -2, name);
}

/* Globals for the Lua side: fs, T (this run's dir), P(rel), E (errnos),
   W/R (plain io), fails(path|nil, errno|nil, ok, msg, code, text|nil),
   canary(): a dir outside the app dir with a file whose bytes and mode are
   checked by canary_ok(). `root` is T/app, the Dir under attack. */
static lua_State *b_state(void) {
  lua_State *L = t_state();
  lua_newtable(L);
  set_errno_const(L, "ENOENT", ENOENT);
  set_errno_const(L, "EEXIST", EEXIST);
  set_errno_const(L, "ENOTDIR", ENOTDIR);
  set_errno_const(L, "EISDIR", EISDIR);
  set_errno_const(L, "EINVAL", EINVAL);
  set_errno_const(L, "ELOOP", ELOOP);
  set_errno_const(L, "EFBIG", EFBIG);
  set_errno_const(L, "ENOTEMPTY", ENOTEMPTY);
  set_errno_const(L, "EOPNOTSUPP", EOPNOTSUPP);
  set_errno_const(L, "ENOSYS", ENOSYS);
  lua_setglobal(L, "E");
  T_LUA(L, "fs = require('ct').fs proc = require('ct').proc "
           "function P(rel) return T .. '/' .. rel end "
           "function W(p, s) local f = assert(io.open(p, 'wb')) f:write(s) f:close() end "
           "function R(p) local f = assert(io.open(p, 'rb')) local s = f:read('a') f:close() return s end "
           "function fails(path, want, ok, msg, code, text) "
           "  assert(ok == nil, 'expected a failure, got ' .. tostring(ok)) "
           "  assert(type(msg) == 'string', 'no message') "
           "  if path then assert(msg:find(path, 1, true), 'message does not name ' .. path .. ': ' .. msg) end "
           "  if text then assert(msg:find(text, 1, true), 'message lacks \"' .. text .. '\": ' .. msg) end "
           "  assert(math.type(code) == 'integer', 'no errno') "
           "  if want then assert(code == want, msg .. ' (errno ' .. code .. ', wanted ' .. want .. ')') end "
           "end "
           "function failsT(path, want, text, ...) "
           "  local ok, msg, code = ... "
           "  return fails(path, want, ok, msg, code, text) "
           "end "
           "function canary() "
           "  assert(fs.mkdir(P('canary'), tonumber('755', 8))) "
           "  W(P('canary/f'), 'host secret') assert(fs.chmod(P('canary/f'), tonumber('600', 8))) "
           "  return P('canary') "
           "end "
           "function canary_ok() "
           "  assert(R(P('canary/f')) == 'host secret', 'the canary file changed') "
           "  local st = fs.lstat(P('canary/f')) "
           "  assert(st.type == 'file' and st.mode == tonumber('600', 8), 'the canary mode changed') "
           "  assert(st.uid == CANARY_UID, 'the canary owner changed') "
           "  local names = fs.dir(P('canary')) "
           "  assert(#names == 1 and names[1] == 'f', 'the canary dir changed: ' .. table.concat(names, ',')) "
           "end "
           "return true");
  lua_settop(L, 0);
  return L;
}

/* Runs `code` once per resolver, each in T/<mode>/ with T/<mode>/app open
   as the global `root`; checks descriptors are all released. */
static void run_both(lua_State *L, const char *code) {
  for (int mode = 1; mode >= 0; mode--) {
    ct_beneath_set_openat2(mode);
    char dir[PATH_MAX], app[PATH_MAX + 8];
    snprintf(dir, sizeof dir, "%s/%s", t_tmpdir(), mode ? "openat2" : "walk");
    snprintf(app, sizeof app, "%s/app", dir);
    T_ASSERT(mkdir(dir, 0755) == 0);
    T_ASSERT(mkdir(app, 0755) == 0);
    lua_pushstring(L, dir);
    lua_setglobal(L, "T");
    lua_pushinteger(L, (lua_Integer)geteuid());
    lua_setglobal(L, "CANARY_UID");
    lua_gc(L, LUA_GCCOLLECT);
    int before = count_fds();
    T_LUA(L, "root = assert(fs.opendir(P('app'))) return true");
    lua_settop(L, 0);
    if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, 0, 0) != LUA_OK)
      t_fail(__FILE__, __LINE__, "[%s] Lua error: %s", mode ? "openat2" : "walk",
             lua_tostring(L, -1));
    T_LUA(L, "root:close() root = nil collectgarbage() collectgarbage() return true");
    lua_settop(L, 0);
    int after = count_fds();
    if (after != before)
      t_fail(__FILE__, __LINE__, "[%s] descriptors leaked: %d before, %d after",
             mode ? "openat2" : "walk", before, after);
    T_ASSERT(ct_beneath_openat2() == mode);
  }
}

/* ---- the resolver ------------------------------------------------------ */

DEFINE_TEST(env_forces_the_walk) {
  T_ASSERT(setenv("CTCLI_NO_OPENAT2", "1", 1) == 0);
  T_ASSERT(ct_beneath_openat2() == 0);
  T_ASSERT(setenv("CTCLI_NO_OPENAT2", "0", 1) == 0);
  T_ASSERT(ct_beneath_openat2() == 0); /* read once */
}

DEFINE_TEST(env_unset_uses_openat2) {
  T_ASSERT(unsetenv("CTCLI_NO_OPENAT2") == 0);
  T_ASSERT(ct_beneath_openat2() == 1);
}

DEFINE_TEST(symlink_as_final_component) {
  lua_State *L = b_state();
  run_both(L,
           "local c = canary() "
           "assert(fs.symlink(c .. '/f', P('app/log'))) "
           "local d = P('app/log') "
           "for _, o in ipairs({ {}, {write=true}, {write=true, create=true, append=true}, "
           "                     {write=true, trunc=true}, {write=true, create=true} }) do "
           "  fails(d, E.ELOOP, root:open('log', o)) "
           "end "
           "failsT(d, E.ELOOP, 'a symlink, refusing to follow it', root:open('log')) "
           "fails(d, E.ELOOP, root:read('log')) "
           "fails(d, E.ELOOP, root:opendir('log')) "
           "fails(d, E.ELOOP, root:list('log')) "
           "fails(d, E.ELOOP, root:chmod('log', tonumber('777', 8))) "
           "fails(d, nil, root:mkdir('log', tonumber('755', 8), true)) "
           "assert(root:stat('log').type == 'link') "
           "assert(root:exists('log') == true) "
           "assert(root:du('log') == #(c .. '/f')) "
           "if CANARY_UID == 0 then "
           "  assert(root:chown('log', 4242, 4343)) "
           "  local st = fs.lstat(d) assert(st.uid == 4242 and st.gid == 4343, 'the link itself') "
           "end "
           "canary_ok() "
           /* write_atomic replaces the link itself, never writes through it */
           "assert(root:write_atomic('log', 'mine')) "
           "assert(fs.lstat(d).type == 'file' and R(d) == 'mine') "
           "canary_ok() "
           "assert(fs.symlink(c .. '/f', P('app/l2'))) "
           "assert(root:unlink('l2')) canary_ok() ");
}

DEFINE_TEST(symlink_as_intermediate_component) {
  lua_State *L = b_state();
  run_both(L,
           "local c = canary() "
           "assert(fs.symlink(c, P('app/db'))) "
           "assert(fs.mkdir(P('app/real'), tonumber('755', 8))) "
           "assert(fs.symlink('../real', P('app/rel'))) "
           "fails(P('app/db/f'), E.ELOOP, root:open('db/f')) "
           "fails(P('app/db/f'), E.ELOOP, root:open('db/f', {write=true, trunc=true})) "
           "fails(P('app/db/new'), E.ELOOP, root:open('db/new', {write=true, create=true})) "
           "fails(P('app/db/new'), E.ELOOP, root:open('db/new', {write=true, create=true, excl=true})) "
           "fails(P('app/db/x/y'), E.ELOOP, root:mkdir('db/x/y', tonumber('755', 8), true)) "
           "fails(P('app/db/x'), E.ELOOP, root:mkdir('db/x', tonumber('755', 8))) "
           "fails(P('app/db/x/y'), E.ELOOP, root:opendir('db/x/y', tonumber('755', 8))) "
           "fails(P('app/db/f'), E.ELOOP, root:write_atomic('db/f', 'pwned')) "
           "fails(P('app/db/f'), E.ELOOP, root:unlink('db/f')) "
           "fails(P('app/db/f'), E.ELOOP, root:rmtree('db/f')) "
           "fails(P('app/db/f'), E.ELOOP, root:chmod('db/f', tonumber('666', 8))) "
           "fails(P('app/db/f'), E.ELOOP, root:chown('db/f', 1, 1)) "
           "fails(P('app/db/f'), E.ELOOP, root:stat('db/f')) "
           "fails(P('app/db/f'), E.ELOOP, root:rename('db/f', 'stolen')) "
           "fails(P('app/db/g'), E.ELOOP, root:rename('real', 'db/g')) "
           "fails(P('app/db'), E.ELOOP, root:list('db')) "
           "fails(P('app/db/.'), E.ELOOP, root:du('db/.')) "
           "fails(P('app/rel/x'), E.ELOOP, root:open('rel/x', {write=true, create=true})) "
           "assert(not fs.exists(P('app/real/x')), 'a relative link inside is refused too') "
           "canary_ok() "
           "assert(root:rmtree('db')) "
           "assert(not fs.exists(P('app/db'))) canary_ok() ");
}

DEFINE_TEST(fifo_never_hangs) {
  lua_State *L = b_state();
  alarm(20); /* a hang is a failure, not a stuck test run */
  run_both(L,
           "assert(proc.run({'mkfifo', P('app/log')}).code == 0) "
           "local d = P('app/log') "
           "for _, o in ipairs({ {}, {write=true}, {write=true, create=true, append=true}, "
           "                     {write=true, trunc=true} }) do "
           "  fails(d, E.EINVAL, root:open('log', o)) "
           "end "
           "failsT(d, E.EINVAL, 'not a regular file (a FIFO)', root:open('log')) "
           "fails(d, E.EINVAL, root:read('log')) "
           "assert(root:stat('log').type == 'fifo') "
           "assert(root:chmod('log', tonumber('600', 8))) "
           "assert(root:stat('log').mode == tonumber('600', 8)) ");
  alarm(0);
}

/* Dir:rename(from, to, todir): `to` resolves as todir resolves, not as the
   Dir of `from` does. An in_root Dir (an image) renaming into an app's Dir
   must not follow a symlink the app planted there (the walk cannot
   resolve an in_root Dir at all: ENOSYS before anything moves). */
DEFINE_TEST(rename_into_another_dir_resolves_as_that_dir) {
  lua_State *L = b_state();
  run_both(L,
           "assert(fs.mkdir(P('img'), tonumber('755', 8))) W(P('img/f'), 'seed') "
           "assert(fs.mkdir(P('app/real'), tonumber('755', 8))) "
           "assert(fs.symlink('real', P('app/link'))) "
           "local img = assert(fs.opendir(P('img'), {in_root = true})) "
           "if T:sub(-7) == 'openat2' then fails(P('app/link/x'), E.ELOOP, img:rename('f', 'link/x', root)) "
           "else fails(P('img/f'), E.ENOSYS, img:rename('f', 'link/x', root)) end "
           "assert(not fs.exists(P('app/real/x')), 'renamed through the app link') "
           "assert(fs.exists(P('img/f'))) "
           "img:close() ");
}

/* opendir(path, {in_root=true}): an image's tree, whose symlinks (nginx's
   sites-enabled/default) are followed but resolved inside it, as chroot
   would; a FIFO behind one is still never opened. The walk cannot do that:
   ENOSYS, and the caller seeds nothing. */
DEFINE_TEST(in_root_follows_symlinks_inside_the_root) {
  lua_State *L = b_state();
  alarm(20);
  run_both(L,
           "local c = canary() "
           "local sa, se = P('app/etc/nginx/sites-available'), P('app/etc/nginx/sites-enabled') "
           "assert(fs.mkdir(sa, tonumber('755', 8), true)) assert(fs.mkdir(se, tonumber('755', 8))) "
           "W(sa .. '/default', 'server {}') W(P('app/etc/shadow'), 'image shadow') "
           "assert(fs.symlink('/etc/nginx/sites-available/default', se .. '/abs')) "
           "assert(fs.symlink('../sites-available/default', se .. '/rel')) "
           "assert(fs.symlink('../../../../../canary/f', P('app/etc/up'))) "
           "assert(fs.symlink(c .. '/f', P('app/etc/host'))) "
           "assert(fs.symlink('/etc/shadow', P('app/etc/sh'))) "
           "assert(fs.symlink('/etc/nginx', P('app/ngx'))) "
           "assert(fs.symlink('sites-available', P('app/etc/nginx/dirlink'))) "
           "assert(proc.run({'mkfifo', P('app/etc/fifo')}).code == 0) "
           "assert(fs.symlink('/etc/fifo', P('app/etc/lf'))) "
           "local img = assert(fs.opendir(P('app'), {in_root = true})) "
           "if T:sub(-7) == 'openat2' then "
           "  assert(img:read('etc/nginx/sites-enabled/abs') == 'server {}') "
           "  assert(img:read('etc/nginx/sites-enabled/rel') == 'server {}') "
           "  assert(img:read('ngx/sites-enabled/abs') == 'server {}', 'a link on the way') "
           "  assert(img:copyfile('etc/nginx/sites-enabled/abs', P('out'))) "
           "  assert(R(P('out')) == 'server {}') "
           "  assert(img:read('etc/sh') == 'image shadow', 'the image file, not the host one') "
           "  fails(P('app/etc/up'), E.ENOENT, img:read('etc/up')) "
           "  fails(P('app/etc/host'), E.ENOENT, img:copyfile('etc/host', P('o1'))) "
           "  failsT(P('app/etc/lf'), E.EINVAL, 'a FIFO', img:copyfile('etc/lf', P('o2'))) "
           "  failsT(P('app/etc/nginx/dirlink'), E.EINVAL, 'a directory', img:read('etc/nginx/dirlink')) "
           "  assert(not fs.exists(P('o1')) and not fs.exists(P('o2'))) "
           /* a Dir opened from it is its own root */
           "  local sub = assert(img:opendir('etc/nginx')) "
           "  assert(sub:read('sites-enabled/rel') == 'server {}') "
           "  fails(nil, E.ENOENT, sub:read('sites-enabled/abs')) "
           "  sub:close() "
           "else "
           "  fails(P('app/etc/shadow'), E.ENOSYS, img:read('etc/shadow')) "
           "  fails(nil, E.ENOSYS, img:copyfile('etc/nginx/sites-enabled/abs', P('out'))) "
           "end "
           /* creating never follows the last component, and a plain Dir no link */
           "fails(P('app/etc/host'), nil, img:open('etc/host', {write=true, create=true})) "
           "fails(nil, E.ELOOP, root:read('etc/nginx/sites-enabled/rel')) "
           "img:close() canary_ok() ");
  alarm(0);
}

DEFINE_TEST(socket_device_and_directory_are_refused) {
  lua_State *L = b_state();
  run_both(L,
           "assert(root:mkdir('dir', tonumber('755', 8))) "
           "failsT(P('app/dir'), E.EINVAL, 'not a regular file (a directory)', root:open('dir')) "
           "fails(P('app/dir'), E.EINVAL, root:open('dir', {write=true, create=true})) "
           "fails(P('app/dir'), E.EEXIST, root:open('dir', {write=true, create=true, excl=true})) "
           "return true");
}

static void bind_socket(const char *path) {
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  T_ASSERT(s >= 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  T_ASSERT(strlen(path) < sizeof a.sun_path);
  strcpy(a.sun_path, path);
  T_ASSERT(bind(s, (struct sockaddr *)&a, sizeof a) == 0);
  close(s);
}

static int l_bind_socket(lua_State *L) {
  bind_socket(luaL_checkstring(L, 1));
  return 0;
}

static int l_mknod_null(lua_State *L) {
  lua_pushboolean(L, mknod(luaL_checkstring(L, 1), S_IFCHR | 0666, makedev(1, 3)) == 0);
  return 1;
}

DEFINE_TEST(socket_and_device_nodes) {
  lua_State *L = b_state();
  lua_register(L, "bind_socket", l_bind_socket);
  lua_register(L, "mknod_null", l_mknod_null);
  run_both(L,
           "bind_socket(P('app/sock')) "
           "failsT(P('app/sock'), E.EINVAL, 'not a regular file (a socket)', root:open('sock')) "
           "fails(P('app/sock'), E.EINVAL, root:open('sock', {write=true, create=true, append=true})) "
           "fails(P('app/sock'), E.EINVAL, root:read('sock')) "
           "assert(root:stat('sock').type == 'socket') "
           "if mknod_null(P('app/null')) then "
           "  failsT(P('app/null'), E.EINVAL, 'not a regular file (a device)', root:open('null', {write=true})) "
           "  fails(P('app/null'), E.EINVAL, root:read('null')) "
           "  assert(root:stat('null').type == 'char') "
           "end ");
}

DEFINE_TEST(dotdot_and_absolute_paths_are_refused_up_front) {
  lua_State *L = b_state();
  run_both(L,
           "local c = canary() "
           "assert(root:mkdir('a', tonumber('755', 8))) "
           "local dd = \"'..' is not allowed\" "
           "for _, rel in ipairs({'..', '../x', 'a/../../canary/f', 'a/..', 'a/../b', '../canary/f'}) do "
           "  local d = P('app/' .. rel) "
           "  failsT(d, E.EINVAL, dd, root:open(rel)) "
           "  failsT(d, E.EINVAL, dd, root:open(rel, {write=true, create=true})) "
           "  failsT(d, E.EINVAL, dd, root:read(rel)) "
           "  failsT(d, E.EINVAL, dd, root:stat(rel)) "
           "  failsT(d, E.EINVAL, dd, root:exists(rel)) "
           "  failsT(d, E.EINVAL, dd, root:opendir(rel)) "
           "  failsT(d, E.EINVAL, dd, root:opendir(rel, tonumber('755', 8))) "
           "  failsT(d, E.EINVAL, dd, root:mkdir(rel, tonumber('755', 8), true)) "
           "  failsT(d, E.EINVAL, dd, root:write_atomic(rel, 'x')) "
           "  failsT(d, E.EINVAL, dd, root:list(rel)) "
           "  failsT(d, E.EINVAL, dd, root:unlink(rel)) "
           "  failsT(d, E.EINVAL, dd, root:rmdir(rel)) "
           "  failsT(d, E.EINVAL, dd, root:rmtree(rel)) "
           "  failsT(d, E.EINVAL, dd, root:rename(rel, 'z')) "
           "  failsT(d, E.EINVAL, dd, root:rename('a', rel)) "
           "  failsT(d, E.EINVAL, dd, root:chmod(rel, tonumber('777', 8))) "
           "  failsT(d, E.EINVAL, dd, root:chown(rel, 0, 0)) "
           "  failsT(d, E.EINVAL, dd, root:shift_tree(rel, {uid=0, gid=0, size=1}, {uid=1, gid=1})) "
           "  failsT(d, E.EINVAL, dd, root:du(rel)) "
           "end "
           "local abs = c .. '/f' "
           "failsT(abs, E.EINVAL, 'an absolute path is not allowed', root:open(abs)) "
           "fails(abs, E.EINVAL, root:open(abs, {write=true, trunc=true})) "
           "fails(abs, E.EINVAL, root:write_atomic(abs, 'x')) "
           "fails(abs, E.EINVAL, root:rmtree(abs)) "
           "fails(abs, E.EINVAL, root:chmod(abs, 0)) "
           "fails(P('app'), E.EINVAL, root:opendir('/')) "
           "fails(abs, E.EINVAL, root:rename('a', abs)) "
           "canary_ok() "
           /* names that only look like '..' are ordinary */
           "local f = assert(root:open('..a', {write=true, create=true})) f:close() "
           "assert(root:write_atomic('a/b..', 'ok')) assert(root:read('a/b..') == 'ok') "
           "assert(root:read('./a/./b..') == 'ok') ");
}

DEFINE_TEST(symlink_swapped_in_after_opendir) {
  lua_State *L = b_state();
  run_both(L,
           "local c = canary() "
           "assert(root:mkdir('data/sub', tonumber('755', 8), true)) "
           "local data = assert(root:opendir('data')) "
           "local sub = assert(root:opendir('data/sub')) "
           /* the app moves the directories away and plants links to the host */
           "assert(fs.rename(P('app/data'), P('app/data.old'))) "
           "assert(fs.symlink(c, P('app/data'))) "
           "local f = assert(data:open('x', {write=true, create=true})) f:write('into the real dir') f:close() "
           "assert(R(P('app/data.old/x')) == 'into the real dir') "
           "assert(sub:write_atomic('y', 'y')) assert(R(P('app/data.old/sub/y')) == 'y') "
           "fails(P('app/data/x'), E.ELOOP, root:open('data/x')) "
           "fails(P('app/data/f'), E.ELOOP, root:open('data/f', {write=true})) "
           /* a component below the handle swapped for a link */
           "assert(fs.rename(P('app/data.old/sub'), P('app/data.old/sub.old'))) "
           "assert(fs.symlink(c, P('app/data.old/sub'))) "
           "fails(P('app/data/sub/f'), E.ELOOP, data:open('sub/f', {write=true})) "
           "fails(P('app/data/sub/z'), E.ELOOP, data:write_atomic('sub/z', 'z')) "
           "assert(data:path('sub/f') == P('app/data/sub/f'), 'the display path is the one opened') "
           "canary_ok() "
           "data:close() sub:close() "
           "assert(not pcall(data.open, data, 'x'), 'a closed Dir raises') ");
}

/* ---- whole trees ------------------------------------------------------- */

DEFINE_TEST(rmtree_never_leaves_the_tree) {
  lua_State *L = b_state();
  run_both(L,
           "local c = canary() "
           "assert(root:mkdir('t/a/b/c', tonumber('755', 8), true)) "
           "for i = 1, 20 do assert(root:write_atomic('t/a/f' .. i, ('x'):rep(i))) end "
           "assert(fs.symlink(c, P('app/t/a/b/to-canary'))) "
           "assert(fs.symlink(c .. '/f', P('app/t/a/b/c/to-file'))) "
           "assert(fs.symlink('/', P('app/t/root'))) "
           "assert(proc.run({'mkfifo', P('app/t/a/fifo')}).code == 0) "
           "assert(fs.chmod(P('app/t/a/b'), tonumber('500', 8))) "
           "local bytes, files = root:du('t') "
           "assert(files == 24 and bytes >= 210, bytes .. ' ' .. files) "
           "assert(root:rmtree('t')) "
           "assert(not fs.exists(P('app/t'))) "
           "assert(root:rmtree('t'), 'missing is fine') "
           "assert(root:rmtree('no/such/parent')) "
           "canary_ok() "
           /* '' empties the Dir itself, which stays */
           "assert(fs.symlink(c, P('app/l'))) "
           "assert(root:mkdir('x/y', tonumber('700', 8), true)) "
           "assert(root:rmtree('')) "
           "assert(#root:list('') == 0 and fs.stat(P('app')).type == 'dir') "
           "canary_ok() ");
}

static int l_mkfile(lua_State *L) {
  const char *p = luaL_checkstring(L, 1);
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  T_ASSERT(fd >= 0);
  T_ASSERT(fchown(fd, (uid_t)luaL_checkinteger(L, 2), (gid_t)luaL_checkinteger(L, 3)) == 0);
  T_ASSERT(fchmod(fd, (mode_t)luaL_checkinteger(L, 4)) == 0);
  close(fd);
  return 0;
}

DEFINE_TEST(shift_tree_reowns_in_range_ids_only) {
  if (geteuid() != 0) t_skip("chown to other ids needs root");
  lua_State *L = b_state();
  lua_register(L, "mkfile", l_mkfile);
  run_both(L,
           "local c = canary() "
           "assert(fs.chown(P('canary/f'), 1002, 1002)) CANARY_UID = 1002 "
           "assert(root:mkdir('d/sub', tonumber('755', 8), true)) "
           "assert(fs.chown(P('app/d'), 1000, 1000)) "
           "assert(fs.chown(P('app/d/sub'), 1003, 50)) "
           "mkfile(P('app/d/in'), 1005, 1007, tonumber('644', 8)) "
           "mkfile(P('app/d/out'), 5, 5, tonumber('644', 8)) "
           "mkfile(P('app/d/mixed'), 1010, 2000, tonumber('640', 8)) "
           "mkfile(P('app/d/sub/suid'), 1000, 1000, tonumber('6755', 8)) "
           "assert(fs.symlink(c .. '/f', P('app/d/sub/link'))) "
           "assert(fs.lchown(P('app/d/sub/link'), 1001, 1001)) "
           "local from, to = {uid=1000, gid=1000, size=100}, {uid=200000, gid=300000, size=100} "
           "local n = assert(root:shift_tree('d', from, to)) "
           "assert(n == 6, 'changed ' .. tostring(n)) "
           "local function own(rel) local st = fs.lstat(P('app/' .. rel)) return st.uid, st.gid, st.mode end "
           "local u, g = own('d') assert(u == 200000 and g == 300000) "
           "u, g = own('d/sub') assert(u == 200003 and g == 50, 'gid out of range stays') "
           "u, g = own('d/in') assert(u == 200005 and g == 300007) "
           "u, g = own('d/out') assert(u == 5 and g == 5, 'out of range untouched') "
           "u, g = own('d/mixed') assert(u == 200010 and g == 2000) "
           "local m u, g, m = own('d/sub/suid') "
           "assert(u == 200000 and g == 300000 and m == tonumber('6755', 8), 'setuid/setgid kept') "
           "u, g = own('d/sub/link') assert(u == 200001 and g == 300001, 'the link itself') "
           "canary_ok() "
           "assert(root:shift_tree('d', from, to) == 0, 'nothing left in range') "
           "assert(root:shift_tree('d/sub/link', to, from) == 1) "
           "u = own('d/sub/link') assert(u == 1001) canary_ok() ");
}

DEFINE_TEST(shift_tree_refuses_overlapping_ranges) {
  lua_State *L = b_state();
  /* a hard-linked file would be shifted once per link */
  run_both(L,
           "assert(root:mkdir('d', tonumber('755', 8))) "
           "local a, b = {uid=1000, gid=1000, size=100}, {uid=1050, gid=5000, size=100} "
           "assert(not pcall(root.shift_tree, root, 'd', a, b), 'overlapping uids') "
           "assert(not pcall(root.shift_tree, root, 'd', b, {uid=0, gid=4990, size=100}), 'gids') "
           "assert(root:shift_tree('d', a, a) == 0, 'the same range changes nothing') "
           "assert(root:shift_tree('d', a, {uid=1100, gid=900, size=100}) == 0, 'adjacent') ");
}

/* Lua's allocator, failing once `budget` bytes more have been asked for. */
static lua_Alloc real_alloc;
static void *real_ud;
static lua_Integer budget = -1; /* -1: no limit */

static void *limited_alloc(void *ud, void *p, size_t osize, size_t nsize) {
  size_t grow = nsize > (p ? osize : 0) ? nsize - (p ? osize : 0) : 0;
  if (budget >= 0 && grow > 0) {
    if ((lua_Integer)grow > budget) return NULL;
    budget -= (lua_Integer)grow;
  }
  return real_alloc(ud, p, osize, nsize);
}

static int l_oom_after(lua_State *L) {
  budget = luaL_optinteger(L, 1, -1);
  return 0;
}

/* Running out of memory in the middle of a walk releases what the walk held. */
DEFINE_TEST(walk_out_of_memory_leaks_nothing) {
  lua_State *L = b_state();
  real_alloc = lua_getallocf(L, &real_ud);
  lua_setallocf(L, limited_alloc, real_ud);
  lua_register(L, "oom_after", l_oom_after);
  run_both(L,
           "assert(root:mkdir('t/a/b/c', tonumber('755', 8), true)) "
           "for i = 1, 300 do W(P('app/t/a/b/c/f' .. i), '') end "
           "oom_after(20000) local ok, err = pcall(root.walk, root, 't') oom_after() "
           "assert(not ok and tostring(err):find('memory'), tostring(err)) "
           "assert(#assert(root:walk('t')) == 303) ");
  lua_setallocf(L, real_alloc, real_ud);
}

/* ---- files ------------------------------------------------------------- */

DEFINE_TEST(write_atomic_and_read) {
  lua_State *L = b_state();
  run_both(L,
           "assert(root:mkdir('c', tonumber('755', 8))) "
           "assert(root:write_atomic('c/x.json', '{}')) "
           "assert(root:read('c/x.json') == '{}') "
           "assert(root:stat('c/x.json').mode == tonumber('644', 8)) "
           "assert(root:write_atomic('c/x.json', 'second', tonumber('600', 8))) "
           "assert(root:read('c/x.json') == 'second' and root:stat('c/x.json').mode == tonumber('600', 8)) "
           "local names = root:list('c') assert(#names == 1, table.concat(names, ',')) "
           "fails(P('app/nope/x'), E.ENOENT, root:write_atomic('nope/x', 'x')) "
           "fails(P('app/c'), E.EINVAL, root:write_atomic('c/.', 'x')) "
           "failsT(P('app/c/x.json'), E.EFBIG, 'larger than 3 bytes', root:read('c/x.json', 3)) "
           "assert(root:read('c/x.json', 6) == 'second') "
           "fails(P('app/c/missing'), E.ENOENT, root:read('c/missing')) "
           "assert(root:exists('c/missing') == false and root:exists('c/missing/deeper') == false) ");
}

DEFINE_TEST(mkdir_and_opendir_with_create) {
  lua_State *L = b_state();
  umask(077);
  run_both(L,
           "local c = canary() "
           "local d = assert(root:opendir('x/y/z', tonumber('750', 8))) "
           "assert(d:path() == P('app/x/y/z') and d:path('f') == P('app/x/y/z/f')) "
           "assert(root:stat('x').mode == tonumber('750', 8) and root:stat('x/y/z').mode == tonumber('750', 8)) "
           "d:close() "
           "assert(root:mkdir('m', tonumber('2775', 8))) "
           "assert(root:stat('m').mode == tonumber('2775', 8)) "
           "fails(P('app/m'), E.EEXIST, root:mkdir('m', tonumber('755', 8))) "
           "assert(root:mkdir('m', tonumber('755', 8), true), 'an existing dir is fine with parents') "
           "assert(root:write_atomic('file', 'f')) "
           "fails(P('app/file/sub'), E.ENOTDIR, root:mkdir('file/sub', tonumber('755', 8), true)) "
           "fails(P('app/file'), E.ENOTDIR, root:opendir('file')) "
           "assert(fs.symlink(c, P('app/link'))) "
           "fails(P('app/link'), E.ELOOP, root:mkdir('link', tonumber('755', 8))) "
           "fails(P('app/link/sub'), E.ELOOP, root:opendir('link/sub', tonumber('755', 8))) "
           "fails(P('app/nope'), E.ENOENT, root:opendir('nope')) "
           "assert(root:rmdir('m')) fails(P('app/x'), E.ENOTEMPTY, root:rmdir('x')) "
           "canary_ok() ");
}

DEFINE_TEST(rename_within_and_across_dirs) {
  lua_State *L = b_state();
  run_both(L,
           "local c = canary() "
           "assert(root:mkdir('a', tonumber('755', 8))) assert(root:mkdir('b', tonumber('755', 8))) "
           "local a, b = assert(root:opendir('a')), assert(root:opendir('b')) "
           "assert(a:write_atomic('log', 'L')) "
           "assert(a:rename('log', 'log.1')) assert(a:read('log.1') == 'L') "
           "assert(a:rename('log.1', 'moved', b)) "
           "assert(b:read('moved') == 'L' and not a:exists('log.1')) "
           "assert(fs.symlink(c, P('app/b/l'))) "
           "assert(b:rename('l', 'l2', a), 'a link moves itself') "
           "assert(a:stat('l2').type == 'link') "
           "fails(P('app/a/l2/x'), E.ELOOP, b:rename('moved', 'l2/x', a)) "
           "fails(P('app/b/missing'), E.ENOENT, b:rename('missing', 'x')) "
           "a:close() b:close() "
           "canary_ok() ");
}

DEFINE_TEST(file_handles) {
  lua_State *L = b_state();
  run_both(L,
           "local f = assert(root:open('f', {write=true, create=true, mode=tonumber('600', 8)})) "
           "assert(f:write('hello ') and f:write('world')) "
           "assert(f:stat().size == 11 and f:stat().type == 'file' and f:stat().mode == tonumber('600', 8)) "
           "assert(f:seek('set', 0) == 0) "
           "assert(f:read(5) == 'hello') assert(f:read_all() == ' world') assert(f:read(10) == '') "
           "assert(f:seek('end') == 11 and f:seek('cur', -5) == 6) "
           "fails(P('app/f'), E.EFBIG, (function() f:seek('set', 0) return f:read_all(3) end)()) "
           "assert(f:truncate(5) and f:fsync()) f:close() "
           "assert(root:read('f') == 'hello') "
           "assert(not pcall(f.read, f, 1), 'a closed File raises') "
           "fails(P('app/f'), E.EEXIST, root:open('f', {write=true, create=true, excl=true})) "
           "do local g <close> = assert(root:open('f', {write=true, append=true})) g:write('!') end "
           "assert(root:read('f') == 'hello!') "
           "do local g <close> = assert(root:open('f', {write=true, trunc=true})) end "
           "assert(root:read('f') == '') "
           "local r = assert(root:open('f')) "
           "local ok, msg = r:write('x') assert(ok == nil and msg:find(P('app/f'), 1, true)) "
           "r = nil collectgarbage() "
           "assert(not pcall(root.open, root, 'f', {append=true}), 'append needs write') "
           "assert(tostring(root):find('ct.fs.Dir', 1, true)) ");
}

DEFINE_TEST(collapse_copy_and_zstd_on_descriptors) {
  lua_State *L = b_state();
  run_both(L,
           "local data = {} for i = 1, 5000 do data[#data + 1] = string.format('line %05d\\n', i) end "
           "data = table.concat(data) "
           "assert(root:write_atomic('log', data)) "
           /* copy_to from an offset, with and without a length */
           "local src = assert(root:open('log')) "
           "assert(src:seek('set', 11) == 11) "
           "local dst = assert(root:open('part', {write=true, create=true, trunc=true})) "
           "assert(src:copy_to(dst, 22) == 22) "
           "assert(src:copy_to(dst) == #data - 33) dst:close() "
           "assert(root:read('part') == data:sub(12)) "
           /* into an O_APPEND file (copy_file_range refuses those: the fallback) */
           "local app = assert(root:open('app', {write=true, create=true, append=true})) "
           "app:write('head:') src:seek('set', 0) assert(src:copy_to(app, 10) == 10) app:close() "
           "assert(root:read('app') == 'head:' .. data:sub(1, 10)) "
           /* zstd, checked by the zstd tool */
           "src:seek('set', 0) "
           "local z = assert(root:open('log.zst', {write=true, create=true, excl=true})) "
           "local bin, bout = src:zstd_to(z, 3) z:close() src:close() "
           "assert(bin == #data and bout > 0 and bout < #data, bin .. ' ' .. bout) "
           "local r = proc.run({'zstd', '-dc', P('app/log.zst')}) "
           "assert(r.code == 0 and r.stdout == data, 'zstd -dc gives the same bytes') "
           /* collapse: done, or refused with an errno the caller can fall back on */
           "local f = assert(root:open('log', {write=true})) "
           "local bs = f:stat() "
           "local n, msg, err = f:collapse(10000) "
           "if n then "
           "  assert(n > 0 and n <= 10000 and n % 512 == 0, n) "
           "  assert(root:read('log') == data:sub(n + 1)) "
           "else "
           "  assert(msg:find(P('app/log'), 1, true), msg) "
           "  assert(err == E.EOPNOTSUPP or err == E.EINVAL, msg) "
           "  assert(root:read('log') == data, 'unchanged when refused') "
           "end "
           "assert(f:collapse(0) == 0) "
           "f:close() assert(bs.size == #data) "
           "return true ");
}

DEFINE_TEST(proc_and_oci_take_a_file) {
  lua_State *L = b_state();
  run_both(L,
           "local f = assert(root:open('out.log', {write=true, create=true, append=true})) "
           "f:write('before\\n') "
           "local r = assert(proc.run({'sh', '-c', 'echo out; echo err >&2'}, {stdout=f, stderr='stdout'})) "
           "assert(r.code == 0) "
           "local p = assert(proc.spawn({'sh', '-c', 'echo spawned'}, {stdout=f, stderr=f})) "
           "assert(p:wait(10) == 0) p:close() "
           "f:close() "
           "assert(root:read('out.log') == 'before\\nout\\nerr\\nspawned\\n', root:read('out.log')) "
           "assert(not pcall(proc.run, {'true'}, {stdout=f}), 'a closed File raises') ");
}
