/* ct.proc: real programs, real process groups, real signals. */
#include "harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* A state with globals `ct`, `proc`, `tmp` and wait_dead(pid). */
static lua_State *P(void) {
  lua_State *L = t_state();
  lua_pushstring(L, t_tmpdir());
  lua_setglobal(L, "tmp");
  T_LUA(L,
        "ct = require('ct') proc = ct.proc "
        "function wait_dead(pid) "
        "  for _ = 1, 500 do if not proc.alive(pid) then return true end ct.time.sleep(0.01) end "
        "  error('pid ' .. pid .. ' is still alive') "
        "end "
        "function slurp(path) local f = assert(io.open(path, 'rb')) local s = f:read('a') "
        "  f:close() return s end "
        /* a ct.fs.File for append, as a caller gives one as stdout/stderr */
        "function appender(path) local d = assert(ct.fs.opendir(tmp)) "
        "  local f = assert(d:open(path:match('[^/]+$'), {write = true, create = true, append = true, mode = 420})) "
        "  d:close() return f end "
        "return true");
  lua_pop(L, 1);
  return L;
}

DEFINE_TEST(run_output_and_exit_status) {
  lua_State *L = P();
  T_LUA(L, "local r = assert(proc.run({'echo', 'hello', 'world'})) "
           "assert(r.code == 0 and r.signal == nil and r.timed_out == false, r.code) "
           "assert(r.stdout == 'hello world\\n' and r.stderr == '', r.stdout) "
           "r = assert(proc.run({'sh', '-c', 'echo out; echo err >&2; exit 3'})) "
           "assert(r.code == 3 and r.signal == nil, r.code) "
           "assert(r.stdout == 'out\\n' and r.stderr == 'err\\n') "
           "r = assert(proc.run({'/bin/sh', '-c', 'exit 0'})) "
           "assert(r.code == 0) "
           "r = assert(proc.run({'echo', 42})) "
           "assert(r.stdout == '42\\n') "
           "return true");
}

DEFINE_TEST(run_signal_death_is_128_plus_signal) {
  lua_State *L = P();
  T_LUA(L, "local r = assert(proc.run({'sh', '-c', 'kill -TERM $$'})) "
           "assert(r.code == 143 and r.signal == 15, r.code) "
           "r = assert(proc.run({'sh', '-c', 'kill -KILL $$'})) "
           "assert(r.code == 137 and r.signal == 9 and r.timed_out == false) "
           "return true");
}

DEFINE_TEST(run_stdin_is_fed_or_dev_null) {
  lua_State *L = P();
  T_LUA(L, "local r = assert(proc.run({'cat'}, {stdin = 'abc\\n\\0xyz'})) "
           "assert(r.stdout == 'abc\\n\\0xyz', r.stdout) "
           "r = assert(proc.run({'cat'})) "
           "assert(r.code == 0 and r.stdout == '') "
           "r = assert(proc.run({'cat'}, {stdin = ''})) "
           "assert(r.code == 0 and r.stdout == '') "
           "r = assert(proc.run({'readlink', '/proc/self/fd/0'})) "
           "assert(r.stdout == '/dev/null\\n', r.stdout) "
           /* a child that never reads: EPIPE must not kill us with SIGPIPE */
           "r = assert(proc.run({'true'}, {stdin = string.rep('x', 4 << 20)})) "
           "assert(r.code == 0) "
           "return true");
}

DEFINE_TEST(run_large_output_does_not_deadlock) {
  lua_State *L = P();
  T_LUA(L, "local big = string.rep('0123456789abcdef', 10 * 65536) "
           "assert(#big == 10485760) "
           /* tee writes both streams while we still feed its stdin */
           "local r = assert(proc.run({'tee', '/dev/stderr'}, {stdin = big, timeout = 120})) "
           "assert(r.code == 0 and r.timed_out == false) "
           "assert(#r.stdout == #big and r.stdout == big, #r.stdout) "
           "assert(#r.stderr == #big and r.stderr == big, #r.stderr) "
           "r = assert(proc.run({'head', '-c', '10485760', '/dev/zero'}, {timeout = 120})) "
           "assert(#r.stdout == 10485760) "
           "return true");
}

