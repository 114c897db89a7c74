/* ct.monitor against the real runc, with busybox bundles built here: the
   monitor is this test binary re-executed (harness.c hands it over). */
#include "harness.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Globals: ct, proc, cjson, tmp, rt; bundle(name, script) makes a bundle
   whose init runs `sh -c script`; spawn(name, script, opts) starts its
   monitor (restart "no" unless opts say) and returns a record c with id,
   mpid, init, logs, state (Dirs) and paths; st(c) reads state.json;
   cleanup(c) kills the monitor and deletes the container. */
static lua_State *S(void) {
  if (geteuid() != 0) t_skip("runc tests need root");
  lua_State *L = t_state();
  lua_pushstring(L, t_tmpdir());
  lua_setglobal(L, "tmp");
  T_LUA(L,
        "ct = require('ct') proc = ct.proc cjson = require('cjson') "
        "rt = {runc = 'runc', root = tmp .. '/runc-root'} "
        "function sh(argv) local r, msg = proc.run(argv, {timeout = 60}) "
        "  assert(r, msg) "
        "  assert(r.code == 0, table.concat(argv, ' ') .. ': ' .. r.stderr) return r end "
        "function slurp(path) local f = io.open(path, 'rb') if not f then return nil end "
        "  local s = f:read('a') f:close() return s end "
        "function spit(path, s) local f = assert(io.open(path, 'wb')) f:write(s) f:close() end "
        "function eventually(what, fn, secs) "
        "  for _ = 1, (secs or 20) * 100 do if fn() then return true end ct.time.sleep(0.01) end "
        "  error('timed out waiting for ' .. what) end "
        "function bundle(name, script) "
        "  local b = tmp .. '/' .. name .. '/bundle' "
        "  sh({'mkdir', '-p', b .. '/rootfs/bin'}) "
        "  sh({'cp', '/bin/busybox', b .. '/rootfs/bin/busybox'}) "
        "  for _, n in ipairs({'sh', 'sleep', 'echo', 'seq', 'head', 'tr', 'printf'}) do "
        "    sh({'ln', '-s', 'busybox', b .. '/rootfs/bin/' .. n}) end "
        "  sh({'runc', 'spec', '--bundle', b}) "
        "  local cfg = cjson.decode(slurp(b .. '/config.json')) "
        "  cfg.process.terminal = false "
        "  cfg.process.args = {'/bin/sh', '-c', script} "
        "  cfg.root.path = b .. '/rootfs' "
        "  cfg.root.readonly = false "
        "  spit(b .. '/config.json', cjson.encode(cfg)) "
        "  return b end "
        "function runc(...) return {rt.runc, '--root', rt.root, ...} end "
        "function spawn(name, script, opts) "
        "  local dir = tmp .. '/' .. name "
        "  local b = script and bundle(name, script) or dir .. '/empty' "
        "  sh({'mkdir', '-p', dir .. '/logs', dir .. '/state', b}) "
        "  local c = {id = 'ctmon-' .. proc.getpid() .. '-' .. name, dir = dir} "
        "  c.logs = assert(ct.fs.opendir(dir .. '/logs')) "
        "  c.state = assert(ct.fs.opendir(dir .. '/state')) "
        "  local pidf = dir .. '/state/init.pid' "
        "  local o = {id = c.id, logs = c.logs, state = c.state, pid_file = pidf, "
        "    create = runc('create', '--bundle', b, '--pid-file', pidf, c.id), "
        "    start = runc('start', c.id), delete = runc('delete', '--force', c.id), "
        "    restart = 'no', log_max = 1 << 20, log_keep = 5, timeout = 60, runc_timeout = 60} "
        "  for k, v in pairs(opts or {}) do o[k] = v end "
        "  c.mpid, c.init = require('ctcli.runtime.monitor').launch(o) "
        "  return c, c.init end "
        "function st(c) local s = slurp(c.dir .. '/state/state.json') "
        "  return s and cjson.decode(s) or {} end "
        "function log_lines(c) local out = {} "
        "  local names = {} "
        "  for _, n in ipairs(ct.fs.dir(c.dir .. '/logs')) do "
        "    if n:match('^%d+%.log$') then names[#names + 1] = n end end "
        "  table.sort(names) names[#names + 1] = 'current.log' "
        "  for _, n in ipairs(names) do "
        "    for l in (slurp(c.dir .. '/logs/' .. n) or ''):gmatch('[^\\n]*\\n') do "
        "      out[#out + 1] = l:sub(1, -2) end end "
        "  return out, #names - 1 end "
        "function monitor_gone(c) return not proc.alive(c.mpid) end "
        "function cleanup(c) "
        "  if c.mpid and proc.alive(c.mpid) then proc.kill(c.mpid, 9) end "
        "  pcall(proc.run, runc('delete', '--force', c.id), {timeout = 60}) end "
        "function with(c, body) local ok, err = pcall(body) cleanup(c) "
        "  assert(ok, err) return true end "
        "return true");
  lua_pop(L, 1);
  return L;
}

