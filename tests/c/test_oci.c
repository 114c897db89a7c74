/* runc through ct.proc (a ct.fs.File as its output, foreground) and ctcli.runtime's argv, with a busybox bundle built here. */
#include "harness.h"

#include <unistd.h>

/* A state with globals ct, proc, oci, cjson, tmp, id, rt, helpers, and a
   bundle at tmp/bundle whose container prints a line and sleeps. */
static lua_State *O(void) {
  if (geteuid() != 0) t_skip("runc tests need root");
  lua_State *L = t_state();
  lua_pushstring(L, t_tmpdir());
  lua_setglobal(L, "tmp");
  T_LUA(L,
        "ct = require('ct') proc = ct.proc runtime = require('ctcli.runtime.runc') cjson = require('cjson') "
        "id = 'cttest-' .. proc.getpid() "
        "rt = {runc = 'runc', root = tmp .. '/runc-root'} "
        "function sh(argv) local r, msg = proc.run(argv, {timeout = 60}) "
        "  assert(r, msg) "
        "  assert(r.code == 0, table.concat(argv, ' ') .. ': ' .. r.stderr) return r end "
        "function slurp(path) local f = io.open(path, 'rb') if not f then return '' end "
        "  local s = f:read('a') f:close() return s end "
        "function spit(path, s) local f = assert(io.open(path, 'wb')) f:write(s) f:close() end "
        /* the log as runtime.lua opens it: beneath its directory, for append */
        "function logf(path) "
        "  local dir, base = path:match('^(.*)/([^/]+)$') "
        "  local d = assert(ct.fs.opendir(dir)) "
        "  local f = assert(d:open(base, {write = true, create = true, append = true})) "
        "  d:close() return f "
        "end "
        "function eventually(what, fn) "
        "  for _ = 1, 1000 do if fn() then return true end ct.time.sleep(0.01) end "
        "  error('timed out waiting for ' .. what) end "
        /* runc create with its output on the log */
        "function create(r, cid, b, log, extra) "
        "  local argv = {r.runc, '--root', r.root, 'create', '--bundle', b} "
        "  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end "
        "  argv[#argv + 1] = cid "
        "  local res, msg, err = proc.run(argv, "
        "    {stdout = log, stderr = log, timeout = 60}) "
        "  if not res then return nil, msg, err end "
        "  return res.code == 0 or nil, res.code end "
        "function state(cid) local r = assert(runtime.run(rt, {'state', cid})) "
        "  if r.code ~= 0 then return nil, r.stderr end return cjson.decode(r.stdout) end "
        /* Always removes the container, whatever happened; then fails if body did. */
        "function with_container(cid, body) "
        "  local ok, err = pcall(body) "
        "  pcall(proc.run, {'runc', '--root', rt.root, 'delete', '--force', cid}, {timeout = 60}) "
        "  assert(ok, err) return true end "
        "bundle = tmp .. '/bundle' "
        "sh({'mkdir', '-p', bundle .. '/rootfs/bin'}) "
        "sh({'cp', '/bin/busybox', bundle .. '/rootfs/bin/busybox'}) "
        "for _, n in ipairs({'sh', 'sleep', 'echo', 'cat'}) do "
        "  sh({'ln', '-s', 'busybox', bundle .. '/rootfs/bin/' .. n}) end "
        "sh({'runc', 'spec', '--bundle', bundle}) "
        "local cfg = cjson.decode(slurp(bundle .. '/config.json')) "
        "cfg.process.terminal = false "
        "cfg.process.args = {'/bin/sh', '-c', 'echo hello-from-container; exec sleep 1000'} "
        "cfg.root.path = bundle .. '/rootfs' "
        "cfg.root.readonly = false "
        "spit(bundle .. '/config.json', cjson.encode(cfg)) "
        "return true");
  lua_pop(L, 1);
  return L;
}