DEFINE_TEST(run_missing_program_is_enoent) {
  lua_State *L = P();
  T_LUA(
      L,
      "local r, msg, err = proc.run({'ct-no-such-program-4711'}) "
      "assert(r == nil and msg == 'ct-no-such-program-4711: No such file or directory', msg) "
      "assert(err == 2) "
      "r, msg, err = proc.run({'/nonexistent/prog'}) "
      "assert(r == nil and msg == '/nonexistent/prog: No such file or directory' and err == 2) "
      "local f = assert(io.open(tmp .. '/noexec', 'w')) f:write('#!/bin/sh\\n') f:close() "
      "r, msg, err = proc.run({tmp .. '/noexec'}) "
      "assert(r == nil and err == 13, msg) "
      "r, msg, err = proc.run({'echo'}, {cwd = '/nonexistent-dir'}) "
      "assert(r == nil and msg == '/nonexistent-dir: No such file or directory' and err == 2, msg) "
      "r, msg, err = proc.spawn({'ct-no-such-program-4711'}) "
      "assert(r == nil and err == 2, msg) "
      "return true");
}

DEFINE_TEST(run_env_add_adds) {
  setenv("CT_PARENT_VAR", "parent", 1);
  lua_State *L = P();
  T_LUA(L, "local function vars(s) local t = {} "
           "  for k, v in s:gmatch('([^=\\n]+)=([^\\n]*)') do t[k] = v end return t end "
           "local r = assert(proc.run({'env'}, {env_add = {CT_X = 'y', CT_PARENT_VAR = 'over'}})) "
           "local v = vars(r.stdout) "
           "assert(v.CT_X == 'y' and v.CT_PARENT_VAR == 'over' and v.PATH ~= nil, r.stdout) "
           /* the program is found in the PATH the child gets */
           "r, v = proc.run({'ct-no-such-program-4711'}, {env_add = {PATH = tmp}}) "
           "assert(r == nil, v) "
           "local f = assert(io.open(tmp .. '/ct-here', 'w')) f:write('#!/bin/sh\\necho found\\n') f:close() "
           "assert(proc.run({'chmod', '755', tmp .. '/ct-here'}).code == 0) "
           "r = assert(proc.run({'ct-here'}, {env_add = {PATH = '/nonexistent:' .. tmp}})) "
           "assert(r.stdout == 'found\\n', r.stdout .. r.stderr) "
           "return true");
}

DEFINE_TEST(run_cwd) {
  lua_State *L = P();
  T_LUA(L, "local f = assert(io.open(tmp .. '/marker', 'w')) f:write('here') f:close() "
           "local r = assert(proc.run({'cat', 'marker'}, {cwd = tmp})) "
           "assert(r.code == 0 and r.stdout == 'here', r.stderr) "
           "return true");
}

DEFINE_TEST(run_stdout_and_stderr_destinations) {
  umask(022);
  lua_State *L = P();
  T_LUA(
      L,
      "local f = tmp .. '/out.log' "
      "local log = appender(f) "
      "local r = assert(proc.run({'sh', '-c', 'echo one; echo two >&2'}, "
      "  {stdout = log, stderr = 'stdout'})) "
      "assert(r.code == 0 and r.stdout == '' and r.stderr == '') "
      "r = assert(proc.run({'sh', '-c', 'echo three'}, {stdout = log})) "
      "assert(slurp(f) == 'one\\ntwo\\nthree\\n', slurp(f)) "
      "r = assert(proc.run({'sh', '-c', 'echo a; echo b >&2; echo c'}, {stderr = 'stdout'})) "
      "assert(r.stdout == 'a\\nb\\nc\\n' and r.stderr == '', r.stdout) "
      "r = assert(proc.run({'sh', '-c', 'echo a; echo b >&2'}, {stdout = 'null'})) "
      "assert(r.stdout == '' and r.stderr == 'b\\n') "
      "r = assert(proc.run({'sh', '-c', 'echo a; echo b >&2'}, {stderr = 'null'})) "
      "assert(r.stdout == 'a\\n' and r.stderr == '') "
      "r = assert(proc.run({'sh', '-c', 'echo e >&2'}, {stdout = 'null', stderr = log})) "
      "assert(slurp(f) == 'one\\ntwo\\nthree\\ne\\n') "
      "log:close() "
      "r = assert(proc.run({'true'}, {stdout = 'inherit', stderr = 'inherit'})) "
      "assert(r.code == 0) "
      "return true");
  char path[512];
  snprintf(path, sizeof path, "%s/out.log", t_tmpdir());
  struct stat st;
  T_ASSERT(stat(path, &st) == 0);
  T_ASSERT((st.st_mode & 07777) == 0644);
}