DEFINE_TEST(monitor_records_exit_code) {
  lua_State *L = S();
  T_LUA(L, "local c, init = spawn('exit7', 'echo hello; echo oops >&2; sleep 0.5; exit 7') "
           "assert(init, c.init == nil and 'spawn failed') "
           "return with(c, function() "
           "  assert(math.type(c.mpid) == 'integer' and c.mpid > 1 and init > 1) "
           /* detached: its own session, not our child */
           "  local stat = slurp('/proc/' .. c.mpid .. '/stat') "
           "  local sid = stat and tonumber(stat:match('^%d+ %b() %a %d+ %d+ (%d+)')) "
           "  assert(sid == nil or sid ~= tonumber(slurp('/proc/self/stat'):match('^%d+ %b() %a %d+ %d+ (%d+)'))) "
           "  eventually('the exit', function() return st(c).state == 'exited' end) "
           "  local s = st(c) "
           "  assert(s.last_exit.code == 7 and s.last_exit.signal == nil, cjson.encode(s)) "
           "  assert(s.runs == 1 and s.restarts == 0 and s.last_exit.run == 1, cjson.encode(s)) "
           "  eventually('the monitor to exit', function() return monitor_gone(c) end) "
           "  assert(not ct.fs.exists(c.dir .. '/state/monitor.sock')) "
           "  local lines = table.concat(log_lines(c), '\\n') "
           "  assert(lines:find('%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d+Z stdout F hello'), lines) "
           "  assert(lines:find(' stderr F oops', 1, true), lines) "
           "  assert(lines:find(' ctcli F run 1 exited with code 7', 1, true), lines) "
           "end)");
}

DEFINE_TEST(monitor_restarts_after_kill9) {
  lua_State *L = S();
  T_LUA(L, "local c, init = spawn('kill9', 'exec sleep 1000', {restart = 'on-failure', "
           "  backoff_initial = 0.05, backoff_max = 1, crash_limit = 3, quick_run = 10}) "
           "assert(init, c.init == nil and 'spawn failed') "
           "return with(c, function() "
           "  assert(proc.kill(init, 9)) "
           "  eventually('the restart', function() local s = st(c) "
           "    return s.state == 'running' and s.runs == 2 end) "
           "  local s = st(c) "
           "  assert(s.restarts == 1 and s.last_exit.signal == 9 and s.last_exit.code == nil, cjson.encode(s)) "
           "  assert(s.pid ~= init and proc.alive(s.pid), cjson.encode(s)) "
           "  local r = assert(ct.monitor.request(c.state, 'stop', 5000)) "
           "  assert(r == 'ok stopping', r) "
           "  sh(runc('kill', c.id, 'KILL')) "
           "  eventually('the monitor to exit', function() return monitor_gone(c) end) "
           "  s = st(c) "
           "  assert(s.state == 'exited' and s.restarts == 1 and s.runs == 2, cjson.encode(s)) "
           "end)");
}

DEFINE_TEST(monitor_fails_after_crash_loop_limit) {
  lua_State *L = S();
  T_LUA(L, "local c, init = spawn('exit3', 'exit 3', {restart = 'on-failure', "
           "  backoff_initial = 0.05, backoff_max = 0.2, crash_limit = 3, quick_run = 10}) "
           "assert(init, c.init == nil and 'spawn failed') "
           "return with(c, function() "
           "  eventually('the failed state', function() return st(c).state == 'failed' end) "
           "  local s = st(c) "
           "  assert(s.runs == 3 and s.restarts == 2 and s.quick_failures == 3, cjson.encode(s)) "
           "  assert(s.last_exit.code == 3 and s.last_exit.run == 3, cjson.encode(s)) "
           "  eventually('the monitor to exit', function() return monitor_gone(c) end) "
           "  ct.time.sleep(0.5) "
           "  assert(st(c).runs == 3) "
           "  local lines = table.concat(log_lines(c), '\\n') "
           "  assert(lines:find('3 quick failures in a row', 1, true), lines) "
           "end)");
}

