/* ct.lock and ctcli.base.lock: flock contention between real processes, waiting. */
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char lock_path[512];

static const char *path_of_lock(void) {
  if (!lock_path[0]) snprintf(lock_path, sizeof lock_path, "%s/lock", t_tmpdir());
  return lock_path;
}

/* A holder in another process. */
struct holder {
  pid_t pid;
  int go;          /* write a byte: the child releases after release_ms */
  char info[128];  /* what the child wrote into the lock file */
};

static void child_exit(int code) {
  /* _exit: the parent's atexit cleanup (tmpdir removal) must not run here. */
  _exit(code);
}

/* Forks a child that takes the lock with info "pid=<pid> command=upgrade",
   says so through a pipe, waits for a byte on `go` (or EOF), sleeps
   release_ms and exits; the exit releases the lock. */
static void start_holder(struct holder *h, int release_ms) {
  int ready[2], go[2];
  T_ASSERT(pipe(ready) == 0);
  T_ASSERT(pipe(go) == 0);
  fflush(NULL);
  pid_t pid = fork();
  T_ASSERT(pid >= 0);
  if (pid == 0) {
    close(ready[0]);
    close(go[1]);
    lua_State *L = ct_newstate();
    char code[1024];
    snprintf(code, sizeof code,
             "HELD = require('ct').lock.acquire(%s, 'pid=%ld command=upgrade') "
             "return HELD and true",
             "...", (long)getpid());
    char ok = 'F';
    if (L && luaL_loadstring(L, code) == LUA_OK) {
      lua_pushstring(L, path_of_lock());
      if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_toboolean(L, -1)) ok = 'R';
    }
    if (write(ready[1], &ok, 1) != 1 || ok != 'R') child_exit(1);
    char c;
    while (read(go[0], &c, 1) < 0 && errno == EINTR) {
    }
    struct timespec ts = {release_ms / 1000, (long)(release_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    child_exit(0);
  }
  close(ready[1]);
  close(go[0]);
  char c = 0;
  ssize_t n;
  do {
    n = read(ready[0], &c, 1);
  } while (n < 0 && errno == EINTR);
  close(ready[0]);
  if (n != 1 || c != 'R') t_fail(__FILE__, __LINE__, "the child could not take the lock");
  h->pid = pid;
  h->go = go[1];
  snprintf(h->info, sizeof h->info, "pid=%ld command=upgrade", (long)pid);
}

static int wait_child(pid_t pid) {
  int st;
  while (waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return st;
}

/* Sets the globals PATH, INFO for the Lua snippets, `lock` (ct.lock),
   `waiting` (ctcli.base.lock), free() (whether nobody holds the lock; a
   probe that gets it writes "probe" and releases) and content(). */
static lua_State *lock_state(const struct holder *h) {
  lua_State *L = t_state();
  lua_pushstring(L, path_of_lock());
  lua_setglobal(L, "PATH");
  lua_pushstring(L, h ? h->info : "");
  lua_setglobal(L, "INFO");
  T_LUA(L, "lock = require('ct').lock waiting = require('ctcli.base.lock') "
           "function free() local l = lock.acquire(PATH, 'probe') if l then l:release() end "
           "  return l ~= false end "
           "function content() local f = assert(io.open(PATH)) local s = f:read('a') f:close() "
           "  return s end "
           "return true");
  return L;
}

DEFINE_TEST(acquire_writes_info_and_releases) {
  lua_State *L = lock_state(NULL);
  T_LUA(L, "local l = assert(lock.acquire(PATH, 'pid=1 command=install')) "
           "assert(content() == 'pid=1 command=install', content()) "
           /* a second open file description in this process is refused too */
           "assert(lock.acquire(PATH, 'other') == false) "
           "assert(content() == 'pid=1 command=install', 'a refused try writes nothing') "
           "assert(l:release() == true) assert(l:release() == true) "
           "assert(free()) "
           /* a shorter info replaces the longer one completely */
           "local l2 = assert(lock.acquire(PATH, 'pid=2')) "
           "assert(content() == 'pid=2', content()) l2:release() "
           "return true");
}

DEFINE_TEST(close_and_gc_release) {
  lua_State *L = lock_state(NULL);
  T_LUA(L, "do local l <close> = assert(lock.acquire(PATH, 'a')) "
           "  assert(not free()) end "
           "assert(free(), 'released by __close') "
           "local l = assert(lock.acquire(PATH, 'b')) l = nil collectgarbage() collectgarbage() "
           "assert(free(), 'released by __gc') "
           "return true");
}

DEFINE_TEST(errors_and_argument_checks) {
  lua_State *L = lock_state(NULL);
  char code[512];
  snprintf(code, sizeof code,
           "local l, msg, e = lock.acquire(PATH .. '/missing/lock', 'x') "
           "assert(l == nil and e == %d, tostring(msg)) "
           "assert(msg:find(PATH .. '/missing/lock', 1, true), msg) "
           "assert(waiting.acquire(PATH .. '/missing/lock', 'x', 1) == nil, 'an error is not waited on') "
           "assert(not pcall(lock.acquire, {}, 'x')) "
           "assert(not pcall(lock.acquire, PATH)) "
           "return true",
           ENOENT);
  T_LUA(L, code);
}

DEFINE_TEST(contended_by_another_process) {
  struct holder h;
  lua_State *L = lock_state(NULL); /* the state exists before the fork */
  start_holder(&h, 300);
  lock_state(&h);
  T_LUA(L, "local l, msg, e, info = waiting.acquire(PATH, 'pid=0 command=status') "
           "assert(l == nil and msg == 'locked' and e == nil, tostring(msg)) "
           "assert(info == INFO, info) "
           "return true");
  /* The child releases ~300 ms after `go`; a 5 s wait gets the lock. */
  T_LUA(L, "T0 = require('ct').time.monotonic() return true");
  T_ASSERT(write(h.go, "g", 1) == 1);
  T_LUA(L, "local ct = require('ct') "
           "GOT = assert(waiting.acquire(PATH, 'pid=0 command=upgrade', 5)) "
           "local d = ct.time.monotonic() - T0 "
           "assert(d >= 0.29 and d < 4.5, d) "
           "return true");
  int st = wait_child(h.pid);
  T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  close(h.go);
  T_LUA(L, "assert(content() == 'pid=0 command=upgrade') "
           "GOT:release() return true");
}

DEFINE_TEST(wait_times_out_with_holder_info) {
  struct holder h;
  lua_State *L = lock_state(NULL);
  start_holder(&h, 0);
  lock_state(&h);
  T_LUA(L, "local ct = require('ct') "
           "local t0 = ct.time.monotonic() "
           "local l, msg, e, info = waiting.acquire(PATH, 'x', 0.3) "
           "local d = ct.time.monotonic() - t0 "
           "assert(l == nil and msg == 'locked' and e == nil, tostring(msg)) "
           "assert(info == INFO, info) "
           "assert(d >= 0.3 and d < 3, d) "
           /* wait 0 is one try */
           "assert(waiting.acquire(PATH, 'x', 0) == nil) "
           "return true");
  T_ASSERT(write(h.go, "g", 1) == 1);
  close(h.go);
  int st = wait_child(h.pid);
  T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  T_LUA(L, "assert(waiting.acquire(PATH, 'x')) return true");
}

DEFINE_TEST(killed_holder_releases) {
  struct holder h;
  lua_State *L = lock_state(NULL);
  start_holder(&h, 60000);
  lock_state(&h);
  T_LUA(L, "assert(lock.acquire(PATH, 'x') == false) "
           "assert(content() == INFO) return true");
  T_ASSERT(kill(h.pid, SIGKILL) == 0);
  int st = wait_child(h.pid);
  T_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  close(h.go);
  /* The stale info is still in the file but nobody holds the lock. */
  T_LUA(L, "assert(content() == INFO) "
           "local l, msg = lock.acquire(PATH, 'pid=0 command=start') "
           "assert(l, msg) l:release() return true");
}

DEFINE_TEST(child_closing_inherited_lock_keeps_it) {
  /* A forked child closing its copy of the descriptor (as its Lua state is
     closed) must not release the parent's lock. */
  lua_State *L = lock_state(NULL);
  T_LUA(L, "HELD = assert(lock.acquire(PATH, 'parent')) return true");
  fflush(NULL);
  pid_t pid = fork();
  T_ASSERT(pid >= 0);
  if (pid == 0) {
    lua_getglobal(L, "HELD");
    lua_getfield(L, -1, "release");
    lua_insert(L, -2);
    int ok = lua_pcall(L, 1, 0, 0) == LUA_OK;
    child_exit(ok ? 0 : 1);
  }
  int st = wait_child(pid);
  T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  T_LUA(L, "assert(not free()) assert(content() == 'parent') "
           "HELD:release() assert(free()) return true");
}