DEFINE_TEST(run_child_gets_own_group_clean_signals_and_no_fds) {
  /* What the child must not inherit from us. */
  signal(SIGPIPE, SIG_IGN);
  signal(SIGUSR2, SIG_IGN);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigprocmask(SIG_BLOCK, &set, NULL);
  int fd = open("/dev/null", O_RDONLY); /* no O_CLOEXEC on purpose */
  T_ASSERT(fd >= 0 && dup2(fd, 57) == 57);
  lua_State *L = P();
  T_LUA(L, "local r = assert(proc.run({'cat', '/proc/self/stat'})) "
           "local pid, ppid, pgrp = r.stdout:match('^(%d+) %b() %a (%d+) (%d+)') "
           "assert(pid and pid == pgrp, r.stdout) "
           "assert(tonumber(ppid) == proc.getpid()) "
           "r = assert(proc.run({'cat', '/proc/self/status'})) "
           "assert(r.stdout:find('\\nSigBlk:%s+0+\\n'), r.stdout) "
           "assert(r.stdout:find('\\nSigIgn:%s+0+\\n'), r.stdout) "
           "r = assert(proc.run({'ls', '/proc/self/fd'})) "
           "local fds = {} for n in r.stdout:gmatch('%d+') do fds[#fds + 1] = tonumber(n) end "
           "for _, n in ipairs(fds) do assert(n <= 3, 'inherited fd ' .. n) end "
           "return true");
}

/* foreground: our group (a terminal's ^C reaches it), and we ignore that ^C while it runs. */
DEFINE_TEST(run_foreground_shares_our_group_and_outlasts_an_interrupt) {
  lua_State *L = P();
  T_LUA(L, "local r = assert(proc.run({'sh', '-c', 'cut -d\" \" -f5 /proc/self/stat; kill -INT $PPID; exit 7'}, "
           "  {foreground = true, stdout = 'capture'})) "
           "assert(r.code == 7, r.code) "
           "local mine = io.open('/proc/self/stat'):read('a'):match('^%d+ %b() %a %d+ (%d+)') "
           "assert(r.stdout == mine .. '\\n', r.stdout) "
           "return true");
}

DEFINE_TEST(run_timeout_kills_the_whole_group) {
  lua_State *L = P();
  T_LUA(
      L,
      "local t0 = ct.time.monotonic() "
      "local r = assert(proc.run({'sh', '-c', 'sleep 100 & echo $!; sleep 100'}, {timeout = 0.5})) "
      "local dt = ct.time.monotonic() - t0 "
      "assert(r.timed_out == true and r.signal == 9 and r.code == 137, r.code) "
      "assert(dt >= 0.5 and dt < 5, dt) "
      "local grandchild = assert(tonumber(r.stdout:match('%d+')), r.stdout) "
      "wait_dead(grandchild) "
      "return true");
}

DEFINE_TEST(run_grandchild_holding_the_pipe_stops_at_the_deadline) {
  lua_State *L = P();
  T_LUA(L, "local t0 = ct.time.monotonic() "
           "local r = assert(proc.run({'sh', '-c', 'sleep 100 & echo $!'}, {timeout = 0.5})) "
           "local dt = ct.time.monotonic() - t0 "
           "assert(r.timed_out == false and r.code == 0, r.code) "
           "assert(dt < 5, dt) "
           "wait_dead(assert(tonumber(r.stdout:match('%d+')))) "
           "return true");
}