DEFINE_TEST(monitor_stop_means_no_restart) {
  lua_State *L = S();
  /* pid 1 of a pid namespace dies of TERM only through a handler */
  T_LUA(L, "local c, init = spawn('stop', 'trap \"exit 5\" TERM; sleep 1000 & wait', {restart = 'always', "
           "  backoff_initial = 0.01, backoff_max = 0.01, crash_limit = 0, quick_run = 0}) "
           "assert(init, c.init == nil and 'spawn failed') "
           "return with(c, function() "
           "  local r, v = assert(ct.monitor.request(c.state, 'stop')) "
           "  assert(r == 'ok stopping' and v == 1, r) "
           "  assert(st(c).state == 'stopping') "
           "  sh(runc('kill', c.id, 'TERM')) "
           "  eventually('the monitor to exit', function() return monitor_gone(c) end) "
           "  local s = st(c) "
           "  assert(s.state == 'exited' and s.runs == 1 and s.restarts == 0, cjson.encode(s)) "
           "  assert(s.last_exit.code == 5, cjson.encode(s)) "
           "  local r2, m = ct.monitor.request(c.state, 'status', 1000) "
           "  assert(r2 == nil and m:find('monitor.sock', 1, true), m) "
           "end)");
}

DEFINE_TEST(monitor_log_rotation_keeps_every_line) {
  lua_State *L = S();
  T_LUA(L, "local n = 20000 "
           "local c, init = spawn('lines', 'seq 1 ' .. n .. '; echo e1 >&2; "
           "  head -c 20000 /dev/zero | tr \"\\\\0\" x; echo; seq 1 5 >&2; printf no-newline', "
           "  {log_max = 65536, log_keep = 100}) "
           "assert(init, c.init == nil and 'spawn failed') "
           "return with(c, function() "
           "  eventually('the exit', function() return st(c).state == 'exited' end) "
           "  local lines, rotated = log_lines(c) "
           "  assert(rotated >= 5, 'only ' .. rotated .. ' rotations') "
           "  local out, err, long = {}, {}, {} "
           "  for _, l in ipairs(lines) do "
           "    local tag, flag, text = l:match('^%S+ (%S+) ([FP]) (.*)$') "
           "    assert(tag, 'a malformed record: ' .. l) "
           "    if tag == 'stdout' and (flag == 'P' or #long > 0) then long[#long + 1] = text "
           "      if flag == 'F' then out[#out + 1] = table.concat(long) long = {} end "
           "    elseif tag == 'stdout' then out[#out + 1] = text "
           "    elseif tag == 'stderr' then err[#err + 1] = text end "
           "  end "
           "  assert(#out == n + 2, #out) "
           "  for i = 1, n do assert(out[i] == tostring(i), 'line ' .. i .. ': ' .. tostring(out[i])) end "
           "  assert(out[n + 1] == string.rep('x', 20000), #out[n + 1]) "
           "  assert(out[n + 2] == 'no-newline', out[n + 2]) "
           "  assert(table.concat(err, ',') == 'e1,1,2,3,4,5', table.concat(err, ',')) "
           "  local size = 0 "
           "  for _, f in ipairs(ct.fs.dir(c.dir .. '/logs')) do "
           "    local s = assert(ct.fs.stat(c.dir .. '/logs/' .. f)) "
           "    assert(s.size <= 65536 + 8300, f .. ' is ' .. s.size) size = size + s.size end "
           "end)");
}