DEFINE_TEST(oci_container_lifecycle) {
  lua_State *L = O();
  T_LUA(
      L,
      "local log = tmp .. '/app.log' "
      "local pidf = tmp .. '/init.pid' "
      "return with_container(id, function() "
      "  assert(create(rt, id, bundle, logf(log), {'--pid-file', pidf})) "
      "  local st = assert(state(id)) "
      "  assert(st.status == 'created', st.status) "
      "  local init = assert(tonumber(slurp(pidf))) "
      "  assert(init == st.pid and proc.alive(init)) "
      /* the init is outside our process group */
      "  local stat = slurp('/proc/' .. init .. '/stat') "
      "  local pgrp = tonumber(stat:match('^%d+ %b() %a %d+ (%d+)')) "
      "  local mine = tonumber(slurp('/proc/self/stat'):match('^%d+ %b() %a %d+ (%d+)')) "
      "  assert(pgrp and pgrp ~= mine, stat) "
      "  local r = assert(runtime.run(rt, {'start', id})) "
      "  assert(r.code == 0, r.stderr) "
      "  eventually('the container output', function() "
      "    return slurp(log):find('hello-from-container', 1, true) end) "
      "  assert(state(id).status == 'running') "
      "  r = assert(runtime.run(rt, {'exec', id, 'echo', 'hi'}, {timeout = 60})) "
      "  assert(r.code == 0 and r.stdout == 'hi\\n', r.stderr) "
      "  assert(runtime.exec_tty(rt, id, {'sh', '-c', 'exit 3'}) == 3) "
      /* opts.log: runc's own failure lands in the file, as JSON, and command_status reads it */
      "  local lg = tmp .. '/runc-exec.log' "
      "  local code = runtime.exec_tty(rt, id, {'nosuchcmd'}, {log = lg}) "
      "  assert(code == 255, code) "
      "  local ok, why, kind = runtime.command_status(code, lg) "
      "  assert(ok == nil and kind == 'not-found', tostring(why)) "
      "  r = assert(runtime.run(rt, {'kill', id, 'KILL'})) "
      "  assert(r.code == 0, r.stderr) "
      "  eventually('the container to stop', function() return state(id).status == 'stopped' end) "
      "  r = assert(runtime.run(rt, {'delete', id})) "
      "  assert(r.code == 0, r.stderr) "
      "  assert(state(id) == nil) "
      "end)");
}

DEFINE_TEST(oci_create_failure_is_read_in_lua) {
  lua_State *L = O();
  T_LUA(L, "local log = tmp .. '/app.log' "
           "sh({'mkdir', '-p', tmp .. '/empty-bundle'}) "
           "return with_container(id, function() "
           "  local ok, code = create(rt, id, tmp .. '/empty-bundle', logf(log)) "
           "  assert(ok == nil and code ~= 0, 'created without a config.json') "
           "  local msg = runtime.message(slurp(log)) "
           "  assert(msg:find('config.json', 1, true) and not msg:find('level=', 1, true), msg) "
           "  local r, m, e = create({runc = tmp .. '/no-runc', root = rt.root}, id, bundle, logf(log)) "
           "  assert(r == nil and e == 2 and m == tmp .. '/no-runc: No such file or directory', m) "
           "  assert(not pcall(proc.run, {'cat'}, {foreground = true, stdin = 'x'})) "
           "end)");
}

DEFINE_TEST(oci_runc_wrapper_passes_root_and_options) {
  lua_State *L = O();
  T_LUA(L, "local r = assert(runtime.run(rt, {'list', '--format', 'json'}, {timeout = 60})) "
           "assert(r.code == 0, r.stderr) "
           "assert(r.stdout == 'null\\n' or r.stdout:sub(1, 1) == '[', r.stdout) "
           "r = assert(runtime.run(rt, {'state', 'cttest-no-such-container'})) "
           "assert(r.code ~= 0 and r.stderr ~= '') "
           "r = assert(runtime.run(rt, {'state', 'cttest-no-such-container'}, {stderr = 'stdout'})) "
           "assert(r.code ~= 0 and r.stderr == '' and r.stdout ~= '') "
           "return true");
}