DEFINE_TEST(run_argument_errors_raise) {
  lua_State *L = P();
  T_LUA(L, "assert(not pcall(proc.run, 'echo hi')) "
           "assert(not pcall(proc.run, {})) "
           "assert(not pcall(proc.run, {'echo', {}})) "
           "assert(not pcall(proc.run, {'echo'}, 'opts')) "
           "assert(not pcall(proc.run, {'echo'}, {stdout = 'bogus'})) "
           "assert(not pcall(proc.run, {'echo'}, {stdout = 'stdout'})) "
           "assert(not pcall(proc.run, {'echo'}, {stderr = {}})) "
           "assert(not pcall(proc.run, {'echo'}, {stdout = {append = tmp .. '/x'}})) "
           "assert(not pcall(proc.run, {'echo'}, {timeout = -1})) "
           "assert(not pcall(proc.run, {'echo'}, {timeout = 'x'})) "
           "assert(not pcall(proc.run, {'echo'}, {env_add = 'x'})) "
           "assert(not pcall(proc.run, {'echo'}, {env_add = {['A=B'] = 'x'}})) "
           "assert(not pcall(proc.run, {'echo'}, {stdin = {}})) "
           "assert(not pcall(proc.spawn, {'echo'}, {stdout = 'capture'})) "
           "assert(not pcall(proc.spawn, {'echo'}, {timeout = 1})) "
           "assert(not pcall(proc.spawn, {'cat'}, {stdin = 'x'})) "
           "assert(not pcall(proc.kill, 0, 9)) "
           "assert(not pcall(proc.kill, -1, 9)) "
           "assert(not pcall(proc.kill, 1, 'NOSUCH')) "
           "assert(not pcall(proc.alive, 0)) "
           "assert(not pcall(proc.fork_call, 'f', 1)) "
           "assert(not pcall(proc.fork_call, function() end, 0)) "
           "assert(not pcall(proc.fork_call, function() end)) "
           "return true");
}

DEFINE_TEST(spawn_wait_kill_and_close) {
  lua_State *L = P();
  T_LUA(L, "local p = assert(proc.spawn({'sleep', '100'})) "
           "local pid = p:pid() "
           "assert(math.type(pid) == 'integer' and pid > 0 and proc.alive(pid)) "
           "local c, s = p:wait(0.1) "
           "assert(c == nil and s == 'timeout') "
           "assert(p:kill() == true) "
           "c, s = p:wait() "
           "assert(c == 143 and s == 15, c) "
           "assert(p:wait() == 143) "
           "assert(p:pid() == pid) "
           "assert(p:kill() == nil) "
           "p:close() "
           "return true");
}

DEFINE_TEST(spawn_streams_exit_code_and_group_kill) {
  lua_State *L = P();
  T_LUA(
      L,
      "local f = tmp .. '/spawn.out' "
      "local log = appender(f) "
      "local p = assert(proc.spawn({'sh', '-c', 'echo fed; exit 7'}, {stdout = log})) "
      "log:close() "
      "local c, s = p:wait(10) "
      "assert(c == 7 and s == nil, c) "
      "assert(slurp(f) == 'fed\\n') "
      "local g = tmp .. '/grandchild' "
      "p = assert(proc.spawn({'sh', '-c', 'sleep 100 & echo $! > ' .. g .. '; wait'}, "
      "  {stdout = 'null', stderr = 'stdout'})) "
      "local gpid "
      "for _ = 1, 500 do local h = io.open(g) if h then gpid = tonumber(h:read('a')) h:close() end "
      "  if gpid then break end ct.time.sleep(0.01) end "
      "assert(gpid, 'no grandchild pid') "
      "assert(p:kill(proc.signals.KILL)) "
      "assert(p:wait(10) == 137) "
      "wait_dead(gpid) "
      "return true");
}

DEFINE_TEST(spawn_close_gc_and_toclose_kill_a_live_child) {
  lua_State *L = P();
  T_LUA(L, "local pid "
           "do local q <close> = assert(proc.spawn({'sleep', '100'})) pid = q:pid() end "
           "assert(not proc.alive(pid)) "
           "local q = assert(proc.spawn({'sleep', '100'})) "
           "pid = q:pid() q:close() q:close() "
           "assert(not proc.alive(pid)) "
           "q = assert(proc.spawn({'sleep', '100'})) "
           "pid = q:pid() q = nil collectgarbage() collectgarbage() "
           "assert(not proc.alive(pid)) "
           "return true");
}