DEFINE_TEST(monitor_answers_status_on_its_socket) {
  lua_State *L = S();
  T_LUA(L, "local c, init = spawn('status', 'echo started; exec sleep 1000', {restart = 'on-failure', "
           "  backoff_initial = 0.05, backoff_max = 1, crash_limit = 3, quick_run = 10, "
           "  uid = 1234, gid = 4321, log_keep = 1}) "
           "assert(init, c.init == nil and 'spawn failed') "
           "return with(c, function() "
           "  local r, v = assert(ct.monitor.request(c.state, 'status', 5000)) "
           "  assert(v == ct.monitor.protocol and r:sub(1, 3) == 'ok ', r) "
           "  local s = cjson.decode(r:sub(4)) "
           "  assert(s.version == 1 and s.state == 'running' and s.pid == init, r) "
           "  assert(s.monitor_pid == c.mpid and s.runs == 1 and s.restarts == 0, r) "
           "  assert(s.last_exit == nil and s.id == c.id, r) "
           /* the pipes belong to the given group (runc itself gives their
              uid to the process's user) */
           "  local out = assert(ct.fs.stat('/proc/' .. init .. '/fd/1')) "
           "  assert(out.gid == 4321, out.uid .. ':' .. out.gid) "
           "  r = assert(ct.monitor.request(c.state, 'what')) "
           "  assert(r == 'error unknown request: what', r) "
           "  assert(not pcall(ct.monitor.request, c.state, 'two\\nlines')) "
           /* rotate keeps log_keep numbered files */
           "  eventually('the first line', function() return #log_lines(c) > 1 end) "
           "  assert(ct.monitor.request(c.state, 'rotate') == 'ok 1') "
           "  ct.monitor.request(c.state, 'rotate') "
           "  local files = ct.fs.dir(c.dir .. '/logs') table.sort(files) "
           "  assert(#files == 2 and files[1]:match('^0+%d%.log$') and files[2] == 'current.log', "
           "    table.concat(files, ' ')) "
           /* a new monitor numbers on from there, the ones beyond keep gone */
           "  local logs = assert(ct.fs.opendir(c.dir .. '/logs')) "
           "  assert(logs:write_atomic('00000000.log', 'old\\n')) "
           "  local newest = tonumber(files[1]:match('%d+')) "
           "  assert(require('ctcli.runtime.monitor').rotated(logs, 1) == newest and not logs:exists('00000000.log')) "
           "  logs:close() "
           /* exit-when-done: the next exit is the last, whatever the policy */
           "  assert(ct.monitor.request(c.state, 'exit-when-done') == 'ok') "
           "  assert(proc.kill(init, 9)) "
           "  eventually('the monitor to exit', function() return monitor_gone(c) end) "
           "  s = st(c) "
           "  assert(s.state == 'exited' and s.restarts == 0 and s.last_exit.signal == 9, cjson.encode(s)) "
           "end)");
}

DEFINE_TEST(monitor_reports_create_error) {
  lua_State *L = S();
  T_LUA(L, "local c = spawn('broken', nil) "
           "return with(c, function() "
           "  assert(c.mpid == nil, 'spawned without a config.json') "
           "  local msg = c.init "
           "  assert(type(msg) == 'string' and msg:find('runc create', 1, true) and "
           "    msg:find('config.json', 1, true), tostring(msg)) "
           "  local s = st(c) "
           "  assert(s.state == 'failed' and s.runs == 0 and s.error == msg, cjson.encode(s)) "
           "  local config = require('ctcli.runtime.monitor').config "
           "  assert(not pcall(config, {id = 'x'})) "
           "  assert(not pcall(config, {id = 'x', restart = 'sometimes'})) "
           "  assert(not pcall(ct.monitor.spawn, 'x', 'ctcli-monitor-config=' .. ct.monitor.config_version .. '\\0', c.logs, nil, 1)) "
           /* the monitor itself refuses what the encoder would not write */
           "  local m1, m2 = ct.monitor.spawn('x', 'ctcli-monitor-config=' .. ct.monitor.config_version .. '\\0id=x\\0', c.logs, c.state, 10) "
           "  assert(m1 == nil and m2 == 'config: incomplete config', m2) "
           "  m1, m2 = ct.monitor.spawn('x', 'ctcli-monitor-config=' .. ct.monitor.config_version .. '\\0logs_fd=4\\0', c.logs, c.state, 10) "
           "  assert(m1 == nil and m2 == 'config: logs_fd', m2) "
           "  m1, m2 = ct.monitor.spawn('x', 'ctcli-monitor-config=1\\0id=x\\0', c.logs, c.state, 10) "
           "  assert(m1 == nil and m2 == 'config: unsupported config version', m2) "
           "  local ok, m = ct.monitor.request(c.logs, 'status', 100) "
           "  assert(ok == nil and m:find(c.dir .. '/logs/monitor.sock', 1, true), m) "
           "  assert(not pcall(ct.monitor.request, c.dir .. '/state/monitor.sock', 'status')) "
           "end)");
}