DEFINE_TEST(spawned_child_dies_with_its_parent) {
  /* PR_SET_PDEATHSIG: a child of ours that exits without cleaning up takes
     its spawned process with it. */
  int pp[2];
  T_ASSERT(pipe(pp) == 0);
  pid_t child = fork();
  T_ASSERT(child >= 0);
  if (child == 0) {
    close(pp[0]);
    lua_State *L = ct_newstate();
    if (luaL_dostring(L, "local p = assert(require('ct').proc.spawn({'sleep', '100'})) "
                         "return tostring(p:pid())") != LUA_OK)
      _exit(2);
    const char *s = lua_tostring(L, -1);
    if (write(pp[1], s, strlen(s)) < 0) _exit(3);
    _exit(0);
  }
  close(pp[1]);
  char buf[32] = {0};
  ssize_t n = read(pp[0], buf, sizeof buf - 1);
  close(pp[0]);
  int st;
  T_ASSERT(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  T_ASSERT(n > 0);
  lua_State *L = P();
  lua_pushinteger(L, atoi(buf));
  lua_setglobal(L, "orphan");
  T_LUA(L, "assert(orphan > 0) wait_dead(orphan) return true");
}

DEFINE_TEST(kill_alive_getpid_and_signals) {
  lua_State *L = P();
  lua_pushinteger(L, getpid());
  lua_setglobal(L, "mypid");
  lua_pushinteger(L, getuid());
  lua_setglobal(L, "myuid");
  T_LUA(L, "local S = proc.signals "
           "assert(S.TERM == 15 and S.KILL == 9) "
           "assert(proc.getpid() == mypid) "
           "local uid, uname = proc.getuid() "
           "assert(uid == myuid and (uname == nil or (type(uname) == 'string' and #uname > 0))) "
           "assert(proc.alive(mypid) == true) "
           "local p = assert(proc.spawn({'sleep', '100'})) "
           "local pid = p:pid() "
           "assert(proc.kill(pid, S.TERM) == true) "
           "assert(p:wait() == 143) "
           "assert(proc.alive(pid) == false) "
           "local ok, msg, err = proc.kill(pid, 0) "
           "assert(ok == nil and err == 3, msg) "
           "p = assert(proc.spawn({'sleep', '100'})) "
           "assert(proc.kill(p:pid(), S.KILL)) "
           "assert(p:wait() == 137) "
           "p = assert(proc.spawn({'sleep', '100'})) "
           "assert(proc.kill(p:pid(), 2)) "
           "assert(select(2, p:wait()) == 2) "
           "return true");
}

DEFINE_TEST(fork_call_returns_lines_and_result) {
  lua_State *L = P();
  T_LUA(L, "x = 1 "
           "local ok, lines, res = proc.fork_call(function(emit) "
           "  emit('one') emit('two') x = 2 return 'result' end, 10) "
           "assert(ok == true and res == 'result', tostring(res)) "
           "assert(#lines == 2 and lines[1] == 'one' and lines[2] == 'two') "
           "assert(x == 1, 'the child changed the parent') "
           "ok, lines, res = proc.fork_call(function() return 42 end, 10) "
           "assert(ok and #lines == 0 and res == '42') "
           "ok, lines, res = proc.fork_call(function() return true end, 10) "
           "assert(ok == false and res:find('cannot return a boolean'), res) "
           "ok, lines, res = proc.fork_call(function() end, 10) "
           "assert(ok == false and res:find('cannot return a nil'), res) "
           "ok, lines, res = proc.fork_call(function() return {} end, 10) "
           "assert(ok == false and res:find('cannot return a table'), res) "
           /* many big lines: the parent drains while the child writes */
           "local line = string.rep('x', 100000) "
           "ok, lines = proc.fork_call(function(emit) for i = 1, 100 do emit(line .. i) end "
           "  return 'done' end, 60) "
           "assert(ok and #lines == 100 and lines[100] == line .. '100') "
           /* run works inside, with its own timeout killing only its child */
           "ok, lines, res = proc.fork_call(function() "
           "  local r = proc.run({'sleep', '100'}, {timeout = 0.2}) "
           "  local e = proc.run({'echo', 'inner'}) "
           "  return tostring(r.timed_out) .. e.stdout end, 10) "
           "assert(ok and res == 'trueinner\\n', res) "
           "return true");
}

DEFINE_TEST(fork_call_reports_errors) {
  lua_State *L = P();
  T_LUA(
      L,
      "local ok, lines, err, _, kind = proc.fork_call(function(emit) emit('before') error('boom') end, 10) "
      "assert(ok == false and lines[1] == 'before' and err:find('boom', 1, true), err) "
      "assert(kind == 'error', kind) "
      "ok, lines, err = proc.fork_call(function() error({}) end, 10) "
      "assert(ok == false and err == '(error object is a table value)', err) "
      "ok, lines, err = proc.fork_call(function() error(setmetatable({}, "
      "  {__tostring = function() return 'custom' end})) end, 10) "
      "assert(ok == false and err == 'custom', err) "
      "ok, lines, err, _, kind = proc.fork_call(function(emit) emit('x') "
      "  proc.kill(proc.getpid(), 9) end, 10) "
      "assert(ok == false and lines[1] == 'x' and err == 'the child process died (signal 9)', err) "
      "assert(kind == 'signal', kind) "
      "return true");
}

DEFINE_TEST(fork_call_stops_an_infinite_loop) {
  lua_State *L = P();
  T_LUA(L, "local t0 = ct.time.monotonic() "
           "local ok, lines, err, _, kind = proc.fork_call(function(emit) emit('spinning') "
           "  while true do end end, 0.5) "
           "local dt = ct.time.monotonic() - t0 "
           "assert(ok == false and lines[1] == 'spinning' and err == 'timed out after 0.5s', err) "
           "assert(kind == 'timeout', kind) "
           "assert(dt >= 0.5 and dt < 5, dt) "
           /* neither pcall nor a coroutine escapes it */
           "ok, lines, err = proc.fork_call(function() "
           "  while true do pcall(function() while true do end end) end end, 0.3) "
           "assert(ok == false and err == 'timed out after 0.3s', err) "
           "ok, lines, err = proc.fork_call(function() "
           "  coroutine.wrap(function() while true do end end)() end, 1) "
           "assert(ok == false and err == 'timed out after 1s', err) "
           "return true");
}

DEFINE_TEST(fork_call_kills_processes_started_by_fn) {
  lua_State *L = P();
  T_LUA(L, "local pidfile = tmp .. '/sleep.pid' "
           "local ok, lines, err = proc.fork_call(function(emit) "
           "  local p = assert(proc.spawn({'sleep', '100'})) "
           "  emit(tostring(p:pid())) "
           /* a grandchild: no PDEATHSIG of ours reaches it, only the group kill */
           "  proc.run({'sh', '-c', 'sleep 100 & echo $! > ' .. pidfile .. '; wait'}) "
           "  return 'not reached' "
           "end, 1) "
           "assert(ok == false and err == 'timed out after 1s', err) "
           "wait_dead(assert(tonumber(lines[1]))) "
           "wait_dead(assert(tonumber(slurp(pidfile)))) "
           /* a process left behind by a hook that returned goes too */
           "ok, lines = proc.fork_call(function(emit) "
           "  local p = assert(proc.spawn({'sleep', '100'})) emit(tostring(p:pid())) "
           "  return 'left one' end, 10) "
           "assert(ok == true) "
           "wait_dead(assert(tonumber(lines[1]))) "
           "return true");
}

/* A cgroup hierarchy this process may create cgroups in (the unified one,
   else v1's freezer) as global `cgbase`, with a fresh parent `cgparent`
   for the case; skips without one. */
static lua_State *P_cgroup(void) {
  if (geteuid() != 0) t_skip("making cgroups needs root");
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
  lua_State *L = P();
  lua_pushstring(L, parent);
  lua_setglobal(L, "cgparent");
  T_LUA(L, /* the case's body, then the parent removed whatever happened */
        "function with_cgroups(body) "
        "  local ok, err = pcall(body) "
        "  for _, d in ipairs(ct.fs.dir(cgparent) or {}) do "
        "    if ct.fs.stat(cgparent .. '/' .. d).type == 'dir' then proc.cgroup_kill(cgparent .. '/' .. d) end "
        "  end "
        "  ct.fs.rmdir(cgparent) "
        "  if not ok then error(err, 0) end "
        "end "
        /* daemon(pidfile): a process in a session of its own (setsid -f: forked,
           so no parent-death signal of ours reaches it), as a hook's
           `setsid` daemon; returns its pid once it runs */
        "function daemon(pidfile) "
        "  proc.spawn({'setsid', '-f', 'sh', '-c', 'echo $$ > ' .. pidfile .. '.tmp && mv ' .. pidfile .. "
        "    '.tmp ' .. pidfile .. ' && exec sleep 300'}, {stdout = 'null', stderr = 'null'}) "
        "  for _ = 1, 500 do "
        "    local f = io.open(pidfile) if f then local pid = tonumber(f:read('a')) f:close() return pid end "
        "    ct.time.sleep(0.01) "
        "  end "
        "  error('the daemon did not start') "
        "end "
        "return true");
  lua_pop(L, 1);
  return L;
}

DEFINE_TEST(fork_call_cgroup_kills_a_setsid_daemon) {
  lua_State *L = P_cgroup();
  T_LUA(L,
        "with_cgroups(function() "
        /* without a cgroup, a new session escapes the process group */
        "  local ok, lines, res = proc.fork_call(function() return daemon(tmp .. '/free') end, 10) "
        "  assert(ok, res) "
        "  res = tonumber(res) "
        "  local escaped = proc.alive(res) "
        "  proc.kill(res, 9) "
        "  assert(escaped, 'the control daemon did not outlive its fork_call') "
        /* in a cgroup: gone at the normal end of the call */
        "  local cg = cgparent .. '/done' "
        "  local note "
        "  ok, lines, res, note = proc.fork_call(function() return daemon(tmp .. '/done') end, 10, {cgroup = cg}) "
        "  assert(ok and note == nil, tostring(res) .. ' ' .. tostring(note)) "
        "  wait_dead(tonumber(res)) "
        "  assert(not ct.fs.exists(cg), 'the cgroup is still there') "
        /* and at the deadline, the daemon started, the caller spinning */
        "  cg = cgparent .. '/late' "
        "  local t0 = ct.time.monotonic() "
        "  ok, lines, res, note = proc.fork_call(function(emit) "
        "    emit(tostring(daemon(tmp .. '/late'))) while true do end end, 1, {cgroup = cg}) "
        "  assert(ok == false and res == 'timed out after 1s' and note == nil, tostring(res) .. tostring(note)) "
        "  assert(ct.time.monotonic() - t0 < 10) "
        "  wait_dead(tonumber(lines[1])) "
        "  assert(not ct.fs.exists(cg), 'the cgroup is still there') "
        "end) "
        "return true");
}

DEFINE_TEST(fork_call_without_its_cgroup_runs_and_says_why) {
  lua_State *L = P_cgroup();
  T_LUA(L,
        "with_cgroups(function() "
        "  local cg = cgparent .. '/no/such/parent' "
        "  local ok, lines, res, note = proc.fork_call(function() return 'ran' end, 10, {cgroup = cg}) "
        "  assert(ok and res == 'ran', res) "
        "  assert(note and note:find('cannot create cgroup ' .. cg, 1, true), tostring(note)) "
        "  assert(not pcall(proc.fork_call, function() end, 1, {cgroup = 42})) "
        "end) "
        "return true");
}

DEFINE_TEST(cgroup_kill_empties_and_removes_a_cgroup) {
  lua_State *L = P_cgroup();
  T_LUA(L,
        "with_cgroups(function() "
        "  local cg = cgparent .. '/x' "
        "  assert(ct.fs.mkdir(cg, 493)) "
        /* two processes in it, one of them a forking shell */
        "  local a = assert(proc.spawn({'sh', '-c', 'echo $$ > ' .. cg .. '/cgroup.procs && "
        "    (sleep 300 &) && exec sleep 300'})) "
        "  for _ = 1, 500 do "
        "    local procs = slurp(cg .. '/cgroup.procs') "
        "    if select(2, procs:gsub('%d+', '')) >= 2 then break end ct.time.sleep(0.01) "
        "  end "
        "  assert(proc.cgroup_kill(cg)) "
        "  assert(a:wait() == 137) "
        "  assert(not ct.fs.exists(cg)) "
        "  assert(proc.cgroup_kill(cg), 'a missing cgroup is done') "
        "end) "
        "return true");
}