DEFINE_TEST(monitor_moves_into_its_cgroup) {
  /* The unified hierarchy, else v1's freezer (as test_proc's cgroup cases);
     a parent of our own, removed at the end. */
  lua_State *L = S();
  const char *base = NULL;
  if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0)
    base = "/sys/fs/cgroup";
  else if (access("/sys/fs/cgroup/freezer/cgroup.procs", F_OK) == 0)
    base = "/sys/fs/cgroup/freezer";
  else
    t_skip("no cgroup v2 and no v1 freezer hierarchy mounted");
  char parent[256];
  snprintf(parent, sizeof parent, "%s/ctcli-test-%d", base, (int)getpid());
  if (mkdir(parent, 0755) != 0) t_skip("cannot create a cgroup here");
  lua_pushstring(L, parent);
  lua_setglobal(L, "cgparent");
  T_LUA(L, "local cg = cgparent .. '/monitor' "
           "local c, init = spawn('cgroup', 'exec sleep 1000', {cgroup = cg}) "
           "local ok, err = pcall(function() "
           "  assert(init, c.init == nil and 'spawn failed') "
           "  with(c, function() "
           "    local mine = slurp('/proc/' .. c.mpid .. '/cgroup') "
           "    assert(mine:find(cg:match('/ctcli%-test%-%d+/monitor$'), 1, true), mine) "
           "    assert(slurp(cg .. '/cgroup.procs'):match('^(%d+)') == tostring(c.mpid)) "
           "    assert(ct.monitor.request(c.state, 'stop') == 'ok stopping') "
           "    sh(runc('kill', c.id, 'KILL')) "
           "    eventually('the monitor to exit', function() return monitor_gone(c) end) "
           "  end) end) "
           "eventually('the cgroup to empty', function() return slurp(cg .. '/cgroup.procs') == '' end, 5) "
           "ct.fs.rmdir(cg) ct.fs.rmdir(cgparent) "
           "assert(ok, err) "
           "assert(not ct.fs.exists(cgparent), 'the cgroup is still there') "
           "return true");
}

/* A stand-in for journald: jbind(path) -> fd of a SOCK_DGRAM socket bound
   there; jrecv(fd) -> the datagrams queued now, as strings; jclose(fd). */
static int l_jbind(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  T_ASSERT(strlen(path) < sizeof a.sun_path);
  memcpy(a.sun_path, path, strlen(path));
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  T_ASSERT(fd >= 0);
  T_ASSERT(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
  lua_pushinteger(L, fd);
  return 1;
}

static int l_jrecv(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  static char buf[1 << 17];
  lua_newtable(L);
  for (lua_Integer i = 1;; i++) {
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    T_ASSERT((size_t)n <= sizeof buf);
    lua_pushlstring(L, buf, (size_t)n);
    lua_rawseti(L, -2, i);
  }
  return 1;
}

static int l_jclose(lua_State *L) {
  close((int)luaL_checkinteger(L, 1));
  return 0;
}

static lua_State *J(void) {
  lua_State *L = S();
  lua_register(L, "jbind", l_jbind);
  lua_register(L, "jrecv", l_jrecv);
  lua_register(L, "jclose", l_jclose);
  /* fields(datagram): KEY=value lines */
  T_LUA(L, "function fields(d) local f = {} "
           "  assert(d:sub(-1) == '\\n', 'a field without its newline') "
           "  for line in d:gmatch('([^\\n]*)\\n') do "
           "    local k, v = assert(line:match('^([A-Z_]+)=(.*)$')) f[k] = v end "
           "  return f end "
           "function collect(fd, into) for _, d in ipairs(jrecv(fd)) do into[#into + 1] = fields(d) end "
           "  return into end "
           "return true");
  lua_pop(L, 1);
  return L;
}

DEFINE_TEST(monitor_forwards_to_the_journal) {
  lua_State *L = J();
  /* Its fields are KEY=value lines: a newline in one is refused before any monitor runs. */
  T_LUA(L, "local ok, err = pcall(require('ctcli.runtime.monitor').config, {id = 'x', pid_file = 'p', "
           "  restart = 'no', log_max = 1, log_keep = 1, create = {'a'}, start = {'b'}, delete = {'c'}, "
           "  journal = '/j', journal_name = 'box\\nsecond line'}) "
           "assert(not ok and err:find('no newline', 1, true), err) "
           "return true");
  T_LUA(L, "local sock = tmp .. '/journal.sock' "
           "local jfd = jbind(sock) "
           "local got = {} "
           "local c, init = spawn('journal', 'echo one; echo two >&2; "
           "  head -c 10000 /dev/zero | tr \"\\\\0\" y; echo; echo three', "
           "  {journal = sock, journal_name = 'web'}) "
           "assert(init, c.init == nil and 'spawn failed') "
           "return with(c, function() "
           "  eventually('the exit', function() collect(jfd, got) return st(c).state == 'exited' end) "
           "  collect(jfd, got) jclose(jfd) "
           "  local msgs = {} "
           "  for _, f in ipairs(got) do msgs[#msgs + 1] = (f.MESSAGE or '?'):sub(1, 10) end "
           "  assert(#got == 5, #got .. ' entries: ' .. table.concat(msgs, ',')) "
           "  for _, f in ipairs(got) do "
           "    assert(f.SYSLOG_IDENTIFIER == 'web' and f.CONTAINER_NAME == 'web' and f.CONTAINER_ID == c.id, "
           "      cjson.encode(f)) end "
           "  local by = {} for _, f in ipairs(got) do by[f.MESSAGE] = f end "
           "  assert(by.one and by.one.PRIORITY == '6', cjson.encode(got)) "
           "  assert(by.two and by.two.PRIORITY == '3', cjson.encode(got)) "
           "  assert(by.three and by.three.PRIORITY == '6' and by.three.CONTAINER_PARTIAL_MESSAGE == nil) "
           /* a line longer than the monitor's buffer: its pieces, the first marked partial */
           "  local p1, p2 = by[string.rep('y', 8192)], by[string.rep('y', 10000 - 8192)] "
           "  assert(p1 and p1.CONTAINER_PARTIAL_MESSAGE == 'true', cjson.encode(msgs)) "
           "  assert(p2 and p2.CONTAINER_PARTIAL_MESSAGE == nil) "
           "  local lines = table.concat(log_lines(c), '\\n') "
           "  assert(lines:find(' stdout F one\\n', 1, true) and lines:find(' stderr F two\\n', 1, true) and "
           "    lines:find(' stdout F three\\n', 1, true), lines) "
           "  local s = st(c) "
           "  assert(s.journal_errors == 0 and s.last_exit.code == 0, cjson.encode(s)) "
           "end)");
}

DEFINE_TEST(monitor_journal_failures_never_stop_it) {
  lua_State *L = J();
  /* No socket there: every line fails, is counted, and is still logged. */
  T_LUA(L, "local c, init = spawn('nojournal', 'echo a; echo b >&2; echo c', "
           "  {journal = tmp .. '/nowhere.sock', journal_name = 'web'}) "
           "assert(init, c.init == nil and 'spawn failed') "
           "return with(c, function() "
           "  eventually('the exit', function() return st(c).state == 'exited' end) "
           "  local s = st(c) "
           "  assert(s.journal_errors == 3 and s.log_errors == 0 and s.last_exit.code == 0, cjson.encode(s)) "
           "  local lines = table.concat(log_lines(c), '\\n') "
           "  assert(lines:find(' stdout F a\\n', 1, true) and lines:find(' stderr F b\\n', 1, true) and "
           "    lines:find(' stdout F c\\n', 1, true), lines) "
           "  assert(lines:find('cannot forward to the journal at ' .. tmp .. '/nowhere.sock', 1, true), lines) "
           "end)");
  /* A journal that never reads: its queue fills, sends fail at once (never
     block), and every line is either queued or counted. */
  T_LUA(L, "local sock = tmp .. '/full.sock' "
           "local jfd = jbind(sock) "
           "local n = 300 "
           "local c, init = spawn('fulljournal', 'seq 1 ' .. n, {journal = sock}) "
           "assert(init, c.init == nil and 'spawn failed') "
           "return with(c, function() "
           "  eventually('the exit', function() return st(c).state == 'exited' end) "
           "  local got = collect(jfd, {}) jclose(jfd) "
           "  local s = st(c) "
           "  assert(s.journal_errors > 0 and #got + s.journal_errors == n, #got .. ' + ' .. cjson.encode(s)) "
           "  for i, f in ipairs(got) do assert(f.MESSAGE == tostring(i) and f.SYSLOG_IDENTIFIER == nil) end "
           "  local out = 0 "
           "  for _, l in ipairs(log_lines(c)) do if l:find(' stdout F %d+$') then out = out + 1 end end "
           "  assert(out == n, out) "
           "end)");
}
